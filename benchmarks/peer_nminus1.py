"""AC N-1 of one MATPOWER case with lightsim2grid's contingency analysis.

Runs inside .venv-peers/ (lightsim2grid's wheels need numpy 2; the project's venv
keeps numpy 1.24), started by benchmarks/nminus1.py, which owns the gat-hpc side
and the table.

The case reaches lightsim2grid as in peer_acpf.py: parsed into a PYPOWER case dict
(``read_case``), buses renumbered to their row positions (``to_positions``), then
``lightsim2grid.network.init_from_matpower``. The outages come in as branch rows of
the case (0-based) and are mapped to lightsim2grid's branch numbering (see
``ls_branch_ids``). ``ContingencyAnalysisCPP`` (the C++ class behind the grid2op
wrapper ``ContingencyAnalysis``, usable on a bare LSGrid) then solves every outage
with Newton-Raphson + KLU, each warm-started from the base case's solution
(``init_from_n_powerflow``), on one thread.

Timing (best of REPEAT, each on a freshly built analysis object, after one warm-up):
- ``build_s``: LSGrid from the case dict + the analysis object + registering the outages;
- ``compute_s``: ``compute(V0, max_iter, tol)``: the base case, the topology checks and
  every outage's Newton solve;
- ``flows_s``: ``compute_branch_results()``: P and Q at both ends of every branch for
  every outage (what a loading check needs).

Output (npz): per outage, in the order given: ``converged``, ``iterations``,
``max_loading_pct`` (max over branches with a rating of max(|S1|, |S2|) / RATE_A, NaN
where not converged), ``argmax`` (case branch row); for the SAMPLE outages
``sample_branch`` (n_sample x n_branch x 4: P1, Q1, P2, Q2 in MW/MVAr, case branch
order) and ``sample_V`` (complex voltages, case bus order); the base-case ``base_V``;
``meta``: a JSON string with versions, timings (seconds) and notes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np

from peer_acpf import lightsim_tolerance, read_case, to_positions

# MATPOWER columns (0-based) beyond those peer_acpf.py names
VM, VA = 7, 8
RATE_A, TAP, SHIFT, BR_STATUS = 5, 8, 9, 10


def ls_branch_ids(ppc):
    """lightsim2grid's branch number of every case branch row.

    lightsim2grid numbers its branches lines first, then transformers, each in case
    row order; a row is a transformer when its TAP is nonzero or it shifts phase
    (``classify_branches`` of lightsim2grid's PowerModels importer, through which
    ``init_from_matpower`` goes).
    """
    br = ppc["branch"]
    trafo = (br[:, TAP] != 0) | (br[:, SHIFT] != 0)
    ids = np.empty(len(br), dtype=np.int64)
    n_line = int((~trafo).sum())
    ids[~trafo] = np.arange(n_line)
    ids[trafo] = n_line + np.arange(int(trafo.sum()))
    return ids


def build(ppc, ls_ids):
    """A fresh LSGrid and a ContingencyAnalysisCPP holding the outages ``ls_ids``."""
    from lightsim2grid.algorithm import AlgorithmType
    from lightsim2grid.contingencyAnalysis import ContingencyAnalysisCPP
    from lightsim2grid.network import init_from_matpower

    grid = init_from_matpower({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in ppc.items()})
    grid.change_algorithm(AlgorithmType.NR_KLU)
    ca = ContingencyAnalysisCPP(grid)
    ca.change_algorithm(AlgorithmType.NR_KLU)
    ca.init_from_n_powerflow = True
    ca.nb_thread = 1
    ca.add_multiple_n1([int(i) for i in ls_ids])
    return grid, ca


def row_order(ca, ls_ids):
    """Row of the analysis' results holding each outage (it does not keep the order given)."""
    where = {tuple(c): r for r, c in enumerate(ca.my_defaults())}
    return np.array([where[(int(i),)] for i in ls_ids], dtype=np.int64)


def base_voltages(grid, V0, tol, max_iter):
    """lightsim2grid's base-case solution from V0 (what every outage starts from)."""
    V = grid.ac_pf(V0.copy(), max_iter, lightsim_tolerance(tol, grid.get_sn_mva()))
    return V if V.size else np.full(len(V0), np.nan + 0j)


