"""``gat-hpc pf ac CASE --solver petsc --out DIR`` under ``mpirun -n N``: the distributed AC power flow.

Every rank runs this; rank 0 reports and writes the output folder (the same files as the
serial solver: buses/flows/generators.parquet and summary.json). A failure on any rank
ends every rank with the same exit code (2 bad input, 3 no convergence); only rank 0
prints the message.
"""

from __future__ import annotations

import os
import socket
import sys
import time

import numpy as np

from gat_hpc import __version__
from gat_hpc.errors import GatError, InputError

READ_MODES = ("auto", "root", "all")


def add_arguments(p):
    """`pf` options of the distributed solver; PETSc options pass through to PETSc."""
    from gat_hpc.dist.petsc import accept_petsc_options

    p.add_argument("--solver", choices=("newton", "petsc"), default="newton",
                   help="newton: serial Newton-Raphson (default); petsc: distributed Newton (PETSc SNES) over the "
                        "MPI ranks of `mpirun -n N`, PETSc options (-snes_monitor, -pc_type ...) after the case")
    g = p.add_argument_group("distributed AC power flow (--solver petsc)")
    g.add_argument("--checkpoint", metavar="FILE.h5",
                   help="solver checkpoint file (default with --checkpoint-every: OUT.checkpoint.h5 beside --out)")
    g.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                   help="write the solver state every K Newton iterations (parallel HDF5)")
    g.add_argument("--restart", metavar="CHECKPOINT", help="continue from a checkpoint file")
    g.add_argument("--partition-file", metavar="FILE.parquet",
                   help="a stored partition of the buses over the ranks: used when FILE exists (made for the "
                        "same network and number of ranks), else the partition computed in this run is "
                        "written there for the next runs")
    g.add_argument("--ranks-per-solve", type=int, default=None, metavar="R",
                   help="hourly sweep (--profiles, --run-dir) with --solver petsc and --executor mpi: groups of R "
                        "ranks each solve one chunk's hours with the distributed solver (default 1)")
    g.add_argument("--read", choices=READ_MODES, default="auto",
                   help="who reads the case: root (rank 0 reads and broadcasts), all (every rank reads a "
                        "grid.arrow folder itself); auto (default): root, which was faster here "
                        "(docs/distributed.md)")
    accept_petsc_options(p)


def run(args):
    """Entry point from ``gat_hpc.cli.pf`` for ``--solver petsc``."""
    _check_args(args)
    from gat_hpc.dist.petsc import init_petsc

    PETSc = init_petsc(getattr(args, "petsc_options", []))
    comm = PETSc.COMM_WORLD
    mpi = comm.tompi4py()
    try:
        summary = _run(args, comm, mpi)
    except GatError as exc:
        if mpi.Get_rank() == 0:
            raise
        raise SystemExit(exc.exit_code) from None  # rank 0 alone reports
    if mpi.Get_rank() == 0 and not args.quiet:
        n = summary["ranks"]
        print(f"pf ac (petsc, {n} rank{'s' if n > 1 else ''}): {summary['case_name']}: converged in "
              f"{summary['iterations']} iterations, solve {summary['timings_s']['solve']:.3f} s -> {args.out}",
              file=sys.stderr)
    return 0


def _check_args(args):
    if args.model != "ac":
        raise InputError("--solver petsc solves AC power flows; use `pf dc` without --solver")
    if args.ranks_per_solve is not None:
        raise InputError("--ranks-per-solve groups the ranks of an hourly sweep (--profiles, --run-dir); "
                         "one power flow uses every rank of mpirun")
    if not args.out:
        raise InputError("give --out DIR")
    if args.checkpoint_every < 0:
        raise InputError("--checkpoint-every must be 0 (off) or a positive number of iterations")
    if args.checkpoint and not args.checkpoint_every:
        raise InputError("--checkpoint needs --checkpoint-every K")


