"""GPU N-1 screening of every non-bridge outage for 24 hours, against the numpy twin.

What it does, on one case (default case_ACTIVSg10k):

1. PTDF and LODF on the CPU (:func:`make_ptdf`, :func:`make_lodf`; float64), the LODF
   columns of every in-service non-bridge branch (bridges island the network: no LODF).
2. Hourly DC flows for a deterministic 24-hour profile that scales every load and every
   generator together (the slack takes the rest): F = (P - Pbusinj) @ PTDF^T + Pfinj, checked
   against :func:`solve_dc` at the profile's peak hour.
3. The screen (loading = |flow| / rate_a, rate_a 0 = unlimited, threshold 1.0, top 5) on the
   GPU: kernel time (CUDA events, median of ``--repeat``), achieved GB/s and FLOP/s against
   the device's roofline, end-to-end time; then the numpy twin on ``--workers`` threads and
   the agreement of the two.
4. The PTDF flows GEMM (kernel and cuBLAS, float32) for the 24 hours and for many scenarios,
   and the batched AC mismatch on the case's Ybus.

Usage (the device machine; the case file is read from ``--case``)::

    python benchmarks/gpu_screening.py --case .whl/cases/case_ACTIVSg10k.m --workers 16

``--device cpu`` runs only the CPU parts (a dry run of the script on a machine without GPU).
Byte and FLOP counts: the kernel must read the LODF once (M x K x 4 bytes), the hourly flows
and write the results; each (hour, outage, branch) costs one fused multiply-add (2 FLOP),
the max and abs are not counted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

from gat_hpc.cuda import runtime
from gat_hpc.cuda.mismatch import power_mismatch
from gat_hpc.cuda.ptdf import PtdfFlows, float32_bound
from gat_hpc.cuda.screening import LodfScreen
from gat_hpc.network.matpower import read_matpower
from gat_hpc.pf.dc import bus_injection, make_bdc, solve_dc
from gat_hpc.pf.sensitivity import make_lodf, make_ptdf
from gat_hpc.pf.ybus import make_sbus, make_ybus

# datasheet peaks (dense, non-tensor): bytes/s, FP32 FLOP/s, FP64 FLOP/s
PEAKS = {"H100 SXM": (3.35e12, 67e12, 34e12), "H100 PCIe": (2.0e12, 51e12, 26e12),
         "H100 NVL": (3.9e12, 60e12, 30e12), "H200": (4.8e12, 67e12, 34e12)}


def day_profile(hours):
    """Deterministic load shape: 0.72 at 04:00, 1.0 at 16:00 (cosine between)."""
    h = np.arange(hours)
    return 0.72 + 0.28 * (0.5 - 0.5 * np.cos(2 * np.pi * (h - 4) / 24))


def hourly_injections(net, profile):
    """Bus injections (hours x buses, p.u.) with loads and generators scaled by the profile."""
    rows = []
    for s in profile:
        hour = net.copy()
        hour.load_p, hour.pg = net.load_p * s, net.pg * s
        rows.append(bus_injection(hour))
    return np.array(rows)


def peaks_for(info):
    name = info["name"]
    if "H200" in name:
        key = "H200"
    elif "PCIe" in name:
        key = "H100 PCIe"
    elif "NVL" in name:
        key = "H100 NVL"
    elif "H100" in name:
        key = "H100 SXM"
    else:
        bw = 2 * info["memory_clock_khz"] * 1e3 * info["memory_bus_bits"] / 8
        fp32 = info["multiprocessors"] * 128 * 2 * info["clock_khz"] * 1e3
        return "from device attributes", (bw, fp32, fp32 / 2)
    return key, PEAKS[key]


def copy_bandwidth(nbytes=1 << 30, repeat=5):
    """Device-to-device copy rate (bytes read + written per second), median of ``repeat``."""
    drv = runtime.ensure_context()
    src, dst = drv.mem_alloc(nbytes), drv.mem_alloc(nbytes)
    drv.memset_d8(src, 1, nbytes)
    start, stop = drv.Event(), drv.Event()
    times = []
    for _ in range(repeat + 1):
        start.record()
        drv.memcpy_dtod(dst, src, nbytes)
        stop.record()
        stop.synchronize()
        times.append(stop.time_since(start) * 1e-3)
    src.free()
    dst.free()
    return 2 * nbytes / statistics.median(times[1:])


def ms(t):
    return f"{t * 1e3:.3f}"


def worst_ratio(err, bound):
    """Largest err / bound (0 where both are 0, inf where only the bound is)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(err == 0, 0.0, err / bound)
    return float(r.max())


