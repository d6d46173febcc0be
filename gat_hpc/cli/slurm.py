"""``gat-hpc emit-sbatch STUDY ... --run-dir RUN``: a study as Slurm jobs; ``record-jobs``; Slurm re-runs.

Studies plug in through :data:`STUDIES`: a name (the sub-command), the arguments it takes,
and a ``plan(args)`` that returns either a :class:`Sweep` (chunk specs for ``create_or_open``:
the run directory is made exactly as the study's own command makes it, so both give the same
run id) or a :class:`Command` (one gat-hpc command run as an MPI job, such as the distributed
power flow). Registered: pf, nminus1, adequacy, opf and trivial.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

from gat_hpc.cli import adequacy, nminus1, opf
from gat_hpc.errors import InputError

FMT = argparse.RawDescriptionHelpFormatter

EXAMPLES = """examples:
  gat-hpc emit-sbatch pf ac case2000.m --profiles year.parquet --chunk-size 24 --run-dir runs/year \\
      --partition batch --time 00:30:00 --mem 4G --array-throttle 50 --modules "openmpi gat-hpc"
  bash runs/year/submit.sh                        # array + reduce (afterok); ids go to run.json
  gat-hpc emit-sbatch pf ac case2000.m --profiles year.parquet --run-dir runs/year --submit
  gat-hpc emit-sbatch pf ac case70k.m --solver petsc --ntasks 64 --run-dir runs/big -pc_type lu
  gat-hpc emit-sbatch nminus1 dc case2000.m --profiles year.parquet --chunk-hours 168 --run-dir runs/n1 --submit
  gat-hpc emit-sbatch adequacy case118.m --reliability for.csv --profiles year.parquet --samples 100000 \\
      --chunk-samples 500 --run-dir runs/adq --submit
  gat-hpc emit-sbatch opf dc case118.m --profiles year.parquet --chunk-hours 168 --run-dir runs/opf --submit
  gat-hpc runs describe --run-dir runs/year       # chunk states and the jobs' Slurm states
  gat-hpc runs retry-failed --run-dir runs/year --executor slurm

settings come from defaults < gat-hpc.toml [slurm] (or [tool.gat-hpc.slurm] in pyproject.toml)
< GAT_HPC_SLURM_<NAME> environment variables < these options; see docs/cluster.md.
"""

SETTINGS_NOTE = EXAMPLES[EXAMPLES.index("settings come from"):]

AFTER = """  bash runs/{run}/submit.sh                   # or add --submit; job ids go to run.json
  gat-hpc runs describe --run-dir runs/{run}  # chunk states and the jobs' Slurm states
  gat-hpc runs retry-failed --run-dir runs/{run} --executor slurm