def read_network(path, mpi, mode="auto"):
    """The network on every rank: rank 0 reads and broadcasts ('root'), or every rank reads a
    grid.arrow folder itself ('all'). Errors reach every rank."""
    from gat_hpc.dist.collective import agree
    from gat_hpc.network.io import case_format, read_case

    mode = "root" if mode == "auto" else mode
    if mode == "all":
        if agree(mpi, case_format, path) != "arrow":
            raise InputError(f"{path}: --read all needs a grid.arrow folder (convert with `gat-hpc import`)")
        return agree(mpi, read_case, path)
    net = agree(mpi, lambda: read_case(path) if mpi.Get_rank() == 0 else None)
    return mpi.bcast(net, root=0)


def _run(args, comm, mpi):
    from gat_hpc.cli.progress import Progress
    from gat_hpc.dist.checkpoint import Checkpointer, read_checkpoint
    from gat_hpc.dist.snes import solve_ac_dist
    from gat_hpc.pf.results import ac_tables, write_output

    t0 = time.perf_counter()
    net = read_network(args.case, mpi, args.read)
    t_read = time.perf_counter() - t0
    restart = read_checkpoint(os.path.abspath(args.restart), net, mpi) if args.restart else None
    checkpoint = None
    if args.checkpoint_every:
        path = args.checkpoint or os.path.abspath(args.out).rstrip("/") + ".checkpoint.h5"
        checkpoint = Checkpointer(path, args.checkpoint_every, net, mpi)
    root = mpi.Get_rank() == 0
    progress = Progress("pf ac (petsc)", quiet=args.quiet or not root)

    def cb(it, norm):
        progress.update(f"iteration {it}, max mismatch {norm:.3e} p.u.")

    t1 = time.perf_counter()
    res, info = solve_ac_dist(net, comm, tol=args.tol, max_iter=args.max_iter, init=args.init,
                              q_limits=args.q_limits, checkpoint=checkpoint, restart=restart, callback=cb,
                              partition_file=os.path.abspath(args.partition_file) if args.partition_file else None)
    t_solve = time.perf_counter() - t1
    progress.close()
    summary = None
    error = None
    if root:
        try:
            summary = _summary(net, res, info, args, t_read, t_solve, checkpoint)
            write_output(args.out, ac_tables(res), summary)
        except GatError as exc:
            error = exc
        except OSError as exc:
            error = InputError(f"cannot write {args.out}: {exc}")
    code = mpi.bcast(0 if error is None else error.exit_code, root=0)
    if error is not None:
        raise error
    if code:
        raise SystemExit(code)
    return summary


def _summary(net, res, info, args, t_read, t_solve, checkpoint):
    """summary.json: the serial solver's keys plus how the distributed solve ran."""
    base = net.base_mva
    p = net.bus_load().real
    p[res.types.dead] = 0.0
    timings = {k: float(v) for k, v in info.timings.items()}
    timings.update(read=t_read, solve=t_solve)
    return dict(
        model="ac", converged=res.converged, iterations=res.iterations, max_mismatch_pu=res.max_mismatch_pu,
        max_p_mismatch_mw=res.max_p_mismatch_pu * base, max_q_mismatch_mvar=res.max_q_mismatch_pu * base,
        tol_pu=args.tol, init=args.init, q_limits=bool(args.q_limits), q_limit_rounds=res.q_rounds,
        q_limited_gen_ids=net.gen_id[res.q_limited].tolist(), linear_solver=info.linear_solver,
        islands=res.types.n_islands, slack_bus_ids=net.bus_id[res.types.ref].tolist(),
        deenergised_bus_ids=net.bus_id[res.types.dead].tolist(),
        total_gen_mw=float(np.sum(res.pg) * base), total_load_mw=float(np.sum(p) * base),
        losses_mw=float(np.sum((res.s_from + res.s_to).real) * base),
        solver="petsc", ranks=info.ranks, partition=info.partition, edge_cut=info.edge_cut,
        unknowns=info.unknowns, interface_unknowns=info.interface_unknowns,
        petsc_options=list(getattr(args, "petsc_options", [])),
        checkpoints_written=checkpoint.written if checkpoint else [],
        restart=os.path.abspath(args.restart) if args.restart else None,
        case=os.path.abspath(args.case), case_name=net.name, gat_hpc_version=__version__, host=socket.gethostname(),
        n_bus=net.n_bus, n_gen=net.n_gen, n_branch=net.n_branch, base_mva=base, timings_s=timings)