def median_kernel(plan, flows, args, repeat):
    res = [plan.screen(flows, *args) for _ in range(repeat)]
    return (statistics.median(r.timings["kernel"] for r in res),
            statistics.median(r.timings["total"] for r in res), res[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default=".whl/cases/case_ACTIVSg10k.m")
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--threshold", type=float, default=1.0)
    ap.add_argument("--top-n", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--scenarios", type=int, default=4096, help="injection scenarios for the GEMM")
    ap.add_argument("--voltages", type=int, default=512, help="voltage vectors for the mismatch")
    ap.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    args = ap.parse_args(argv)
    gpu = args.device == "gpu"
    print("# gpu_screening")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"host: {platform.node()}, {os.cpu_count()} CPUs, numpy {np.__version__}, python {platform.python_version()}")

    # ------------------------------------------------ case, PTDF, LODF, flows
    t = time.perf_counter()
    net = read_matpower(args.case)
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    ptdf = make_ptdf(net)
    t_ptdf = time.perf_counter() - t
    t = time.perf_counter()
    lodf, bridge = make_lodf(net, ptdf=ptdf)
    out_idx = np.flatnonzero(net.branch_in_service() & ~bridge)
    cols = np.ascontiguousarray(lodf[:, out_idx])
    del lodf
    t_lodf = time.perf_counter() - t
    m, k, h = net.n_branch, len(out_idx), args.hours
    print(f"\ncase {os.path.basename(args.case)}: {net.n_bus} buses, {m} branches, {k} non-bridge "
          f"outages ({int(bridge.sum())} bridges), {h} hours; read {t_read:.1f} s, PTDF {t_ptdf:.1f} s, "
          f"LODF {t_lodf:.1f} s (CPU, float64)")
    profile = day_profile(h)
    p_bus = hourly_injections(net, profile)
    _, _, pbusinj, pfinj = make_bdc(net)
    p_eff = p_bus - pbusinj
    flows_pu = p_eff @ ptdf.T + pfinj
    flows = flows_pu * net.base_mva
    peak = int(np.argmax(profile))
    hour_net = net.copy()
    hour_net.load_p, hour_net.pg = net.load_p * profile[peak], net.pg * profile[peak]
    check = np.abs(flows[peak] - solve_dc(hour_net).p_from_mw).max()
    ratings = net.rate_a_mva
    print(f"flows: PTDF @ injections vs solve_dc at hour {peak}: max |diff| {check:.2e} MW; "
          f"{int((ratings > 0).sum())} of {m} branches rated")

    if gpu:
        info = runtime.device_info()
        peak_name, (bw_peak, fp32_peak, fp64_peak) = peaks_for(info)
        bw_attr = 2 * info["memory_clock_khz"] * 1e3 * info["memory_bus_bits"] / 8
        bw_copy = copy_bandwidth()
        print(f"\nGPU: {info['name']}, {info['multiprocessors']} SMs, "
              f"{info['memory_bytes'] / 2**30:.1f} GiB, CC {info['compute_capability']}")
        print(f"roofline ({peak_name} datasheet): {bw_peak / 1e12:.2f} TB/s, FP32 {fp32_peak / 1e12:.0f} "
              f"TFLOP/s, FP64 {fp64_peak / 1e12:.0f} TFLOP/s; from attributes {bw_attr / 1e12:.2f} TB/s; "
              f"measured device-to-device copy {bw_copy / 1e12:.2f} TB/s (read + write)")

        # ------------------------------------------------ GPU screen
        t = time.perf_counter()
        plan = LodfScreen(cols, out_idx, ratings, np.float32)
        t_plan = time.perf_counter() - t
        t = time.perf_counter()
        plan.screen(flows, args.threshold, args.top_n)  # compiles screening.cu
        t_first = time.perf_counter() - t
        screen_args = (args.threshold, args.top_n)
        kern, total, res = median_kernel(plan, flows, screen_args, args.repeat)
        tm = res.timings
        nbytes = 4 * (m * k + m * h + h * k) + h * k * (12 + 8 * args.top_n)
        flops = 2.0 * h * k * m
        gbs, tfs = nbytes / kern, flops / kern
        t_floor = max(nbytes / bw_peak, flops / fp32_peak)
        print(f"\n## screen, float32: {h} hours x {k} outages x {m} branches "
              f"= {h * k * m / 1e9:.2f} G post-outage loadings")
        print(f"launch: {tm['hours_per_launch']} hours per launch, {tm['n_split']} branch splits, "
              f"{tm['registers']} registers/thread")
        print("| quantity | value |")
        print("|---|---|")
        print(f"| kernel time (partial + merge + violations, median of {args.repeat}) | {ms(kern)} ms "
              f"(violations {ms(tm['violations'])}) |")
        print(f"| bytes (LODF once + flows + results) | {nbytes / 1e6:.1f} MB |")
        print(f"| achieved bandwidth | {gbs / 1e9:.0f} GB/s = {100 * gbs / bw_peak:.0f}% of "
              f"{bw_peak / 1e12:.2f} TB/s ({100 * gbs / bw_copy:.0f}% of measured copy) |")
        print(f"| FP32 (1 FMA = 2 FLOP per loading) | {tfs / 1e12:.1f} TFLOP/s = "
              f"{100 * tfs / fp32_peak:.0f}% of {fp32_peak / 1e12:.0f} TFLOP/s |")
        print(f"| roofline floor (max of bytes/BW, FLOP/FP32) | {ms(t_floor)} ms -> "
              f"{100 * t_floor / kern:.0f}% of the bounding roofline |")
        print(f"| per call: host prep + upload flows + kernels + download | {ms(total)} ms "
              f"(upload {ms(tm['upload'])}, download {ms(tm['download'])}) |")
        print(f"| once: scale LODF on host + upload {m * k * 4 / 1e6:.0f} MB | "
              f"{plan.timings['prepare']:.3f} s + {plan.timings['upload_lodf']:.3f} s |")
        print(f"| first call (nvcc compile or disk cache) | {t_first:.3f} s |")
        print(f"| end-to-end, once: LODF prep + upload + one screen | "
              f"{t_plan + total:.3f} s |")

        print("\nbranch splits (kernel ms, median):")
        print("| splits | kernel ms | GB/s |")
        print("|---|---|---|")
        for ns in (None, 4, 6, 8, 12, 16, 24, 32):
            plan.configure(n_split=ns)
            kv, _, rv = median_kernel(plan, flows, screen_args, max(5, args.repeat // 4))
            print(f"| {rv.timings['n_split']}{' (auto)' if ns is None else ''} | "
                  f"{ms(kv)} | {nbytes / kv / 1e9:.0f} |")
        plan.configure()

        plan64 = LodfScreen(cols, out_idx, ratings, np.float64)
        k64, t64, r64 = median_kernel(plan64, flows, screen_args, max(5, args.repeat // 4))
        nb64 = 8 * (m * k) * (-(-h // r64.timings["hours_per_launch"]))
        print(f"\nfloat64: kernel {ms(k64)} ms ({r64.timings['hours_per_launch']} hours per launch, "
              f"LODF read {-(-h // r64.timings['hours_per_launch'])}x: {nb64 / k64 / 1e9:.0f} GB/s, "
              f"{flops / k64 / 1e12:.1f} TFLOP/s FP64 = {100 * flops / k64 / fp64_peak:.0f}% of "
              f"{fp64_peak / 1e12:.0f}); per call {ms(t64)} ms")
        d64 = np.abs(r64.max_loading - res.max_loading.astype(np.float64))
        print(f"float32 vs float64 max loading: max |diff| {d64.max():.2e}, counts equal "
              f"{100 * np.mean(r64.n_violations == res.n_violations):.3f}%")
        del plan64

    # ------------------------------------------------ numpy twin
    t = time.perf_counter()
    twin_plan = LodfScreen(cols, out_idx, ratings, np.float32, device="cpu", workers=args.workers)
    t_twin_plan = time.perf_counter() - t
    twin = twin_plan.screen(flows, args.threshold, args.top_n)
    t_twin = twin.timings["total"]
    print(f"\n## numpy twin, float32, {args.workers} threads: {t_twin:.3f} s per call "
          f"(+ {t_twin_plan:.2f} s to scale/transpose the LODF once)")
    print(f"violations: {int(twin.n_violations.sum())} over {int((twin.n_violations > 0).sum())} "
          f"(hour, outage) pairs; worst loading {twin.max_loading.max():.3f}")
    if gpu:
        same_arg = np.mean(res.argmax == twin.argmax)
        dmax = np.abs(res.max_loading.astype(np.float64) - twin.max_loading)
        print(f"GPU vs twin: max |diff| of max loading {dmax.max():.2e}; argmax equal "
              f"{100 * same_arg:.3f}%; counts equal {100 * np.mean(res.n_violations == twin.n_violations):.3f}%; "
              f"top ids equal {100 * np.mean(res.top_ids == twin.top_ids):.3f}%")
        print(f"speed-up: twin / GPU kernel = {t_twin / kern:.0f}x; twin / GPU per call "
              f"(with transfers) = {t_twin / total:.0f}x")
        del plan

    # ------------------------------------------------ PTDF flows GEMM
    print("\n## PTDF flows F = P @ PTDF^T (float32)")
    print("| scenarios | path | ms | TFLOP/s | max err / float32 bound |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    cases = [(h, p_eff), (args.scenarios, rng.standard_normal((args.scenarios, net.n_bus)) * 0.1)]
    ptdf32 = ptdf.astype(np.float32)
    for s_count, p in cases:
        ref = p @ ptdf.T
        bound = float32_bound(p, ptdf)
        fl = 2.0 * s_count * m * net.n_bus
        p32 = p.astype(np.float32)
        t = time.perf_counter()
        f_np = p32 @ ptdf32.T
        t_np = time.perf_counter() - t
        print(f"| {s_count} | numpy/BLAS, {os.cpu_count()} CPUs | {ms(t_np)} | {fl / t_np / 1e12:.2f} | "
              f"{worst_ratio(np.abs(f_np - ref), bound):.1e} |")
        if not gpu:
            continue
        flows_plan = PtdfFlows(ptdf, np.float32)
        for method in ("kernel", "cublas"):
            try:
                times = []
                for _ in range(max(3, args.repeat // 4) + 1):
                    f_gpu = flows_plan.flows(p, method)
                    times.append(flows_plan.timings["kernel"])
                kt = statistics.median(times[1:])
                print(f"| {s_count} | GPU {method} | {ms(kt)} | {fl / kt / 1e12:.2f} | "
                      f"{worst_ratio(np.abs(f_gpu - ref), bound):.1e} |")
            except Exception as exc:  # noqa: BLE001 - report cuBLAS unavailability and go on
                print(f"| {s_count} | GPU {method} | failed: {exc} | | |")
        del flows_plan

    # ------------------------------------------------ batched AC mismatch
    ybus, _, _ = make_ybus(net)
    sbus = make_sbus(net)
    b = args.voltages
    v = (net.vm * np.exp(1j * net.va))[None, :] * (1 + 0.01 * rng.standard_normal((b, net.n_bus)))
    print(f"\n## batched mismatch V (Ybus V)* - Sbus: {b} voltage vectors x {net.n_bus} buses, "
          f"Ybus nnz {ybus.nnz}")
    print("| dtype | path | ms | GB/s (Ybus once + V + out) |")
    print("|---|---|---|---|")
    for dt in (np.complex128, np.complex64):
        isz = np.dtype(dt).itemsize
        nb = ybus.nnz * (isz + 4) + 2 * b * net.n_bus * isz
        tim = {}
        cpu = power_mismatch(ybus, v, sbus, dt, "cpu", tim)
        print(f"| {np.dtype(dt).name} | scipy | {ms(tim['total'])} | {nb / tim['total'] / 1e9:.1f} |")
        if gpu:
            times = []
            for _ in range(4):
                got = power_mismatch(ybus, v, sbus, dt, "gpu", tim)
                times.append(tim["kernel"])
            kt = statistics.median(times[1:])
            err = np.abs(got - cpu).max() / np.abs(cpu).max()
            print(f"| {np.dtype(dt).name} | GPU kernel | {ms(kt)} | {nb / kt / 1e9:.0f} "
                  f"(rel. diff to scipy {err:.1e}) |")


if __name__ == "__main__":
    main()
