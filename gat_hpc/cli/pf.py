"""``gat-hpc pf ac|dc CASE --out DIR``: one power flow, written as Parquet + summary.json."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

import numpy as np

from gat_hpc import __version__
from gat_hpc.cli.progress import Progress

EXAMPLES = """examples:
  gat-hpc pf ac case118.m --out out/pf118 --q-limits
  gat-hpc pf ac case13659pegase.m --init dc --out out/pf13659
  gat-hpc pf dc case300.m --out out/dc300
"""


def add_parser(sub):
    p = sub.add_parser("pf", help="solve one AC or DC power flow",
                       description="Solve one power flow and write buses.parquet, flows.parquet, "
                                   "generators.parquet and summary.json into --out.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=("ac", "dc"), help="AC (Newton-Raphson) or DC power flow")
    p.add_argument("case", help="MATPOWER .m, PSS/E .raw (v33) or grid.arrow folder")
    p.add_argument("--out", required=True, help="output folder (replaced whole on success, untouched on failure)")
    p.add_argument("--tol", type=float, default=1e-8, help="max power mismatch, p.u. (default 1e-8)")
    p.add_argument("--max-iter", type=int, default=30, help="Newton iterations per solve (default 30)")
    p.add_argument("--init", choices=("case", "flat", "dc"), default="case",
                   help="starting voltages: case file values (default), flat, or DC angles")
    p.add_argument("--q-limits", action="store_true",
                   help="enforce generator reactive limits (PV buses at a limit become PQ)")
    p.add_argument("--linear-solver", default="auto", choices=("auto", "klu", "umfpack", "superlu"),
                   help="sparse LU for Newton steps (auto: KLU via PETSc if available, else SuperLU)")
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    p.set_defaults(func=run)
    return p


def run(args):
    from gat_hpc.network.io import read_case
    from gat_hpc.pf.results import write_output

    if args.tol <= 0 or args.max_iter < 1:
        from gat_hpc.errors import InputError
        raise InputError("--tol must be positive and --max-iter at least 1")
    t0 = time.perf_counter()
    net = read_case(args.case)
    t_read = time.perf_counter() - t0
    progress = Progress(f"pf {args.model}", quiet=args.quiet)
    if args.model == "ac":
        tables, summary = _run_ac(net, args, progress)
    else:
        tables, summary = _run_dc(net, args)
    progress.close()
    summary.update(case=os.path.abspath(args.case), case_name=net.name, gat_hpc_version=__version__,
                   host=socket.gethostname(), n_bus=net.n_bus, n_gen=net.n_gen, n_branch=net.n_branch,
                   base_mva=net.base_mva)
    summary["timings_s"]["read"] = t_read
    write_output(args.out, tables, summary)
    if not args.quiet:
        s = summary
        print(f"pf {args.model}: {net.name}: converged in {s['iterations']} iterations, "
              f"solve {s['timings_s']['solve']:.3f} s -> {args.out}", file=sys.stderr)
    return 0


def _run_ac(net, args, progress):
    from gat_hpc.pf.ac import solve_ac
    from gat_hpc.pf.results import ac_tables

    def cb(it, norm):
        progress.update(f"iteration {it}, max mismatch {norm:.3e} p.u.")

    res = solve_ac(net, tol=args.tol, max_iter=args.max_iter, init=args.init, q_limits=args.q_limits,
                   solver=args.linear_solver, callback=cb)
    base = net.base_mva
    summary = dict(
        model="ac", converged=res.converged, iterations=res.iterations,
        max_mismatch_pu=res.max_mismatch_pu,
        max_p_mismatch_mw=res.max_p_mismatch_pu * base, max_q_mismatch_mvar=res.max_q_mismatch_pu * base,
        tol_pu=args.tol, init=args.init, q_limits=bool(args.q_limits), q_limit_rounds=res.q_rounds,
        q_limited_gen_ids=net.gen_id[res.q_limited].tolist(), linear_solver=args.linear_solver,
        islands=res.types.n_islands, slack_bus_ids=net.bus_id[res.types.ref].tolist(),
        deenergised_bus_ids=net.bus_id[res.types.dead].tolist(),
        total_gen_mw=float(np.sum(res.pg) * base), total_load_mw=_served_load_mw(net, res.types),
        losses_mw=float(np.sum((res.s_from + res.s_to).real) * base),
        timings_s={k: float(v) for k, v in res.timings.items()},
    )
    return ac_tables(res), summary


def _run_dc(net, args):
    from gat_hpc.pf.dc import solve_dc
    from gat_hpc.pf.results import dc_tables

    res = solve_dc(net)
    timings = {("linear_solve" if k == "solve" else k): float(v) for k, v in res.timings.items()}
    timings["solve"] = float(sum(res.timings.values()))  # from the parsed network to the angles
    base = net.base_mva
    summary = dict(model="dc", converged=True, iterations=1, timings_s=timings,
                   islands=res.types.n_islands, slack_bus_ids=net.bus_id[res.types.ref].tolist(),
                   deenergised_bus_ids=net.bus_id[res.types.dead].tolist(),
                   total_gen_mw=float(np.sum(res.pg) * base), total_load_mw=_served_load_mw(net, res.types))
    return dc_tables(net, res), summary


def _served_load_mw(net, types):
    """Total load on energised buses, MW."""
    p = net.bus_load().real
    p[types.dead] = 0.0
    return float(np.sum(p) * net.base_mva)
