"""`gat-hpc nminus1 dc --device gpu` end to end against the CPU screen, on the same machine.

Runs the whole command (read, plan, LODF, screen, write, reduce) twice on one case and a
deterministic 24-hour profile: with ``--device gpu --precision float32`` (one process, one
GPU) and on the CPU with the process executor on ``--workers`` processes; prints wall times,
their ratio, the device time of the screen itself (chunk metrics), and how the two runs'
tables agree (violation counts, maximum loading difference against the float32 bound).

Usage (the device machine)::

    python benchmarks/gpu_nminus1.py --case .whl/cases/case_ACTIVSg10k.m --workers 16
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def run(argv):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "gat_hpc", *argv], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{r.stderr}")
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default=".whl/cases/case_ACTIVSg10k.m")
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--threshold", type=float, default=100.0)
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="gat-n1-gpu-")
    try:
        h = np.arange(args.hours)
        prof = os.path.join(work, "day.parquet")
        pq.write_table(pa.table({"hour": h, "load_scale": 0.8 + 0.25 * np.sin(np.pi * h / args.hours) ** 2}), prof)
        common = ["nminus1", "dc", args.case, "--profiles", prof, "--threshold", str(args.threshold), "--quiet"]
        t_gpu = run([*common, "--device", "gpu", "--chunk-contingencies", "100000", "--chunk-hours", str(args.hours),
                     "--run-dir", os.path.join(work, "gpu")])
        t_cpu = run([*common, "--executor", "process", "--max-procs", str(args.workers),
                     "--run-dir", os.path.join(work, "cpu")])
        metrics = [json.load(open(p))["metrics"] for p in glob.glob(os.path.join(work, "gpu", "results", "*.json"))]
        dev_s = sum(m.get("device_screen_s", 0.0) for m in metrics)
        chunk_s = sum(m["seconds"] for m in metrics)
        flows = sum(m["post_outage_flows"] for m in metrics)
        # reduced tables are in key order; sorting again keeps runs reduced before that comparable
        t = {d: pq.read_table(os.path.join(work, d, "reduce", "contingencies.parquet"))
             .sort_by([("hour", "ascending"), ("contingency_index", "ascending")]) for d in ("gpu", "cpu")}
        v = {d: pq.read_table(os.path.join(work, d, "reduce", "violations.parquet")).num_rows for d in ("gpu", "cpu")}
        a = t["cpu"]["max_loading_pct"].to_numpy(zero_copy_only=False)
        b = t["gpu"]["max_loading_pct"].to_numpy(zero_copy_only=False)
        same_count = np.mean(np.asarray(t["cpu"]["violation_count"]) == np.asarray(t["gpu"]["violation_count"]))
        print(f"case {os.path.basename(args.case)}, {args.hours} hours, {t['gpu'].num_rows} (hour, contingency) rows, "
              f"{flows:.3e} post-outage flows")
        print(f"gpu (1 process, float32): {t_gpu:.2f} s wall; chunk {chunk_s:.2f} s, of which the screen "
              f"{dev_s:.3f} s (upload, kernel, download)")
        print(f"cpu ({args.workers} processes, float64): {t_cpu:.2f} s wall; ratio cpu/gpu {t_cpu / t_gpu:.2f}x")
        print(f"agreement: max |loading diff| {np.nanmax(np.abs(a - b)):.2e} %, violation counts equal in "
              f"{same_count * 100:.4f}% of rows, violation rows {v['gpu']} (gpu) vs {v['cpu']} (cpu)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
