"""Hourly AC power flow: one solve per hour of a load profile, chunked by hours.

Inside a chunk each hour starts from the previous hour's solution (the first hour of
a chunk from the case's voltages, or --init), so results depend on the chunking but
not on which executor ran it. Generation follows load in proportion to the case's
dispatch (``dispatch = proportional``), or the slack takes the difference
(``dispatch = slack``). An hour that does not converge is a row with
``converged = false`` (and NaN voltages), not a failed chunk; a malformed hour in the
profile fails its chunk.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from gat_hpc.errors import ConvergenceError
from gat_hpc.network.io import read_case
from gat_hpc.studies.profiles import Profile


def per_bus_network(net):
    """A copy of ``net`` with exactly one load per bus (bus totals), so hourly loads are a vector."""
    work = net.copy()
    s = net.bus_load()
    n = net.n_bus
    work.load_id = np.arange(1, n + 1)
    work.load_bus = np.arange(n)
    work.load_p = s.real.copy()
    work.load_q = s.imag.copy()
    work.load_status = np.ones(n, dtype=bool)
    return work


def set_hour(work, prof, k, case_pg, case_total, dispatch):
    """Put profile hour ``k``'s bus loads (and, ``proportional``, the scaled case dispatch) into ``work``."""
    load = prof.bus_load(k)
    work.load_p = load.real
    work.load_q = load.imag
    if dispatch == "proportional" and case_total > 0:
        work.pg = case_pg * (float(load.real.sum()) / case_total)
    return load


def dist_comm(ctx):
    """The PETSc communicator of the distributed solves of a chunk: the group of ranks that
    runs it (set by the MPI executor with ``ranks_per_solve``), else this process alone."""
    comm = ctx.get("comm")
    if comm is None:
        from gat_hpc.dist.petsc import init_petsc

        comm = ctx["comm"] = init_petsc([]).COMM_SELF
    return comm