"""


@dataclass
class Sweep:
    """A chunked study: what ``create_or_open`` needs."""

    study: str
    config: dict
    inputs: dict
    chunks: list
    derived: dict | None = None


@dataclass
class Command:
    """One gat-hpc command to run on MPI ranks (argv starts with 'gat-hpc')."""

    argv: list
    description: str
    study: str


@dataclass(frozen=True)
class StudyEntry:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    plan: Callable[[argparse.Namespace], object]
    examples: str = ""  # the `emit-sbatch NAME --help` epilog (example lines, then SETTINGS_NOTE)


STUDIES: dict[str, StudyEntry] = {}


def register(entry):
    STUDIES[entry.name] = entry
    return entry


# ---------------------------------------------------------------- pf
def _pf_arguments(p):
    from gat_hpc.cli.pf import add_solve_arguments, add_sweep_arguments

    p.add_argument("model", choices=("ac", "dc"), help="ac (the hourly sweep and the distributed solver are AC)")
    p.add_argument("case", help="MATPOWER .m, PSS/E .raw (v33) or grid.arrow folder")
    add_solve_arguments(p)
    add_sweep_arguments(p.add_argument_group("hourly sweep: an array over chunks of profile hours"), run_dir=False)
    m = p.add_argument_group("distributed power flows: an MPI job of --ntasks ranks")
    m.add_argument("--solver", choices=("newton", "petsc"), default="newton",
                   help="petsc: the distributed AC power flow (PETSc SNES on MPI ranks): one power flow, or with "
                        "--profiles an hourly sweep whose hours are distributed solves (--mode mpi)")
    m.add_argument("--ranks-per-solve", type=int, default=None, metavar="R",
                   help="sweep with --solver petsc: groups of R ranks of the MPI job each solve one chunk's hours "
                        "(--ntasks a multiple of R; default 1)")
    m.add_argument("--partition-file", metavar="FILE.parquet",
                   help="one distributed power flow: its stored partition (used when the file exists, else "
                        "written there by the job; see `gat-hpc pf --help`)")
    m.add_argument("--out", help="output folder of the distributed power flow (default RUN/pf); PETSc options "
                                 "(-snes_monitor, -pc_type lu ...) after the case pass through to the job, as with `pf`")
    from gat_hpc.dist.petsc import accept_petsc_options
    accept_petsc_options(p)


def _pf_plan(args):
    from gat_hpc.cli.pf import plan_sweep

    if args.model != "ac":
        raise InputError("emit-sbatch pf: only `pf ac` runs on Slurm (an hourly AC sweep, or --solver petsc)")
    petsc = list(args.petsc_options)
    if petsc and args.solver != "petsc":
        raise InputError(f"PETSc options ({' '.join(petsc)}) apply to the distributed solver only (--solver petsc)")
    if args.solver == "petsc" and args.profiles:  # an hourly sweep of distributed solves
        if args.job_mode != "mpi":
            raise InputError("emit-sbatch pf ac --profiles --solver petsc: the hours are distributed solves by "
                             "groups of ranks of one MPI job; add --mode mpi --ntasks N (N a multiple of "
                             "--ranks-per-solve)")
        if petsc:
            raise InputError(f"PETSc options ({' '.join(petsc)}) are not kept with a sweep's run directory; "
                             "the sweep's solves use the defaults (docs/distributed.md)")
        args.executor = "mpi"  # what the job runs: `runs resume --executor mpi`
        return Sweep(*plan_sweep(args))
    if args.ranks_per_solve is not None:
        raise InputError("--ranks-per-solve groups the ranks of an hourly sweep: give --profiles and --solver petsc")
    if args.partition_file and args.solver != "petsc":
        raise InputError("--partition-file belongs to one distributed power flow (--solver petsc)")
    if args.solver == "petsc":
        if not os.path.exists(args.case):
            raise InputError(f"{args.case}: no such file")
        out = os.path.abspath(args.out or os.path.join(args.run_dir, "pf"))
        argv = ["gat-hpc", "pf", "ac", os.path.abspath(args.case), "--solver", "petsc", "--out", out,
                "--tol", repr(args.tol), "--max-iter", str(args.max_iter), "--init", args.init]
        argv += (["--q-limits"] if args.q_limits else [])
        argv += (["--partition-file", os.path.abspath(args.partition_file)] if args.partition_file else []) + petsc
        return Command(argv, f"distributed AC power flow of {os.path.basename(args.case)}", "pf-ac")
    if not args.profiles:
        raise InputError("emit-sbatch pf ac: give --profiles for an hourly sweep (an array job), "
                         "or --solver petsc for one distributed power flow (an MPI job)")
    return Sweep(*plan_sweep(args))


register(StudyEntry("pf", "hourly AC power-flow sweep (array) or one distributed power flow (MPI job)",
                    _pf_arguments, _pf_plan, """examples:
  gat-hpc emit-sbatch pf ac case2000.m --profiles year.parquet --chunk-size 24 --run-dir runs/year \\
      --partition batch --time 00:30:00 --mem 4G --array-throttle 50 --modules "openmpi gat-hpc"
  gat-hpc emit-sbatch pf ac case2000.m --profiles year.parquet --run-dir runs/year --mode mpi --ntasks 32
  gat-hpc emit-sbatch pf ac case70k.m --solver petsc --ntasks 64 --run-dir runs/big -pc_type lu --submit
