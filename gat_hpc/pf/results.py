"""Power-flow results as Arrow tables (DESIGN.md schemas) and their output folder.

Tables (MW, MVAr, degrees, p.u. as named):
- buses: bus_id, bus_name, vm_pu, va_deg, bus_type, p_mw, q_mvar
  (p_mw/q_mvar = net injection into the network: generation minus load);
- flows: branch_id, from_bus, to_bus, flow_mw (= p_from_mw), p_from_mw, q_from_mvar,
  p_to_mw, q_to_mvar, loading_pct (100 * max(|S_from|, |S_to|) / rateA; null where
  rateA is 0, i.e. unlimited, or the branch is out of service);
- generators: gen_id, bus_id, in_service, p_mw, q_mvar, q_limited.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gat_hpc.util.atomic import atomic_dir


def _loading(net, s_from_mva, s_to_mva):
    rate = net.rate_a_mva
    live = net.branch_in_service() & (rate > 0)
    pct = np.full(net.n_branch, np.nan)
    pct[live] = 100.0 * np.maximum(np.abs(s_from_mva[live]), np.abs(s_to_mva[live])) / rate[live]
    return pa.array(pct, mask=~live)


def bus_table(net, vm, va, bus_type, p_inj_mw, q_inj_mvar):
    return pa.table({
        "bus_id": pa.array(net.bus_id, pa.int64()),
        "bus_name": pa.array([str(s) for s in net.bus_name], pa.string()),
        "vm_pu": pa.array(vm, pa.float64()),
        "va_deg": pa.array(np.rad2deg(va), pa.float64()),
        "bus_type": pa.array(bus_type, pa.int8()),
        "p_mw": pa.array(p_inj_mw, pa.float64()),
        "q_mvar": pa.array(q_inj_mvar, pa.float64()),
    })


def flow_table(net, s_from_mva, s_to_mva):
    return pa.table({
        "branch_id": pa.array(net.branch_id, pa.int64()),
        "from_bus": pa.array(net.bus_id[net.f_bus], pa.int64()),
        "to_bus": pa.array(net.bus_id[net.t_bus], pa.int64()),
        "flow_mw": pa.array(s_from_mva.real, pa.float64()),
        "p_from_mw": pa.array(s_from_mva.real, pa.float64()),
        "q_from_mvar": pa.array(s_from_mva.imag, pa.float64()),
        "p_to_mw": pa.array(s_to_mva.real, pa.float64()),
        "q_to_mvar": pa.array(s_to_mva.imag, pa.float64()),
        "loading_pct": _loading(net, s_from_mva, s_to_mva),
    })


def gen_table(net, pg_mw, qg_mvar, q_limited):
    lim = np.zeros(net.n_gen, dtype=bool)
    lim[q_limited] = True
    return pa.table({
        "gen_id": pa.array(net.gen_id, pa.int64()),
        "bus_id": pa.array(net.bus_id[net.gen_bus], pa.int64()),
        "in_service": pa.array(net.gen_status, pa.bool_()),
        "p_mw": pa.array(pg_mw, pa.float64()),
        "q_mvar": pa.array(qg_mvar, pa.float64()),
        "q_limited": pa.array(lim, pa.bool_()),
    })


def ac_tables(res):
    """buses/flows/generators tables of an :class:`~gat_hpc.pf.ac.ACResult`."""
    net, base = res.net, res.net.base_mva
    s_inj = res.s_injection * base
    return {
        "buses": bus_table(net, res.vm, res.va, res.bus_type, s_inj.real, s_inj.imag),
        "flows": flow_table(net, res.s_from * base, res.s_to * base),
        "generators": gen_table(net, res.pg * base, res.qg * base, res.q_limited),
    }


def write_output(out_dir, tables, summary):
    """Write ``tables`` as Parquet files plus ``summary.json`` into ``out_dir``, all or nothing.

    If ``summary`` has a ``timings_s`` dict, the time spent writing the tables is stored as its
    ``write`` entry.
    """
    with atomic_dir(out_dir) as tmp:
        t0 = time.perf_counter()
        for name, table in tables.items():
            pq.write_table(table, os.path.join(tmp, f"{name}.parquet"))
        if isinstance(summary.get("timings_s"), dict):
            summary["timings_s"]["write"] = time.perf_counter() - t0
        with open(os.path.join(tmp, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=2, sort_keys=True, default=_json_default)
            fh.write("\n")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dc_tables(net, res):
    """buses/flows/generators tables of a :class:`~gat_hpc.pf.dc.DCResult` (|V| = 1, no reactive power)."""
    base = net.base_mva
    vm = np.ones(net.n_bus)
    vm[res.types.dead] = 0.0
    bus_type = net.bus_type.copy()
    bus_type[res.types.dead] = 4
    zeros_bus = np.zeros(net.n_bus)
    p_from = res.p_from * base
    return {
        "buses": bus_table(net, vm, res.va, bus_type, res.p_bus * base, zeros_bus),
        "flows": flow_table(net, p_from + 0j, -p_from + 0j),
        "generators": gen_table(net, res.pg * base, np.zeros(net.n_gen), np.array([], dtype=np.int64)),
    }
