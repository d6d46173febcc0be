"""``gat-hpc verify --run-dir RUN``: recompute every hour's power mismatch of an hourly AC run."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

EXAMPLES = """examples:
  gat-hpc pf ac case118.m --profiles day.parquet --run-dir runs/day
  gat-hpc verify --run-dir runs/day                       # every hour, scipy
  gat-hpc verify --run-dir runs/year --device gpu --precision complex64 --tol-mw 1
"""


def add_parser(sub):
    p = sub.add_parser("verify", help="check an hourly AC power-flow run: every hour's mismatch in one batch (CPU or GPU)",
                       description="Rebuild each hour's specified injections from the run's inputs and recompute "
                                   "V conj(Ybus V) from its voltages, all hours in one batch: the largest active "
                                   "(non-slack buses) and reactive (load buses) mismatch per hour. Writes "
                                   "RUN/verify/mismatch.parquet and RUN/verify/summary.json; exit 3 when a "
                                   "mismatch exceeds --tol-mw.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", required=True, help="a reduced hourly AC power-flow run (gat-hpc pf ac --profiles)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="gpu: the CUDA CSR mismatch kernel (PyCUDA); cpu: one scipy sparse product")
    p.add_argument("--precision", choices=("complex128", "complex64"), default="complex128",
                   help="complex64 halves the bytes; its error bound is printed (a screen, not a proof)")
    p.add_argument("--tol-mw", type=float, default=0.01,
                   help="largest acceptable mismatch, MW or Mvar (default 0.01)")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=run)
    return p


def run(args):
    import numpy as np
    import pyarrow.parquet as pq

    from gat_hpc.errors import ConvergenceError, InputError
    from gat_hpc.runs.rundir import RunDir
    from gat_hpc.studies.verify import verify_hourly_run

    if not args.tol_mw > 0:
        raise InputError("--tol-mw must be positive")
    from gat_hpc.cuda.runtime import require_gpu_for

    require_gpu_for(args.device)
    rd = RunDir.open(args.run_dir)
    table, summary = verify_hourly_run(rd, args.device, np.dtype(args.precision))
    summary["tol_mw"] = args.tol_mw
    out = os.path.join(rd.path, "verify")
    tmp = tempfile.mkdtemp(prefix=".verify-", dir=rd.path)
    try:
        pq.write_table(table, os.path.join(tmp, "mismatch.parquet"))
        with open(os.path.join(tmp, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=1)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    worst = max(summary["max_p_mismatch_mw"] or 0.0, summary["max_q_mismatch_mvar"] or 0.0)
    if not args.quiet:
        bound = summary["complex64_bound_mw"]
        print(f"verified {summary['hours_checked']} hours ({summary['device']}, {summary['precision']}): "
              f"largest P mismatch {summary['max_p_mismatch_mw']:.3g} MW (hour {summary['max_p_hour']}), "
              f"Q {summary['max_q_mismatch_mvar']:.3g} Mvar (hour {summary['max_q_hour']})"
              + (f"; complex64 rounding bound {bound:.3g} MW" if bound is not None else "")
              + (f"; {summary['hours_not_converged']} hours did not converge" if summary["hours_not_converged"] else ""))
    if worst > args.tol_mw:
        raise ConvergenceError(f"{rd.path}: a mismatch of {worst:.6g} MW/Mvar exceeds --tol-mw {args.tol_mw} "
                               f"(see {os.path.join(out, 'mismatch.parquet')})")
    return 0
