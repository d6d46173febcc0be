"""``gat-hpc adequacy CASE --reliability R.csv --run-dir RUN``: Monte-Carlo LOLE / EUE / LOLP."""

from __future__ import annotations

import argparse
import json
import os
import sys

from gat_hpc.cli.argtypes import checked, positive_int
from gat_hpc.errors import InputError

EXAMPLES = """examples:
  gat-hpc adequacy case118.m --reliability for.csv --profiles year.parquet --samples 2000 --seed 7 \\
      --run-dir runs/adq --executor process
  gat-hpc adequacy case118.m --reliability for.csv --profiles year.parquet --method sequential \\
      --samples 10000 --target-cov 0.05 --run-dir runs/adq-seq
  gat-hpc adequacy case118.m --reliability for.csv --profiles year.parquet --network dc \\
      --samples 200 --run-dir runs/adq-dc
  gat-hpc adequacy case118.m --reliability for.csv --profiles year.parquet --method analytic --run-dir runs/copt
  gat-hpc adequacy case118.m --reliability for.csv --profiles year.parquet --samples 1000000 \\
      --chunk-samples 100000 --device gpu --run-dir runs/adq-gpu
  mpirun -n 8 gat-hpc adequacy case118.m --reliability for.csv --profiles year.parquet \\
      --samples 100000 --executor mpi --run-dir runs/adq-big

R.csv: gen_id (1-based row of the case's gen table) or branch_id (dc network only), for (0..1),
optional mttr_h (hours; needed by --method sequential). Units not listed never fail.
Indices are totals over the profile's hours (a one-year profile gives per-year figures).
"""


_seed = checked(int, lambda v: v >= 0, "the seed must be a non-negative integer, got {v}")
_cov = checked(float, lambda v: 0 < v < 1, "{v}: give the target coefficient of variation as a fraction, 0 < C < 1")
_mw = checked(float, lambda v: v > 0, "{v} must be a positive number of MW")


def add_arguments(p, run_dir=True):
    """The study's arguments (shared with ``emit-sbatch``, which adds its own --run-dir)."""
    from gat_hpc.studies.adequacy import METHODS, NETWORKS, RNGS

    p.add_argument("case", help="MATPOWER .m, PSS/E .raw or grid.arrow case")
    p.add_argument("--reliability", required=True, metavar="R.csv",
                   help="forced outage data: gen_id or branch_id, for, optional mttr_h (CSV or Parquet)")
    p.add_argument("--profiles", help="hourly loads: hour,load_mw | hour,load_scale | hour,bus_id,p_mw (Parquet/CSV), "
                                      "or a MATPOWER scenarios .m table; default: the case loads as one hour")
    p.add_argument("--samples", type=positive_int, default=1000,
                   help="Monte-Carlo samples, each one pass through the hours (the maximum with --target-cov)")
    p.add_argument("--seed", type=_seed, default=0, help="sample s draws from SeedSequence(seed, spawn_key=(s,))")
    p.add_argument("--method", choices=METHODS, default="nonsequential",
                   help="nonsequential: independent hourly states; sequential: two-state Markov chains (FOR, MTTR); "
                        "analytic: exact capacity-outage-table convolution (copperplate)")
    p.add_argument("--network", choices=NETWORKS, default="copperplate",
                   help="copperplate: capacity against load; dc: minimum load shedding under DC branch limits (HiGHS)")
    p.add_argument("--hours", help="only profile hours A <= hour < B, written A:B")
    p.add_argument("--target-cov", type=_cov, default=None,
                   help="stop adding sample batches once the EUE estimate's coefficient of variation is below this")
    p.add_argument("--batch-samples", type=positive_int, default=None,
                   help="with --target-cov: samples per batch (default: a tenth of --samples, at least one chunk)")
    p.add_argument("--chunk-samples", type=positive_int, default=None,
                   help="samples per chunk (default 100; 10 with --network dc)")
    p.add_argument("--chunk-hours", type=positive_int, default=None, help="hours per chunk (default: all)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="gpu: copperplate non-sequential samples on the GPU (CUDA kernel, one GPU per process); "
                        "implies --rng philox")
    p.add_argument("--rng", choices=RNGS, default=None,
                   help="unit states from pcg64 (default: SeedSequence(seed, spawn_key=(sample,))) or philox "
                        "(Philox4x32-10 keyed by seed, sample, hour and unit: the GPU's states, identical on the CPU)")
    p.add_argument("--copt-step-mw", type=_mw, default=None,
                   help="analytic: round capacities to multiples of this (default: exact, the gcd of the capacities)")
    if run_dir:
        p.add_argument("--run-dir", required=True, help="run directory (created, or continued for the same study)")


