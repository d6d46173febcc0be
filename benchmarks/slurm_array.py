"""Slurm array overhead: submit-to-finish time of a trivial N-task array on a running cluster, and
gat-hpc's own cost per task (interpreter start, imports, chunk spec and run directory load,
Parquet partition and result written, all fsynced), measured by timing `gat-hpc worker` itself.

    eval "$(bash scripts/start-slurm.sh /tmp/gat-slurm)"     # or a real cluster's SLURM_CONF
    .venv/bin/python benchmarks/slurm_array.py --tasks 100 [--venv .venv] [--extra ...]

Prints one JSON object.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

GAT = os.path.join(os.path.dirname(sys.executable), "gat-hpc")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--venv", default=os.path.dirname(os.path.dirname(sys.executable)))
    ap.add_argument("--worker-samples", type=int, default=20, help="`gat-hpc worker` runs timed locally")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="gat-slurm-bench-")
    run = os.path.join(work, "run")
    subprocess.run([GAT, "emit-sbatch", "trivial", "--items", str(args.tasks), "--run-dir", run, "--venv", args.venv,
                    "--time", "5"], check=True, capture_output=True)
    t0 = time.perf_counter()
    out = subprocess.run(["bash", os.path.join(run, "submit.sh")], check=True, capture_output=True, text=True).stdout
    t_submit = time.perf_counter() - t0
    ids = [line.split()[-1] for line in out.splitlines() if line.endswith(tuple("0123456789"))]
    while subprocess.run(["squeue", "-h", "-j", ",".join(ids)], capture_output=True, text=True).stdout.strip():
        time.sleep(0.1)
    t_done = time.perf_counter() - t0
    summary = os.path.isfile(os.path.join(run, "reduce", "summary.json"))
    chunk_s = [json.load(open(os.path.join(run, "results", f"{c}.json")))["end"]
               - json.load(open(os.path.join(run, "results", f"{c}.json")))["start"] for c in range(args.tasks)]
    walls = []
    for i in range(args.worker_samples):
        t = time.perf_counter()
        subprocess.run([GAT, "worker", "--run-dir", run, "--chunk", str(i % args.tasks), "--force"], check=True,
                       capture_output=True)
        walls.append(time.perf_counter() - t)
    print(json.dumps({
        "tasks": args.tasks, "cpus": subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True,
                                                    text=True).stdout.strip(),
        "submit_s": round(t_submit, 3), "submit_to_reduced_s": round(t_done, 2), "reduced": summary,
        "chunk_in_worker_s_mean": round(statistics.fmean(chunk_s), 4),
        "worker_process_s": {"mean": round(statistics.fmean(walls), 3), "min": round(min(walls), 3),
                             "max": round(max(walls), 3)},
    }, indent=1))


if __name__ == "__main__":
    main()
