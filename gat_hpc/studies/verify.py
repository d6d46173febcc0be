"""Verify an hourly AC power-flow run: every hour's power mismatch, recomputed in one batch.

For each converged hour the run's voltages V (reduce/buses.parquet) give the computed
injections ``V conj(Ybus V)``; the specified injections are rebuilt from the run's own inputs
exactly as the sweep set them (profile loads, proportional dispatch or not). The mismatch
``V conj(Ybus V) - Sbus`` is checked where it is specified whatever the solver's bus roles:
active power at every energised bus but the slack buses, reactive power at energised buses
without generators (generator buses' Q is free, or fixed at a limit under --q-limits).
Voltages and injections of all hours form one batch for :func:`gat_hpc.cuda.mismatch.power_mismatch`:
the CUDA kernel (``device = gpu``) or its scipy twin.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gat_hpc.errors import InputError


def verify_hourly_run(rd, device="cpu", dtype=np.complex128, block_hours=2048):
    """(table, summary): per converged hour the largest |dP| (MW) and |dQ| (Mvar) and their buses."""
    from gat_hpc.cuda.mismatch import complex64_bound, power_mismatch
    from gat_hpc.network.io import read_case
    from gat_hpc.pf.topology import bus_types
    from gat_hpc.pf.ybus import make_sbus, make_ybus
    from gat_hpc.studies.pf_hourly import per_bus_network, set_hour
    from gat_hpc.studies.profiles import Profile

    if rd.study != "pf-hourly":
        raise InputError(f"{rd.path}: a {rd.study} run; verify checks hourly AC power-flow runs (pf ac --profiles)")
    paths = {t: os.path.join(rd.path, "reduce", f"{t}.parquet") for t in ("buses", "hours")}
    for t, p in paths.items():
        if not os.path.isfile(p):
            raise InputError(f"{rd.path}: reduce/{t}.parquet is missing: the run is not reduced "
                             f"(`gat-hpc runs resume --run-dir {rd.path}`)")
    t0 = time.perf_counter()
    net = read_case(rd.input_path("case"))
    prof = Profile(rd.input_path("profile"), net)
    work = per_bus_network(net)
    hours_t = pq.read_table(paths["hours"], columns=["hour", "converged"])
    buses = pq.read_table(paths["buses"])
    n = net.n_bus
    if buses.num_rows != hours_t.num_rows * n:
        raise InputError(f"{rd.path}: reduce/buses.parquet has {buses.num_rows} rows, not hours x buses "
                         f"({hours_t.num_rows} x {n}): the run directory is corrupt")
    hour = hours_t["hour"].to_numpy()
    conv = hours_t["converged"].to_numpy(zero_copy_only=False)
    if not np.array_equal(buses["bus_id"].to_numpy().reshape(-1, n)[:, 0], np.full(len(hour), net.bus_id[0])):
        raise InputError(f"{rd.path}: reduce/buses.parquet is not in the case's bus order")
    vm = buses["vm_pu"].to_numpy().reshape(-1, n)[conv]
    va = np.deg2rad(buses["va_deg"].to_numpy().reshape(-1, n)[conv])
    V = vm * np.exp(1j * va)
    index = {int(h): k for k, h in enumerate(prof.hours)}
    ks = [index[int(h)] for h in hour[conv]]
    case_pg, case_total = net.pg.copy(), float(net.bus_load().real.sum())
    sbus = np.empty(V.shape, dtype=complex)
    for i, k in enumerate(ks):  # per hour, whole-network vectors
        set_hour(work, prof, k, case_pg, case_total, rd.config.get("dispatch", "proportional"))
        sbus[i] = make_sbus(work)
    types = bus_types(work)
    ybus = make_ybus(work)[0]
    energised = np.setdiff1d(np.arange(n), types.dead)
    p_buses = np.setdiff1d(energised, types.ref)
    q_buses = np.intersect1d(energised, np.flatnonzero(~net.bus_has_gen()))
    t1 = time.perf_counter()
    H = V.shape[0]
    dp, dq = np.zeros(H), np.zeros(H)
    bp, bq = np.zeros(H, np.int64), np.zeros(H, np.int64)
    bound = 0.0
    spent = {}  # seconds per phase of power_mismatch, summed over blocks
    for h0 in range(0, H, block_hours):
        sl = slice(h0, min(H, h0 + block_hours))
        timings = {}
        mis = power_mismatch(ybus, V[sl], sbus[sl], dtype=dtype, device=device, timings=timings)
        for name, val in timings.items():
            spent[name] = spent.get(name, 0.0) + val
        ap = np.abs(mis.real[:, p_buses]) * net.base_mva
        aq = np.abs(mis.imag[:, q_buses]) * net.base_mva
        if p_buses.size:
            j = np.argmax(ap, axis=1)
            dp[sl], bp[sl] = ap[np.arange(len(j)), j], net.bus_id[p_buses[j]]
        if q_buses.size:
            j = np.argmax(aq, axis=1)
            dq[sl], bq[sl] = aq[np.arange(len(j)), j], net.bus_id[q_buses[j]]
        if np.dtype(dtype) == np.complex64:
            bound = max(bound, float(complex64_bound(ybus, V[sl], sbus[sl]).max()) * net.base_mva)
    t2 = time.perf_counter()
    table = pa.table({"hour": pa.array(hour[conv], pa.int64()), "max_p_mismatch_mw": dp, "p_bus_id": bp,
                      "max_q_mismatch_mvar": dq, "q_bus_id": bq})
    worst_p = int(np.argmax(dp)) if H else None
    worst_q = int(np.argmax(dq)) if H else None
    summary = {
        "hours_checked": int(H), "hours_not_converged": int((~conv).sum()), "device": device,
        "precision": np.dtype(dtype).name,
        "max_p_mismatch_mw": float(dp[worst_p]) if H else None,
        "max_p_hour": int(hour[conv][worst_p]) if H else None,
        "max_q_mismatch_mvar": float(dq[worst_q]) if H else None,
        "max_q_hour": int(hour[conv][worst_q]) if H else None,
        "complex64_bound_mw": bound if np.dtype(dtype) == np.complex64 else None,
        "seconds": {"prepare": t1 - t0, "mismatch": t2 - t1, **{f"mismatch_{k}": v for k, v in spent.items()}},
    }
    return table, summary