""" + AFTER.format(run="year")))


# ---------------------------------------------------------------- nminus1, adequacy, opf
def _nminus1_plan(args):
    config, inputs, chunks, derived = nminus1.plan_study(args)
    return Sweep("contingency", config, inputs, chunks, derived)


def _adequacy_plan(args):
    if args.target_cov is not None:
        raise InputError("emit-sbatch adequacy: --target-cov adds sample batches as results come in, which a "
                         "fixed job array cannot do; give the number of --samples (or run `gat-hpc adequacy "
                         "--target-cov ... --executor mpi` inside one allocation)")
    return Sweep("adequacy", *adequacy.plan_study(args))


def _opf_plan(args):
    return Sweep("opf-dc", *opf.plan_study(args))


register(StudyEntry("nminus1", "N-1 / N-2 contingency screening across hours (array over hour x contingency chunks)",
                    partial(nminus1.add_arguments, run_dir=False), _nminus1_plan, """examples:
  gat-hpc emit-sbatch nminus1 dc case2000.m --profiles year.parquet --chunk-hours 168 --run-dir runs/n1 \\
      --partition batch --time 00:30:00 --chunks-per-task 4
  gat-hpc emit-sbatch nminus1 dc case2000.m --profiles scenarios_ACTIVSg2000.m --contingencies contab_ACTIVSg2000.m \\
      --ac-threshold 100 --run-dir runs/n1 --submit
""" + AFTER.format(run="n1")))
register(StudyEntry("adequacy", "Monte-Carlo resource adequacy (array over sample x hour chunks)",
                    partial(adequacy.add_arguments, run_dir=False), _adequacy_plan, """examples:
  gat-hpc emit-sbatch adequacy case118.m --reliability for.csv --profiles year.parquet --samples 100000 \\
      --chunk-samples 500 --run-dir runs/adq --submit
  gat-hpc emit-sbatch adequacy case118.m --reliability for.csv --profiles year.parquet --network dc \\
      --samples 2000 --run-dir runs/adq-dc --mode mpi --ntasks 64
""" + AFTER.format(run="adq") + """
--target-cov is refused here (a fixed array cannot add batches): run `gat-hpc adequacy ... --target-cov C
--executor mpi` inside one allocation instead.
"""))
register(StudyEntry("opf", "rolling DC-OPF (array over chunks of windows)",
                    partial(opf.add_arguments, run_dir=False), _opf_plan,
                    """examples:
  gat-hpc emit-sbatch opf dc case118.m --profiles year.parquet --chunk-hours 168 --run-dir runs/opf --submit
  gat-hpc emit-sbatch opf dc case_ACTIVSg2000.m --profiles scenarios_ACTIVSg2000.m --relax-pmin \\
      --chunk-hours 168 --run-dir runs/opf2000 --time 04:00:00 --mem 8G
""" + AFTER.format(run="opf")))


# ---------------------------------------------------------------- trivial
def _trivial_arguments(p):
    p.add_argument("--items", type=int, default=100, help="items in all (default 100)")
    p.add_argument("--chunk-size", type=int, default=1, help="items per chunk (default 1)")
    p.add_argument("--seed", type=int, default=0, help="added to every value (default 0)")
    p.add_argument("--seconds-per-item", type=float, default=0.0, help="sleep per item: slow chunks on demand")


def _trivial_plan(args):
    from gat_hpc.studies.trivial import Trivial

    if args.items < 1 or args.chunk_size < 1 or args.seconds_per_item < 0:
        raise InputError("--items and --chunk-size must be at least 1, --seconds-per-item not negative")
    config, chunks = Trivial.plan(args.items, args.chunk_size, args.seed, args.seconds_per_item)
    return Sweep("trivial", config, {}, chunks)


register(StudyEntry("trivial", "the machinery alone: chunks that write one tiny table (measures scheduler overhead)",
                    _trivial_arguments, _trivial_plan, """examples:
  gat-hpc emit-sbatch trivial --items 100 --run-dir runs/trivial --submit
  gat-hpc emit-sbatch trivial --items 20 --seconds-per-item 5 --time 00:01:00 --run-dir runs/slow
