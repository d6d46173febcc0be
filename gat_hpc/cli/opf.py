"""``gat-hpc opf dc CASE --profiles P --run-dir RUN``: rolling DC optimal power flow (HiGHS)."""

from __future__ import annotations

import argparse
import sys

from gat_hpc.cli.argtypes import positive_int, percent
from gat_hpc.errors import InputError

EXAMPLES = """examples:
  gat-hpc opf dc case118.m --profiles load.parquet --run-dir runs/opf118
  gat-hpc opf dc case118.m --profiles load.parquet --horizon 24 --step 12 --ramp --ramp-pct 20 --run-dir runs/opf-ramp
  gat-hpc opf dc case_ACTIVSg2000.m --profiles scenarios_ACTIVSg2000.m --horizon 24 \\
      --run-dir runs/opf2000 --executor process --max-procs 8

Costs come from the case's gencost (linear and quadratic polynomials solved exactly,
piecewise-linear convex curves); branch limits are rateA (0 = unlimited).
Outputs under RUN/reduce: hours, dispatch, lmp, flows, binding (.parquet) and summary.json.
"""


_RAMP_PCT = percent(100, "the ramp limit in percent of Pmax per hour")


def add_arguments(p, run_dir=True):
    """The study's arguments (shared with ``emit-sbatch``, which adds its own --run-dir)."""
    p.add_argument("mode", choices=("dc",), help="dc: linearised network (B-theta), solved by HiGHS")
    p.add_argument("case", help="MATPOWER .m (with gencost), PSS/E .raw or grid.arrow case")
    p.add_argument("--profiles", help="hourly loads: hour,load_mw | hour,load_scale | hour,bus_id,p_mw (Parquet/CSV), "
                                      "or a MATPOWER scenarios .m table (generator changes applied); "
                                      "default: the case loads as one hour")
    p.add_argument("--horizon", type=positive_int, default=24, help="hours optimised together in one window (default 24)")
    p.add_argument("--step", type=positive_int, default=None,
                   help="hours committed per window before it rolls on (default: the horizon)")
    p.add_argument("--ramp", action="store_true",
                   help="limit generator changes between consecutive hours (case RAMP_30 x 2 or RAMP_AGC x 60 MW/h)")
    p.add_argument("--ramp-pct", type=_RAMP_PCT, default=None,
                   help="with --ramp: ramp limit in %% of Pmax per hour for generators without case ramp data")
    p.add_argument("--relax-pmin", action="store_true",
                   help="treat every Pmin as 0: no unit commitment, any unit may be dispatched down to 0")
    p.add_argument("--hours", help="only profile hours A <= hour < B, written A:B")
    p.add_argument("--chunk-hours", type=positive_int, default=None,
                   help="hours per chunk, a multiple of the step (default: all hours with --ramp, else the "
                        "multiple of the step nearest below 168)")
    if run_dir:
        p.add_argument("--run-dir", required=True, help="run directory (created, or continued for the same study)")


def add_parser(sub):
    from gat_hpc.cli.runs import add_executor_args

    top = sub.add_parser("opf", help="rolling DC optimal power flow with HiGHS: dispatch, LMPs, binding constraints",
                         description="Economic dispatch over a load profile with DC branch limits, generator limits "
                                     "and optional ramp limits, window by window.",
                         epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(top)
    add_executor_args(top)
    top.set_defaults(func=run)
    return top


def config_from(args):
    from gat_hpc.studies.profiles import parse_hours

    hours = parse_hours(args.hours)
    step = args.step or args.horizon
    if step > args.horizon:
        raise InputError(f"--step {step} is longer than --horizon {args.horizon}: a window commits at most its own hours")
    if args.ramp_pct is not None and not args.ramp:
        raise InputError("--ramp-pct needs --ramp")
    chunk = args.chunk_hours
    if chunk is None and not args.ramp:
        chunk = max(step, 168 // step * step)  # about a week, in whole steps
    if chunk is not None:
        if chunk % step:
            raise InputError(f"--chunk-hours {chunk} must be a multiple of the step ({step}) so that windows line up")
    return dict(mode=args.mode, horizon=args.horizon, step=step, ramp=bool(args.ramp), ramp_pct=args.ramp_pct,
                relax_pmin=bool(args.relax_pmin), hours=list(hours) if hours else None, chunk_hours=chunk)


def plan_study(args):
    from gat_hpc.network.io import read_case
    from gat_hpc.studies.adequacy import open_profile
    from gat_hpc.studies.opf import RollingOPF

    config = config_from(args)
    net = read_case(args.case)
    profile = open_profile(args.profiles, net)
    ctx = RollingOPF.prepare(net, profile, config, args.case)
    RollingOPF.check_capacity(ctx)
    config["n_hours"] = len(ctx["rows"])
    chunks = RollingOPF.plan(config, config["n_hours"])
    inputs = {"case": args.case}
    if args.profiles:
        inputs["profile"] = args.profiles
    return config, inputs, chunks


def run(args):
    from gat_hpc.cli.runs import make_executor_from
    from gat_hpc.runs.sweep import create_or_open, finish, on_root, run_chunks

    ex = make_executor_from(args)
    config, inputs, chunks = on_root(ex, lambda: plan_study(args))
    rd = create_or_open(ex, args.run_dir, "opf-dc", config, inputs, chunks, sys.argv)
    run_chunks(rd, ex, quiet=args.quiet, label="opf dc")
    return finish(rd, ex, quiet=args.quiet)
