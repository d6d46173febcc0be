"""``gat-hpc nminus1 dc|ac CASE --run-dir RUN``: contingency screening across hours."""

from __future__ import annotations

import argparse
import sys

from gat_hpc.cli.argtypes import positive_int, percent
from gat_hpc.errors import InputError

EXAMPLES = """examples:
  gat-hpc nminus1 dc case118.m --run-dir runs/n1-118
  gat-hpc nminus1 dc case_ACTIVSg2000.m --profiles scenarios_ACTIVSg2000.m \\
      --contingencies contab_ACTIVSg2000.m --ac-threshold 100 --run-dir runs/year --executor process
  gat-hpc nminus1 dc case30.m --depth 2 --n2-candidates 20 --run-dir runs/n2-30
  mpirun -n 4 gat-hpc nminus1 ac case118.m --executor mpi --run-dir runs/ac118
  gat-hpc nminus1 dc case_ACTIVSg10k.m --profiles day.parquet --device gpu --chunk-contingencies 20000 \\
      --run-dir runs/n1-gpu
"""


_LOADING_PCT = percent(1000, "a loading in percent")


def add_parser(sub):
    from gat_hpc.cli.runs import add_executor_args

    p = sub.add_parser("nminus1", help="N-1 / N-2 contingency screening across hours (DC, AC verification)",
                       description="Screen every contingency for every profile hour with DC post-outage flows "
                                   "(LODF/PTDF), optionally re-solving the worst in AC; writes the per-(hour, "
                                   "contingency) summary, the violations, and reduce/top_violations.parquet.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    add_executor_args(p)
    p.set_defaults(func=run)
    return p


def add_arguments(p, run_dir=True):
    """The study's arguments (shared with ``emit-sbatch``, which adds its own --run-dir)."""
    p.add_argument("mode", choices=("dc", "ac"), help="dc: LODF screen (AC only above --ac-threshold); ac: every outage in AC")
    p.add_argument("case", help="MATPOWER .m, PSS/E .raw or grid.arrow case")
    if run_dir:
        p.add_argument("--run-dir", required=True, help="run directory (created, or continued for the same study)")
    p.add_argument("--profiles", help="hourly loads: Parquet/CSV profile or a MATPOWER scenarios_*.m change table "
                                      "(default: the case's loads as hour 0)")
    p.add_argument("--hours", help="only profile hours A <= hour < B, written A:B")
    p.add_argument("--contingencies", default="all",
                   help="'all' in-service branches (default), a MATPOWER contab_*.m, or a CSV label,branch_id[,gen_id]")
    p.add_argument("--depth", type=int, choices=(1, 2), default=1, help="2 adds branch pairs (see --n2-candidates)")
    p.add_argument("--n2-candidates", type=positive_int, default=50,
                   help="depth 2: all pairs of the N most severe single outages at the peak-load hour (default 50)")
    p.add_argument("--threshold", type=_LOADING_PCT, default=100.0, help="loading in %% of the rating that counts as a violation")
    p.add_argument("--rating", choices=("rateA", "rateB", "rateC"), default="rateA", help="branch rating used (default rateA)")
    p.add_argument("--ac-threshold", type=_LOADING_PCT, default=None,
                   help="dc mode: re-solve in AC the outages whose DC loading exceeds this %%")
    p.add_argument("--dispatch", choices=("proportional", "slack"), default="proportional",
                   help="generation follows load in proportion to the case dispatch (default) or through the slack")
    p.add_argument("--balancing", choices=("slack", "participation"), default="slack",
                   help="who picks up a lost generator's output: the slack (default) or the others by Pmax")
    p.add_argument("--top", type=positive_int, default=100, help="rows in reduce/top_violations.parquet (default 100)")
    p.add_argument("--violations-per-contingency", type=positive_int, default=5,
                   help="worst violated branches kept per (hour, contingency) (default 5)")
    p.add_argument("--chunk-hours", type=positive_int, default=24, help="hours per chunk (default 24)")
    p.add_argument("--chunk-contingencies", type=positive_int, default=500, help="contingencies per chunk (default 500)")
    p.add_argument("--tol", type=float, default=1e-8, help="AC mismatch tolerance, p.u.")
    p.add_argument("--max-iter", type=positive_int, default=20, help="AC Newton iterations per solve")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="gpu: single-branch outages screened by the CUDA LODF kernel, one GPU per process "
                        "(PyCUDA; pairs, generators and AC stay on the CPU). See docs/contingency.md")
    p.add_argument("--precision", choices=("float32", "float64"), default="float32",
                   help="--device gpu arithmetic (default float32: loadings within "
                        "2.5 eps32 (|f| + |LODF f_k|) / rating of float64)")


def config_from(args):
    from gat_hpc.studies.profiles import parse_hours

    hours = parse_hours(args.hours)
    if args.tol <= 0:
        raise InputError("--tol must be positive")
    device = {}
    if args.device == "gpu":
        from gat_hpc.cuda.screening import NMAX

        if args.violations_per_contingency > NMAX:
            raise InputError(f"--device gpu keeps at most {NMAX} --violations-per-contingency")
        device = {"device": "gpu", "precision": args.precision}
    elif args.precision != "float32":
        raise InputError("--precision applies to --device gpu only")
    return dict(**device,mode=args.mode, depth=args.depth, n2_candidates=args.n2_candidates, threshold_pct=args.threshold,
                rating=args.rating, ac_threshold_pct=args.ac_threshold, dispatch=args.dispatch,
                balancing=args.balancing, top=args.top, violations_per_contingency=args.violations_per_contingency,
                chunk_hours=args.chunk_hours, chunk_contingencies=args.chunk_contingencies, tol=args.tol,
                max_iter=args.max_iter, hours=list(hours) if hours else None,
                contingencies=args.contingencies if args.contingencies == "all" else "file")


def plan_study(args):
    """(config, inputs, chunks, derived) of the contingency study described by ``args``."""
    from gat_hpc.network.io import read_case
    from gat_hpc.studies.contingency import Contingency, contingencies_from_source, load_profile, table_bytes

    config = config_from(args)
    net = read_case(args.case)
    profile = load_profile(args.profiles, net) if args.profiles else None
    cont = contingencies_from_source(args.contingencies, net)
    chunks, cont = Contingency.plan(net, profile, cont, config)
    inputs = {"case": args.case}
    if args.profiles:
        inputs["profile"] = args.profiles
    if args.contingencies != "all":
        inputs["contingencies"] = args.contingencies
    return config, inputs, chunks, {"contingency_list": (".parquet", table_bytes(cont))}


def run(args):
    from gat_hpc.cli.runs import make_executor_from
    from gat_hpc.runs.sweep import create_or_open, finish, on_root, run_chunks

    ex = make_executor_from(args)
    from gat_hpc.cuda.runtime import require_gpu_for

    require_gpu_for(args.device)
    config, inputs, chunks, derived = on_root(ex, lambda: plan_study(args))
    rd = create_or_open(ex, args.run_dir, "contingency", config, inputs, chunks, sys.argv, derived=derived)
    run_chunks(rd, ex, quiet=args.quiet, label=f"nminus1 {args.mode}")
    return finish(rd, ex, quiet=args.quiet)