""" + AFTER.format(run="trivial")))


# ---------------------------------------------------------------- commands
def add_parser(sub):
    from gat_hpc.executors.slurm_settings import add_settings_arguments

    e = sub.add_parser("emit-sbatch", help="write (and optionally submit) Slurm job scripts for a study",
                       description="Plan the study into RUN (chunk specs, inputs, run.json, exactly as the study's own "
                                   "command does), then write RUN/array.sbatch (an array over the chunks, `gat-hpc "
                                   "worker` per task), RUN/reduce.sbatch and RUN/submit.sh (array, then the reduce with "
                                   "--dependency=afterok). A distributed power flow (--solver petsc) or --mode mpi "
                                   "writes RUN/mpi.sbatch instead. --submit submits at once and records the job ids "
                                   "in run.json.",
                       epilog=EXAMPLES, formatter_class=FMT)
    es = e.add_subparsers(dest="study", metavar="STUDY")
    es.required = True
    for entry in STUDIES.values():
        epilog = (entry.examples + "\n" + SETTINGS_NOTE) if entry.examples else EXAMPLES
        p = es.add_parser(entry.name, help=entry.help, description=entry.help, epilog=epilog, formatter_class=FMT)
        entry.add_arguments(p)
        p.add_argument("--run-dir", required=True, help="run directory (created, or continued if it holds the same study)")
        p.add_argument("--mode", dest="job_mode", choices=("array", "mpi"), default="array",
                       help="array: one array task per chunk group (default); mpi: one MPI job of --ntasks ranks "
                            "running every chunk with the MPI executor, then the reduce")
        p.add_argument("--submit", action="store_true", help="submit the jobs now and record their ids in run.json")
        add_settings_arguments(p)
        p.set_defaults(func=cmd_emit, study_entry=entry)

    r = sub.add_parser("record-jobs", help="record submitted Slurm job ids in a run directory (submit.sh calls it)",
                       description="Append job ids to RUN/run.json's `jobs` list (RUN/jobs.json for a plain MPI job). "
                                   "RUN/submit.sh calls it after each sbatch; `runs describe` and `runs retry-failed "
                                   "--executor slurm` read the ids back.",
                       epilog="examples:\n  gat-hpc record-jobs --run-dir runs/year --array-job 4123 --reduce-job 4124\n"
                              "  gat-hpc record-jobs --run-dir runs/big --mpi-job 4125\n"
                              "  gat-hpc record-jobs --run-dir runs/year --array-job 4126 -- --array=3,7",
                       formatter_class=FMT)
    r.add_argument("--run-dir", required=True, help="the run directory the jobs belong to")
    r.add_argument("--array-job", help="id of the array job")
    r.add_argument("--reduce-job", help="id of the reduce job (afterok on the array)")
    r.add_argument("--mpi-job", help="id of an MPI job")
    r.add_argument("sbatch_args", nargs="*", help="the extra sbatch arguments given to submit.sh (after --)")
    r.set_defaults(func=cmd_record)


def cmd_emit(args):
    from gat_hpc.executors.local import LocalExecutor
    from gat_hpc.executors.slurm import (SlurmExecutor, check_array_size, check_run_path, write_array_scripts,
                                         write_mpi_scripts)
    from gat_hpc.executors.slurm_settings import cli_values, load_settings
    from gat_hpc.runs.sweep import create_or_open

    settings, _ = load_settings(cli_values(args), config_path=args.config)
    check_run_path(args.run_dir)
    run_dir = os.path.abspath(args.run_dir)
    plan = args.study_entry.plan(args)
    rd = None
    if isinstance(plan, Command):
        if args.job_mode == "array":
            args.job_mode = "mpi"  # one command: nothing to spread over an array
        os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
        write_mpi_scripts(run_dir, settings, plan.argv, plan.description, plan.study)
        print(f"{plan.description}: one MPI job of {settings.ntasks} rank(s), launched with {settings.launcher}")
        written = ["mpi.sbatch", "submit.sh"]
    else:
        n_tasks = -(-len(plan.chunks) // settings.chunks_per_task)
        if args.job_mode == "array":
            check_array_size(n_tasks, settings, len(plan.chunks), run_dir)  # before anything is written
        per = int(plan.config.get("ranks_per_solve", 1)) if plan.config.get("solver") == "petsc" else 1
        if settings.ntasks % per:
            raise InputError(f"--ntasks {settings.ntasks} is not a multiple of --ranks-per-solve {per}")
        rd = create_or_open(LocalExecutor(), run_dir, plan.study, plan.config, plan.inputs, plan.chunks,
                            command=sys.argv, derived=plan.derived)
        if args.job_mode == "array":
            write_array_scripts(rd, settings)
            throttle = f", at most {settings.array_throttle} at once" if settings.array_throttle else ""
            print(f"run {rd.run_id[:12]} ({rd.study}): {rd.n_chunks} chunks in {n_tasks} array task(s) of "
                  f"{settings.chunks_per_task} chunk(s){throttle}, then the reduce")
            written = ["array.sbatch", "reduce.sbatch", "submit.sh"]
        else:
            argv = ["gat-hpc", "runs", "resume", "--run-dir", rd.path, "--executor", "mpi", "--quiet"]
            write_mpi_scripts(rd.path, settings, argv, f"run {rd.run_id[:12]} ({rd.study}, {rd.n_chunks} chunks): "
                              "every chunk not yet done, then the reduce", rd.study, rd.run_id)
            print(f"run {rd.run_id[:12]} ({rd.study}): {rd.n_chunks} chunks in one MPI job of {settings.ntasks} "
                  f"rank(s), launched with {settings.launcher}")
            written = ["mpi.sbatch", "submit.sh"]
    print("wrote " + ", ".join(os.path.join(run_dir, f) for f in written))
    if not args.submit:
        print(f"submit with: bash {shlex.quote(os.path.join(run_dir, 'submit.sh'))}")
        return 0
    if rd is not None:
        refuse_if_active(rd.manifest.get("jobs", []), run_dir)
    for job in SlurmExecutor(run_dir).submit(rd):
        print(f"{job['kind']} job {job['id']}")
    return 0


def cmd_record(args):
    from gat_hpc.executors.slurm import record_jobs

    now = time.time()
    entries = []
    for kind, jid in (("array", args.array_job), ("reduce", args.reduce_job), ("mpi", args.mpi_job)):
        if jid is None:
            continue
        if not re.match(r"^\d+$", jid):
            raise InputError(f"--{kind}-job {jid!r}: a Slurm job id is a number")
        entry = {"id": jid, "kind": kind, "script": f"{kind}.sbatch", "submitted": now}
        if kind == "array":
            entry["tasks"] = next((a.split("=", 1)[1] for a in args.sbatch_args if a.startswith("--array=")), "all")
        if kind == "reduce" and args.array_job:
            entry["after"] = args.array_job
        if args.sbatch_args and kind != "reduce":
            entry["sbatch_args"] = list(args.sbatch_args)
        entries.append(entry)
    if not entries:
        raise InputError("record-jobs: give --array-job, --reduce-job or --mpi-job")
    if not os.path.isdir(args.run_dir):
        raise InputError(f"{args.run_dir}: no such run directory")
    record_jobs(os.path.abspath(args.run_dir), entries)
    return 0


# ---------------------------------------------------------------- runs resume / retry-failed --executor slurm
def refuse_if_active(jobs, path):
    """InputError when a recorded job may still run; returns the reduce jobs that never can (to cancel)."""
    from gat_hpc.executors.slurm import NEVER_RUNS, is_active, job_states

    stuck = []
    for job in jobs:
        info = job_states(job.get("id"))
        if info is None:
            raise InputError("Slurm's commands (scontrol) are not on PATH: load the site's slurm module")
        if is_active(info):
            raise InputError(f"{path}: Slurm job {job['id']} ({job.get('kind', '?')}) is still queued or running; "
                             f"wait for it to end (or `scancel {job['id']}`), then submit again")
        if info["reasons"] == [NEVER_RUNS]:
            stuck.append(job)
    return stuck


def rerun_on_slurm(args, retry):
    """``runs resume|retry-failed --executor slurm``: an array of only the chunks to run, and its reduce."""
    from gat_hpc.cli.runs import _open_for_rerun
    from gat_hpc.executors.local import LocalExecutor
    from gat_hpc.executors.slurm import SlurmExecutor, cancel, record_jobs, sbatch, wait_for
    from gat_hpc.runs.rundir import DONE, FAILED
    from gat_hpc.runs.sweep import finish

    rd = _open_for_rerun(args, LocalExecutor(), allow_changed=retry and args.accept_changed_inputs)
    sx = SlurmExecutor(rd.path)
    if sx.doc.get("mode") != "array":
        raise InputError(f"{rd.path}: its jobs are one MPI job (mpi.sbatch), not an array; submit it again with "
                         f"`bash {os.path.join(rd.path, 'submit.sh')}`")
    stuck = refuse_if_active(rd.manifest.get("jobs", []), rd.path)
    states = rd.states()
    exhausted = []
    if retry:
        ids = [cid for cid, (s, r) in states.items()
               if s != DONE and not (s == FAILED and r.attempt >= args.max_attempts)]
        exhausted = [cid for cid, (s, r) in states.items() if s == FAILED and r.attempt >= args.max_attempts]
    else:
        ids = [cid for cid, (s, _) in states.items() if s != DONE]
    for job in stuck:
        cancel(job["id"])
        print(f"cancelled {job.get('kind', 'job')} job {job['id']}: it waited on a failed array and could never start",
              file=sys.stderr)
    if ids:
        entries = sx.submit(rd, ids)
        tasks = entries[0]["tasks"]
        print(f"{len(ids)} chunk(s) to run again: array tasks {tasks}")
    elif exhausted:
        print(f"gat-hpc: error: chunks {', '.join(map(str, exhausted[:10]))} failed {args.max_attempts} times "
              "(--max-attempts); see `gat-hpc runs describe`", file=sys.stderr)
        return 4
    elif os.path.isfile(os.path.join(rd.path, "reduce", "summary.json")):
        print("every chunk is done and reduced; nothing to submit")
        return 0
    else:
        entries = [{"id": sbatch([], os.path.join(rd.path, "reduce.sbatch")), "kind": "reduce",
                    "script": "reduce.sbatch", "submitted": time.time()}]
        record_jobs(rd.path, entries)
    for job in entries:
        print(f"{job['kind']} job {job['id']}")
    if not args.wait:
        return 0
    wait_for([job["id"] for job in entries])
    code = finish(rd, LocalExecutor(), quiet=True, reduce=False)
    if code == 0 and not os.path.isfile(os.path.join(rd.path, "reduce", "summary.json")):
        print(f"gat-hpc: error: every chunk is done but the reduce job did not finish; see {rd.path}/logs/",
              file=sys.stderr)
        return 4
    return code
