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
    p.add_argument("--out", help="output folder (replaced whole on success, untouched on failure)")
    add_solve_arguments(p)
    p.add_argument("--linear-solver", default="auto", choices=("auto", "klu", "umfpack", "superlu"),
                   help="sparse LU for Newton steps (auto: KLU via PETSc if available, else SuperLU)")
    sweep = p.add_argument_group("hourly sweep (AC only): one power flow per profile hour, in a run directory")
    add_sweep_arguments(sweep)
    from gat_hpc.cli.runs import add_executor_args
    add_executor_args(sweep)
    from gat_hpc.dist.command import add_arguments as add_dist_arguments
    add_dist_arguments(p)  # --solver petsc: distributed Newton under mpirun; PETSc options pass through
    p.set_defaults(func=run)
    return p


def add_solve_arguments(p):
    """Newton options shared by `pf` and `emit-sbatch pf`."""
    p.add_argument("--tol", type=float, default=1e-8, help="max power mismatch, p.u. (default 1e-8)")
    p.add_argument("--max-iter", type=int, default=30, help="Newton iterations per solve (default 30)")
    p.add_argument("--init", choices=("case", "flat", "dc"), default="case",
                   help="starting voltages: case file values (default), flat, or DC angles")
    p.add_argument("--q-limits", action="store_true",
                   help="enforce generator reactive limits (PV buses at a limit become PQ)")


def add_sweep_arguments(g, run_dir=True):
    """Hourly-sweep options shared by `pf` and `emit-sbatch pf` (the latter has its own --run-dir)."""
    g.add_argument("--profiles", help="load profile (Parquet/CSV): hour + load_scale | load_mw | bus_id, p_mw[, q_mvar]")
    if run_dir:
        g.add_argument("--run-dir", help="run directory of the sweep (created, or continued if it holds the same study)")
    g.add_argument("--hours", help="only profile hours A <= hour < B, written A:B")
    g.add_argument("--chunk-size", type=int, default=24, help="hours per chunk (default 24)")
    g.add_argument("--dispatch", choices=("proportional", "slack"), default="proportional",
                   help="generation follows load in proportion to the case dispatch (default), or the slack takes it")


def run(args):
    from gat_hpc.network.io import read_case
    from gat_hpc.pf.results import write_output

    from gat_hpc.errors import InputError

    if args.tol <= 0 or args.max_iter < 1:
        raise InputError("--tol must be positive and --max-iter at least 1")
    if args.solver == "petsc" and not (args.run_dir or args.profiles):
        from gat_hpc.dist.command import run as run_dist
        return run_dist(args)
    if args.run_dir or args.profiles:
        if not (args.run_dir and args.profiles) or args.model != "ac":
            raise InputError("an hourly sweep needs `pf ac` with both --profiles and --run-dir")
        return run_sweep(args)
    if not args.out:
        raise InputError("give --out DIR for a single power flow (or --profiles and --run-dir for an hourly sweep)")
    given = [o for o, v in (("--checkpoint-every", args.checkpoint_every), ("--restart", args.restart),
                            ("--partition-file", args.partition_file)) if v]
    if given:
        raise InputError(f"{' and '.join(given)}: options of the distributed solver; add --solver petsc")
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


def sweep_definition(args):
    """Study name, configuration, inputs and hour range of `pf ac CASE --profiles P` (reads nothing)."""
    from gat_hpc.errors import InputError
    from gat_hpc.studies.profiles import parse_hours

    if args.chunk_size < 1:
        raise InputError("--chunk-size must be at least 1")
    hours = parse_hours(args.hours)
    config = dict(tol=args.tol, max_iter=args.max_iter, init=args.init, q_limits=bool(args.q_limits),
                  dispatch=args.dispatch, hours=list(hours) if hours else None, chunk_size=args.chunk_size)
    config.update(_dist_sweep_config(args))
    return "pf-hourly", config, {"case": args.case, "profile": args.profiles}, hours


def _dist_sweep_config(args):
    """Configuration of an hourly sweep whose hours are distributed solves (``--solver petsc``)."""
    from gat_hpc.errors import InputError

    solver = getattr(args, "solver", "newton")
    per = getattr(args, "ranks_per_solve", None)
    if solver != "petsc":
        if per is not None:
            raise InputError("--ranks-per-solve needs --solver petsc")
        return {}
    if getattr(args, "checkpoint_every", 0) or getattr(args, "restart", None) or getattr(args, "partition_file", None):
        raise InputError("--checkpoint-every, --restart and --partition-file belong to one distributed power flow, "
                         "not a sweep (a sweep partitions once per chunk)")
    per = 1 if per is None else per
    if per < 1:
        raise InputError("--ranks-per-solve must be at least 1")
    if per > 1 and getattr(args, "executor", "local") != "mpi":
        raise InputError(f"--ranks-per-solve {per} needs --executor mpi under `mpirun -n N` (N a multiple of {per})")
    from gat_hpc.dist.petsc import init_petsc

    init_petsc(getattr(args, "petsc_options", []))
    return {"solver": "petsc", "ranks_per_solve": per}


def sweep_chunks(args, hours):
    """The sweep's chunk specs: reads the case and the profile."""
    from gat_hpc.network.io import read_case
    from gat_hpc.studies.pf_hourly import PFHourly
    from gat_hpc.studies.profiles import Profile

    net = read_case(args.case)
    return PFHourly.plan(Profile(args.profiles, net), hours, args.chunk_size)


def plan_sweep(args):
    """(study, config, inputs, chunks) of the hourly sweep: what `create_or_open` needs (emit-sbatch uses it)."""
    study, config, inputs, hours = sweep_definition(args)
    return study, config, inputs, sweep_chunks(args, hours)


def run_sweep(args):
    """``pf ac CASE --profiles P --run-dir RUN``: the hourly AC power-flow study."""
    from gat_hpc.cli.runs import make_executor_from
    from gat_hpc.runs.sweep import create_or_open, finish, on_root, run_chunks

    study, config, inputs, hours = sweep_definition(args)
    ex = make_executor_from(args)
    chunks = on_root(ex, lambda: sweep_chunks(args, hours))
    rd = create_or_open(ex, args.run_dir, study, config, inputs, chunks, command=sys.argv)
    run_chunks(rd, ex, quiet=args.quiet, label="pf ac hourly")
    return finish(rd, ex, quiet=args.quiet)