def add_parser(sub):
    from gat_hpc.cli.runs import add_executor_args

    p = sub.add_parser("adequacy", help="Monte-Carlo resource adequacy: LOLE, EUE, LOLP with confidence intervals",
                       description="Sample unit outages (reproducibly, per sample) through the profile's hours and "
                                   "count loss of load, on a copperplate or under DC network limits; writes one row "
                                   "per sample (reduce/adequacy.parquet), the hourly LOLP (reduce/hourly.parquet) and "
                                   "reduce/summary.json with means, standard errors and 95% intervals.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    add_executor_args(p)
    p.set_defaults(func=run)
    return p


def config_from(args):
    from gat_hpc.studies.profiles import parse_hours

    hours = parse_hours(args.hours)
    if args.method == "analytic" and args.network != "copperplate":
        raise InputError("--method analytic is exact for --network copperplate only")
    if args.copt_step_mw is not None and args.method != "analytic":
        raise InputError("--copt-step-mw applies to --method analytic only")
    rng = args.rng or ("philox" if args.device == "gpu" else "pcg64")
    if args.device == "gpu" and rng != "philox":
        raise InputError("--device gpu draws unit states with --rng philox")
    extra = {}
    if rng == "philox":
        if args.method != "nonsequential" or args.network != "copperplate":
            raise InputError("--rng philox and --device gpu sample --method nonsequential --network copperplate only")
        extra = {"rng": "philox", "device": args.device}
    chunk = args.chunk_samples or (10 if args.network == "dc" else 100)
    chunk = min(chunk, args.samples)
    batch = args.batch_samples or max(chunk, -(-args.samples // 10))
    return dict(method=args.method, network=args.network, samples=args.samples if args.method != "analytic" else 0,
                seed=args.seed, hours=list(hours) if hours else None, target_cov=args.target_cov,
                batch_samples=batch if args.target_cov else None, chunk_samples=chunk,
                chunk_hours=args.chunk_hours, copt_step_mw=args.copt_step_mw, **extra)


def plan_study(args):
    """(config, inputs, chunks) of the adequacy study described by ``args``; checks every input."""
    from gat_hpc.network.io import read_case
    from gat_hpc.studies.adequacy import Adequacy, open_profile, read_reliability

    config = config_from(args)
    net = read_case(args.case)
    rel = read_reliability(args.reliability, net)
    profile = open_profile(args.profiles, net)
    ctx = Adequacy.prepare(net, rel, profile, config)
    config["n_hours"] = len(ctx["rows"])
    chunks = Adequacy.plan(config, config["n_hours"])
    inputs = {"case": args.case, "reliability": args.reliability}
    if args.profiles:
        inputs["profile"] = args.profiles
    return config, inputs, chunks


def report(rd):
    """One paragraph of indices on stdout, from reduce/summary.json."""
    with open(os.path.join(rd.path, "reduce", "summary.json")) as fh:
        s = json.load(fh)
    if "lole_h_per_yr" not in s:
        return
    def fmt(key, unit):
        e = s[key]
        ci = e.get("ci95") or [None, None]
        if ci[0] is None:
            return f"{key.split('_')[0].upper()} {e['mean']:.6g} {unit}"
        return f"{key.split('_')[0].upper()} {e['mean']:.6g} {unit} (95% CI {ci[0]:.6g} .. {ci[1]:.6g})"
    n = "exact" if s.get("exact") else f"{s['samples']} samples"
    cov = s.get("cov")
    print(f"adequacy ({s['method']}, {s['network']}, {n}, {s['hours']} h): {fmt('lole_h_per_yr', 'h')}; "
          f"{fmt('eue_mwh_per_yr', 'MWh')}; LOLP {s['lolp']['mean']:.6g}"
          + (f"; EUE CoV {cov:.4f}" if cov is not None and not s.get("exact") else ""))


def run(args):
    from gat_hpc.cli.runs import make_executor_from
    from gat_hpc.runs.rundir import RunDir
    from gat_hpc.runs.sweep import create_or_open, finish, on_root, run_chunks
    from gat_hpc.studies.adequacy import Adequacy

    ex = make_executor_from(args)
    from gat_hpc.cuda.runtime import require_gpu_for

    require_gpu_for(args.device)
    config, inputs, chunks = on_root(ex, lambda: plan_study(args))
    rd = create_or_open(ex, args.run_dir, "adequacy", config, inputs, chunks, sys.argv)
    label = f"adequacy {config['method']} {config['network']}"
    while True:
        run_chunks(rd, ex, quiet=args.quiet, label=label)
        # a finished batch whose EUE is not yet precise enough gets the next one appended
        new = on_root(ex, lambda: Adequacy().extend(rd))
        if not new:
            break
        rd = RunDir.open(rd.path)
    code = finish(rd, ex, quiet=args.quiet)
    if code == 0 and ex.is_root and not args.quiet:
        report(rd)
    return code