def run(ppc, outages, sample, tol, max_iter, repeat):
    ls_of_row = ls_branch_ids(ppc)
    ls_ids = ls_of_row[outages]
    V0 = ppc["bus"][:, VM] * np.exp(1j * np.radians(ppc["bus"][:, VA]))
    runs = []
    for k in range(repeat + 1):  # run 0 is a warm-up
        t0 = time.perf_counter()
        grid, ca = build(ppc, ls_ids)
        t1 = time.perf_counter()
        ca.compute(V0.copy(), max_iter, lightsim_tolerance(tol, grid.get_sn_mva()))
        t2 = time.perf_counter()
        res = np.asarray(ca.compute_branch_results())
        t3 = time.perf_counter()
        if k:
            runs.append(dict(build_s=t1 - t0, compute_s=t2 - t1, flows_s=t3 - t2,
                             cpp_total_s=float(ca.total_time()), cpp_solve_s=float(ca.solve_time()),
                             cpp_preprocessing_s=float(ca.preprocessing_time())))
    best = {key: min(r[key] for r in runs) for key in runs[0]}
    rows = row_order(ca, ls_ids)
    conv = np.asarray(ca.converged_mask(), dtype=bool)[rows]
    iters = np.asarray(ca.get_row_nb_iter()).ravel()[rows]
    # branch results in case row order: column ls_of_row[i] holds case branch i
    res = res[:, ls_of_row, :]
    s = np.maximum(np.hypot(res[..., 0], res[..., 1]), np.hypot(res[..., 2], res[..., 3]))[rows]
    rate = ppc["branch"][:, RATE_A]
    rated = (rate > 0) & (ppc["branch"][:, BR_STATUS] > 0)
    loading = np.where(rated[None, :], s * 100.0 / np.where(rated, rate, 1.0)[None, :], -np.inf)
    if rated.any():
        argmax = np.argmax(loading, axis=1)
        mx = np.where(conv, loading.max(axis=1), np.nan)
    else:  # case118 and the like: no ratings, compare flows instead
        argmax, mx = np.full(len(rows), -1), np.full(len(rows), np.nan)
    V = np.asarray(ca.get_voltages())
    info = dict(best, outages=int(len(outages)), converged=int(conv.sum()), iterations_mean=float(iters[conv].mean())
                if conv.any() else None, algorithm=str(ca.get_algo_type()).split(".")[-1],
                tol_passed=lightsim_tolerance(tol, grid.get_sn_mva()))
    base_V = base_voltages(grid, V0, tol, max_iter)
    arrays = dict(converged=conv, iterations=iters, max_loading_pct=mx, argmax=argmax,
                  sample_branch=res[rows[sample]], sample_V=V[rows[sample]], base_V=base_V)
    return arrays, info


def _versions():
    from importlib.metadata import version

    return {name: version(name) for name in ("lightsim2grid", "numpy", "scipy")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("case", help="MATPOWER .m case file")
    ap.add_argument("--outages", required=True, help="npz: 'branch' (case branch rows, 0-based), 'sample' "
                                                     "(positions in 'branch' whose flows come back)")
    ap.add_argument("--out", required=True, help="output npz")
    ap.add_argument("--tol", type=float, default=1e-8, help="max mismatch, p.u. (default 1e-8)")
    ap.add_argument("--max-iter", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up (best is kept)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    ppc = read_case(args.case)
    to_positions(ppc)
    with np.load(args.outages) as data:
        outages = np.asarray(data["branch"], dtype=np.int64)
        sample = np.asarray(data["sample"], dtype=np.int64)
    if outages.size and (outages.min() < 0 or outages.max() >= len(ppc["branch"])):
        raise SystemExit(f"peer_nminus1: {args.outages}: branch rows must lie in 0..{len(ppc['branch']) - 1}")
    arrays, info = run(ppc, outages, sample, args.tol, args.max_iter, args.repeat)
    meta = dict(case=args.case, tol_pu=args.tol, max_iter=args.max_iter, repeat=args.repeat,
                versions=_versions(), lightsim2grid=info)
    np.savez(args.out, meta=json.dumps(meta), **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
