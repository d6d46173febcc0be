"""Monte-Carlo capacity check on the GPU against the vectorised numpy twin.

Fleet: the case's in-service generators with Pmax > 0 (MW), forced outage rates by size
(4% below 100 MW, 6% to 400 MW, 8% above). Load: a deterministic 8760-hour shape (season x
weekday x hour of day) scaled so that its peak sits ``--z`` standard deviations below the
fleet's expected available capacity, which makes loss of load rare but present.

The GPU runs ``--samples`` samples of every hour; the twin runs the first ``--cpu-samples``
of them on ``--workers`` processes. Both report sample-hours per second; the twin's indices
must equal the GPU's for the same samples, bit for bit.

Usage (device machine)::

    python benchmarks/gpu_adequacy.py --case .whl/cases/case_ACTIVSg10k.m --workers 16

``--device cpu`` runs the twin alone (a dry run without GPU).
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
from gat_hpc.cuda.adequacy import capacity_check
from gat_hpc.network.matpower import read_matpower

from adequacy import year_shape  # benchmarks/adequacy.py: the same year of load


def fleet(net):
    """(capacity MW, forced outage rate) of in-service generators with Pmax > 0."""
    on = net.gen_status & (net.pmax > 0)
    cap = net.pmax[on] * net.base_mva
    q = np.where(cap < 100, 0.04, np.where(cap < 400, 0.06, 0.08))
    return cap, q


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default=".whl/cases/case_ACTIVSg10k.m")
    ap.add_argument("--hours", type=int, default=8760)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--cpu-samples", type=int, default=64)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--z", type=float, default=1.5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    args = ap.parse_args(argv)
    print("# gpu_adequacy")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"host: {platform.node()}, {os.cpu_count()} CPUs, numpy {np.__version__}, python {platform.python_version()}")

    net = read_matpower(args.case)
    cap, q = fleet(net)
    mean = float((cap * (1 - q)).sum())
    sd = float(np.sqrt((cap ** 2 * q * (1 - q)).sum()))
    peak = mean - args.z * sd
    load = peak * year_shape(args.hours)
    print(f"\nfleet of {os.path.basename(args.case)}: {len(cap)} units, {cap.sum():.0f} MW installed, "
          f"expected available {mean:.0f} MW (sd {sd:.0f} MW); load peak {peak:.0f} MW, "
          f"{args.hours} hours, seed {args.seed}")

    rows = []
    gpu_res = None
    if args.device == "gpu":
        info = runtime.device_info()
        print(f"GPU: {info['name']}, {info['multiprocessors']} SMs")
        t = time.perf_counter()
        capacity_check(cap, q, load[:24], 1, args.seed)  # compiles adequacy.cu
        t_compile = time.perf_counter() - t
        runs = [capacity_check(cap, q, load, args.samples, args.seed) for _ in range(args.repeat)]
        for r in runs[1:]:
            assert np.array_equal(r.lole_h, runs[0].lole_h) and np.array_equal(r.eue_mwh, runs[0].eue_mwh)
        gpu_res = runs[-1]
        kern = statistics.median(r.timings["kernel"] for r in runs)
        total = statistics.median(r.timings["total"] for r in runs)
        sh = args.samples * args.hours
        rows.append(("GPU kernel", args.samples, kern, sh / kern))
        rows.append(("GPU end-to-end (upload + kernel + download)", args.samples, total, sh / total))
        print(f"first call (nvcc compile or disk cache): {t_compile:.2f} s; repeated runs identical")

    n_cpu = min(args.cpu_samples, args.samples) if gpu_res is not None else args.cpu_samples
    # start the worker processes' server once, untimed (as the GPU's compile is untimed)
    capacity_check(cap, q, load[:24], args.workers, args.seed, device="cpu", workers=args.workers)
    cpu_res = capacity_check(cap, q, load, n_cpu, args.seed, device="cpu", workers=args.workers)
    t_cpu = cpu_res.timings["total"]
    rows.append((f"numpy twin, {args.workers} processes", n_cpu, t_cpu, n_cpu * args.hours / t_cpu))

    print("\n| path | samples | seconds | sample-hours/s | unit draws/s |")
    print("|---|---|---|---|---|")
    for name, n, sec, rate in rows:
        print(f"| {name} | {n} | {sec:.4f} | {rate:.3e} | {rate * len(cap):.3e} |")
    if gpu_res is not None:
        same = (np.array_equal(gpu_res.lole_h[:n_cpu], cpu_res.lole_h)
                and np.array_equal(gpu_res.eue_mwh[:n_cpu], cpu_res.eue_mwh))
        print(f"\nidentical indices for samples 0..{n_cpu - 1} (GPU vs twin): {same}")
        print(f"speed-up, sample-hours/s: GPU kernel / twin = {rows[0][3] / rows[-1][3]:.0f}x; "
              f"GPU end-to-end / twin = {rows[1][3] / rows[-1][3]:.0f}x")
        res = gpu_res
    else:
        res = cpu_res
    n = len(res.lole_h)
    lole, eue = res.lole_h.astype(float), res.eue_mwh
    half = lambda x: 1.96 * x.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")  # noqa: E731
    print(f"indices over {n} samples: LOLE {lole.mean():.3f} +- {half(lole):.3f} h/yr, "
          f"EUE {eue.mean():.1f} +- {half(eue):.1f} MWh/yr (95% CI), "
          f"samples with loss of load {100 * np.mean(lole > 0):.1f}%")
    print(f"first samples' LOLE (h): {res.lole_h[:8].tolist()}")
    if gpu_res is not None and not same:
        sys.exit("GPU and numpy twin indices differ")


if __name__ == "__main__":
    main()