class PFHourly:
    name = "pf-hourly"
    tables = {"hours": ["hour"], "buses": ["hour", "bus_id"], "flows": ["hour", "branch_id"]}

    @staticmethod
    def plan(profile, hours, chunk_size):
        """Chunks of ``chunk_size`` consecutive profile hours within ``hours`` = (a, b) or None."""
        sel = profile.select(hours)
        if sel.size == 0:
            from gat_hpc.errors import InputError
            raise InputError(f"{profile.path}: no profile hours in the selected range")
        chunks = []
        for i in range(0, sel.size, chunk_size):
            part = sel[i:i + chunk_size]
            chunks.append({"ranges": {"hours": [int(part[0]), int(part[-1]) + 1]},
                           "params": {"first_hour": int(profile.hours[part[0]]), "last_hour": int(profile.hours[part[-1]])}})
        return chunks

    def context(self, rd):
        net = read_case(rd.input_path("case"))
        prof = Profile(rd.input_path("profile"), net)
        # loads and dispatch change by the hour, the topology does not: Ybus, bus roles, the
        # Jacobian pattern and its symbolic factorisation are shared by every hour of the process
        return {"net": net, "work": per_bus_network(net), "profile": prof, "config": rd.config, "cache": {}}

    def run_chunk(self, ctx, spec):
        from gat_hpc.pf.ac import solve_ac

        net, work, prof, cfg = ctx["net"], ctx["work"], ctx["profile"], ctx["config"]
        a, b = spec.ranges["hours"]
        n, nb = net.n_bus, net.n_branch
        base = net.base_mva
        case_pg = net.pg.copy()
        case_total = float(net.bus_load().real.sum())
        rows_h, vm, va, sf, st, ld = [], [], [], [], [], []
        V = None
        t0 = time.perf_counter()
        dist = cfg.get("solver") == "petsc"
        root = not dist or dist_comm(ctx).getRank() == 0
        solved = []  # (hour index, result or None, mismatch, load MW)
        for k in range(a, b):
            load = set_hour(work, prof, k, case_pg, case_total, cfg.get("dispatch", "proportional"))
            mis = None
            try:
                if dist:
                    res, V = self._solve_dist(ctx, work, V)
                else:
                    res = solve_ac(work, tol=cfg["tol"], max_iter=cfg["max_iter"], init=cfg["init"],
                                   q_limits=cfg["q_limits"], v0=V, cache=ctx["cache"])
                    V = res.V
            except ConvergenceError as exc:
                res, mis = None, exc.mismatch
            if root:  # a distributed solve's result is on the group's first rank, which writes
                solved.append((k, res, mis, float(load.real.sum() * base)))
        # the rows are built after the loop, so that nothing the first rank alone does can fail
        # between two collective solves and leave the group's other ranks waiting
        for k, res, mis, load_mw in solved:
            ok = res is not None
            h = int(prof.hours[k])
            if ok:
                s_from, s_to = res.s_from * base, res.s_to * base
                live = net.branch_in_service() & (net.rate_a_mva > 0)
                loading = np.full(nb, np.nan)
                loading[live] = 100 * np.maximum(np.abs(s_from[live]), np.abs(s_to[live])) / net.rate_a_mva[live]
                energised = np.setdiff1d(np.arange(n), res.types.dead)
                rows_h.append((h, True, res.iterations, res.max_mismatch_pu * base, load_mw,
                               float(res.pg.sum() * base), float((res.s_from + res.s_to).real.sum() * base),
                               float(res.vm[energised].min()), float(res.vm[energised].max()),
                               float(np.nanmax(loading)) if np.any(live) else np.nan,
                               int(np.sum(loading > 100.0))))
                vm.append(res.vm)
                va.append(np.rad2deg(res.va))
                sf.append(s_from)
                st.append(s_to)
                ld.append(loading)
            else:
                rows_h.append((h, False, cfg["max_iter"], (mis or np.nan) * base, load_mw,
                               np.nan, np.nan, np.nan, np.nan, np.nan, 0))
                vm.append(np.full(n, np.nan))
                va.append(np.full(n, np.nan))
                sf.append(np.full(nb, np.nan + 0j))
                st.append(np.full(nb, np.nan + 0j))
                ld.append(np.full(nb, np.nan))
        if not root:
            return {}, {}
        nh = b - a
        hours = np.array([r[0] for r in rows_h], dtype=np.int64)
        cols = list(zip(*rows_h))
        t_hours = pa.table({
            "hour": hours, "converged": pa.array(cols[1], pa.bool_()), "iterations": pa.array(cols[2], pa.int32()),
            "max_mismatch_mw": pa.array(cols[3], pa.float64()), "load_mw": pa.array(cols[4], pa.float64()),
            "gen_mw": pa.array(cols[5], pa.float64()), "losses_mw": pa.array(cols[6], pa.float64()),
            "min_vm_pu": pa.array(cols[7], pa.float64()), "max_vm_pu": pa.array(cols[8], pa.float64()),
            "max_loading_pct": pa.array(cols[9], pa.float64()), "overloaded_branches": pa.array(cols[10], pa.int32()),
        })
        sf, st = np.concatenate(sf), np.concatenate(st)
        t_buses = pa.table({"hour": np.repeat(hours, n), "bus_id": np.tile(net.bus_id, nh),
                            "vm_pu": np.concatenate(vm), "va_deg": np.concatenate(va)})
        t_flows = pa.table({"hour": np.repeat(hours, nb), "branch_id": np.tile(net.branch_id, nh),
                            "p_from_mw": sf.real, "q_from_mvar": sf.imag, "p_to_mw": st.real, "q_to_mvar": st.imag,
                            "loading_pct": np.concatenate(ld)})  # NaN: unrated, out of service or not converged
        metrics = {"hours": nh, "solve_s": time.perf_counter() - t0,
                   "not_converged": int(nh - sum(cols[1]))}
        if dist:
            metrics["ranks_per_solve"] = dist_comm(ctx).getSize()
        return {"hours": t_hours, "buses": t_buses, "flows": t_flows}, metrics

    @staticmethod
    def _solve_dist(ctx, work, V):
        """One hour with the distributed solver on the chunk's communicator (``solver = petsc``):
        the partition is made for the first hour and kept; each hour starts from the previous
        hour's voltages, broadcast from the group's first rank. Returns (result or None, V)."""
        from gat_hpc.dist.snes import solve_ac_dist

        cfg, comm = ctx["config"], dist_comm(ctx)
        key = ("part", comm.getSize(), comm.tompi4py().py2f())
        res, info = solve_ac_dist(work, comm, tol=cfg["tol"], max_iter=cfg["max_iter"], init=cfg["init"],
                                  q_limits=cfg["q_limits"], v0=V, part=ctx["cache"].get(key))
        ctx["cache"][key] = info.part
        V = comm.tompi4py().bcast(res.V if res is not None else None, root=0)
        return res, V

    def summarize(self, rd, paths):
        import pyarrow.parquet as pq

        t = pq.read_table(paths["hours"])
        conv = t["converged"].to_numpy(zero_copy_only=False)
        hours = t["hour"].to_numpy()
        loading = t["max_loading_pct"].to_numpy(zero_copy_only=False)
        worst = int(np.nanargmax(loading)) if np.any(np.isfinite(loading)) else None
        return {
            "hours": int(len(hours)), "converged_hours": int(conv.sum()),
            "not_converged_hours": hours[~conv].tolist()[:50],
            "max_loading_pct": float(loading[worst]) if worst is not None else None,
            "max_loading_hour": int(hours[worst]) if worst is not None else None,
            "overloaded_hours": int(np.sum(t["overloaded_branches"].to_numpy() > 0)),
        }
