"""Run-directory commands: ``worker``, ``reduce`` and ``runs list|describe|resume|retry-failed``."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from gat_hpc.errors import InputError

FMT = argparse.RawDescriptionHelpFormatter


def add_executor_args(p, slurm=False):
    if slurm:
        p.add_argument("--executor", choices=("local", "process", "mpi", "slurm"), default="local",
                       help="where chunks run: in this process, a process pool, MPI ranks (under mpirun), or a "
                            "Slurm array of only those chunks plus its reduce (scripts from `gat-hpc emit-sbatch`)")
        p.add_argument("--wait", action="store_true", help="slurm: wait for the jobs to end; exit 0 once reduced")
    else:
        p.add_argument("--executor", choices=("local", "process", "mpi"), default="local",
                       help="where chunks run: in this process, a process pool, or MPI ranks (under mpirun)")
    p.add_argument("--max-procs", type=int, default=None, help="process executor: number of worker processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary line on stderr")


def make_executor_from(args):
    from gat_hpc.executors import make_executor

    if args.max_procs is not None and args.max_procs < 1:
        raise InputError("--max-procs must be at least 1")
    return make_executor(args.executor, args.max_procs)


def add_parser(sub):
    w = sub.add_parser("worker", help="run chunks of a run directory (one Slurm array task)",
                       description="Run one chunk (--chunk) or, inside a Slurm array task, the chunks of task "
                                   "SLURM_ARRAY_TASK_ID (--chunks-per-task per task). Chunks already done are skipped.",
                       epilog="examples:\n  gat-hpc worker --run-dir runs/n1 --chunk 3\n"
                              "  SLURM_ARRAY_TASK_ID=2 gat-hpc worker --run-dir runs/n1 --chunks-per-task 4",
                       formatter_class=FMT)
    w.add_argument("--run-dir", required=True, help="the run directory (made by a study command or emit-sbatch)")
    w.add_argument("--chunk", type=int, default=None, help="chunk id (default: from SLURM_ARRAY_TASK_ID)")
    w.add_argument("--chunks-per-task", type=int, default=1, help="chunks per array task (default 1)")
    w.add_argument("--force", action="store_true", help="run the chunk even if it is done")
    w.set_defaults(func=cmd_worker)

    r = sub.add_parser("reduce", help="merge a run's chunk outputs into RUN/reduce",
                       description="Merge every chunk's partitions into RUN/reduce/<table>.parquet and summary.json. "
                                   "Idempotent: running it again gives the same files.",
                       epilog="example:\n  gat-hpc reduce --run-dir runs/pf2000", formatter_class=FMT)
    r.add_argument("--run-dir", required=True, help="the run directory to reduce")
    r.add_argument("--partial", action="store_true", help="reduce the chunks that are done even if some are not")
    r.add_argument("--quiet", action="store_true", help="no summary line on stderr")
    r.set_defaults(func=cmd_reduce)

    runs = sub.add_parser("runs", help="list, describe, resume or retry runs",
                          description="Inspect and continue run directories.",
                          epilog="examples:\n  gat-hpc runs list runs/\n  gat-hpc runs describe --run-dir runs/pf2000\n"
                                 "  gat-hpc runs resume --run-dir runs/pf2000 --executor process --max-procs 2\n"
                                 "  gat-hpc runs retry-failed --run-dir runs/pf2000 --max-attempts 3\n"
                                 "  gat-hpc runs retry-failed --run-dir runs/pf2000 --executor slurm --wait",
                          formatter_class=FMT)
    rs = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    rs.required = True
    ls = rs.add_parser("list", help="run directories under the given folders",
                       description="Find run directories (folders holding run.json) under each ROOT and print one "
                                   "line per run: run id, study, chunks done of all, creation time and path.",
                       epilog="examples:\n  gat-hpc runs list\n  gat-hpc runs list runs/ /scratch/$USER/runs --json",
                       formatter_class=FMT)
    ls.add_argument("roots", nargs="*", default=["."], help="folders to search (default: .)")
    ls.add_argument("--json", action="store_true", help="a JSON list instead of the table")
    ls.set_defaults(func=cmd_list)
    d = rs.add_parser("describe", help="status counts, failures, time per chunk, throughput",
                      description="Report a run: chunks by status (done, missing, failed, corrupt), the error text "
                                  "of failed chunks, time per chunk, throughput, the workers that ran them, whether "
                                  "it is reduced, and the Slurm state of every recorded job.",
                      epilog="examples:\n  gat-hpc runs describe --run-dir runs/n1\n"
                             "  gat-hpc runs describe --run-dir runs/n1 --json",
                      formatter_class=FMT)
    d.add_argument("--run-dir", required=True, help="the run directory")
    d.add_argument("--json", action="store_true", help="the report as JSON")
    d.set_defaults(func=cmd_describe)
    rr = rs.add_parser("resume", help="run the missing, failed or corrupt chunks, then reduce",
                       description="Run every chunk that is not done (missing, failed or corrupt) with the chosen "
                                   "executor, then reduce. Refuses a run whose input files changed since it started "
                                   "(see `runs retry-failed --accept-changed-inputs`).",
                       epilog="examples:\n  gat-hpc runs resume --run-dir runs/n1\n"
                              "  gat-hpc runs resume --run-dir runs/n1 --executor process --max-procs 2\n"
                              "  mpirun -n 4 gat-hpc runs resume --run-dir runs/n1 --executor mpi\n"
                              "  gat-hpc runs resume --run-dir runs/n1 --executor slurm --wait",
                       formatter_class=FMT)
    rr.add_argument("--run-dir", required=True, help="the run directory")
    add_executor_args(rr, slurm=True)
    rr.set_defaults(func=cmd_resume)
    rf = rs.add_parser("retry-failed", help="re-run failed chunks with exponential backoff, then reduce",
                       description="Re-run the failed chunks (up to --max-attempts attempts each), waiting --backoff "
                                   "seconds, then twice as long, between rounds; then reduce. After fixing an input "
                                   "file, --accept-changed-inputs copies it into the run again.",
                       epilog="examples:\n  gat-hpc runs retry-failed --run-dir runs/n1 --max-attempts 3\n"
                              "  gat-hpc runs retry-failed --run-dir runs/pf --accept-changed-inputs\n"
                              "  gat-hpc runs retry-failed --run-dir runs/n1 --executor slurm --wait",
                       formatter_class=FMT)
    rf.add_argument("--run-dir", required=True, help="the run directory")
    rf.add_argument("--max-attempts", type=int, default=3, help="attempts per chunk in total (default 3)")
    rf.add_argument("--backoff", type=float, default=1.0, help="first wait in seconds, doubled each round")
    rf.add_argument("--accept-changed-inputs", action="store_true",
                    help="inputs were fixed since the run started: copy them in again and re-run only the failed chunks")
    add_executor_args(rf, slurm=True)
    rf.set_defaults(func=cmd_retry)


def _slurm_chunks(args, rd):
    if args.chunk is not None:
        ids = [args.chunk]
    else:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        if task is None:
            raise InputError("worker: give --chunk ID, or run inside a Slurm array task (SLURM_ARRAY_TASK_ID)")
        try:
            t = int(task)
        except ValueError:
            raise InputError(f"SLURM_ARRAY_TASK_ID='{task}' is not an integer") from None
        m = max(1, args.chunks_per_task)
        ids = list(range(t * m, min((t + 1) * m, rd.n_chunks)))
    for cid in ids:
        if not 0 <= cid < rd.n_chunks:
            raise InputError(f"{rd.path}: chunk {cid} does not exist (the run has {rd.n_chunks} chunks)")
    return ids


def cmd_worker(args):
    from gat_hpc.executors.slurm import TimeLimitNear, install_usr1_handler
    from gat_hpc.runs.execute import RAN_FAILED, execute_chunk
    from gat_hpc.runs.rundir import RunDir

    rd = RunDir.open(args.run_dir)
    executor = "slurm" if os.environ.get("SLURM_JOB_ID") else "local"
    failed = 0
    interrupted = False
    install_usr1_handler()  # Slurm's warning before the time limit: abandon the chunk cleanly, exit non-zero
    try:
        for cid in _slurm_chunks(args, rd):
            print(f"worker: chunk {cid}: running", file=sys.stderr)
            outcome = execute_chunk(rd, cid, executor, force=args.force)
            print(f"worker: chunk {cid}: {outcome}", file=sys.stderr)
            failed += outcome == RAN_FAILED
            res = rd.read_result(cid) if outcome == RAN_FAILED else None
            if res is not None and res.error.startswith(TimeLimitNear.__name__):
                interrupted = True
                break
    except TimeLimitNear:  # arrived outside a chunk's computation: nothing was half-done
        interrupted = True
    if interrupted:
        print("worker: SIGUSR1 (Slurm time limit near): stopped; the chunks not done run again with "
              f"`gat-hpc runs retry-failed --run-dir {rd.path} --executor slurm`", file=sys.stderr)
        return 4
    if failed:
        print(f"gat-hpc: error: {failed} chunk(s) failed; see `gat-hpc runs describe --run-dir {rd.path}`", file=sys.stderr)
        return 4
    return 0


def cmd_reduce(args):
    from gat_hpc.runs.reduce import reduce_run
    from gat_hpc.runs.rundir import RunDir

    rd = RunDir.open(args.run_dir)
    summary = reduce_run(rd, allow_partial=args.partial)
    if not args.quiet:
        print(json.dumps(summary, indent=1, sort_keys=True))
    return 0


def _find_runs(roots, depth=4):
    for root in roots:
        if not os.path.isdir(root):
            raise InputError(f"{root}: no such folder")
        base = root.rstrip("/").count("/")
        for dirpath, dirnames, filenames in os.walk(root):
            if "run.json" in filenames:
                yield dirpath
                dirnames[:] = []
            elif dirpath.count("/") - base >= depth:
                dirnames[:] = []
            else:
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]


def describe(rd):
    """Status counts, failures, chunk times and throughput of a run (a dict)."""
    from gat_hpc.runs.rundir import FAILED

    states = rd.states()
    counts = {}
    for s, _ in states.values():
        counts[s] = counts.get(s, 0) + 1
    results = [r for _, r in states.values() if r is not None]
    ok = [r for s, r in states.values() if s == "done"]
    times = [r.seconds for r in ok]
    failures = [{"chunk": cid, "attempt": r.attempt, "host": r.host, "error": r.error}
                for cid, (s, r) in states.items() if s == FAILED]
    span = (max(r.end for r in results) - min(r.start for r in results)) if results else 0.0
    hosts = {}
    for r in ok:
        key = r.host if r.rank is None else f"{r.host}/rank{r.rank}"
        hosts[key] = hosts.get(key, 0) + 1
    return {
        "run_dir": rd.path, "run_id": rd.run_id, "study": rd.study, "chunks": rd.n_chunks, "status": counts,
        "failures": failures,
        "chunk_seconds": ({"mean": statistics.fmean(times), "min": min(times), "max": max(times),
                           "total": sum(times)} if times else None),
        "wall_seconds": span, "throughput_chunks_per_s": (len(ok) / span if span > 0 else None),
        "workers": hosts, "executors": sorted({r.executor for r in ok}),
        "reduced": os.path.isfile(os.path.join(rd.path, "reduce", "summary.json")),
        "jobs": rd.manifest.get("jobs", []),
        "slurm": _slurm_states(rd.manifest.get("jobs", [])),
    }


def _slurm_states(jobs):
    """Slurm's view of the run's jobs (None without jobs or without Slurm's commands)."""
    if not jobs:
        return None
    from gat_hpc.executors.slurm import describe_jobs

    return describe_jobs(jobs)


def cmd_describe(args):
    from gat_hpc.runs.rundir import RunDir

    info = describe(RunDir.open(args.run_dir))
    if args.json:
        print(json.dumps(info, indent=1, sort_keys=True))
        return 0
    print(f"run {info['run_id'][:12]}  study {info['study']}  {info['run_dir']}")
    print("chunks: " + ", ".join(f"{k} {v}" for k, v in sorted(info["status"].items())) + f" (of {info['chunks']})")
    cs = info["chunk_seconds"]
    if cs:
        print(f"time per chunk: mean {cs['mean']:.3f} s, min {cs['min']:.3f} s, max {cs['max']:.3f} s")
    if info["throughput_chunks_per_s"]:
        print(f"throughput: {info['throughput_chunks_per_s']:.2f} chunks/s over {info['wall_seconds']:.1f} s")
    if info["workers"]:
        print("workers: " + ", ".join(f"{k} {v}" for k, v in sorted(info["workers"].items())))
    for f in info["failures"]:
        print(f"FAILED chunk {f['chunk']} (attempt {f['attempt']}, {f['host']}): {f['error'].strip()}")
    print("reduced: " + ("yes" if info["reduced"] else "no"))
    for job in info["slurm"] or []:
        sl = job["slurm"]
        states = ", ".join(f"{k} {v}" for k, v in sorted(sl["states"].items())) or sl["source"]
        why = f" ({', '.join(sl['reasons'])})" if sl["reasons"] else ""
        tasks = f" tasks {job['tasks']}" if job.get("kind") == "array" else ""
        print(f"slurm: {job.get('kind', 'job')} {job['id']}{tasks}: {states}{why}")
    return 0


def cmd_list(args):
    from gat_hpc.runs.rundir import DONE, RunDir

    rows = []
    for path in _find_runs(args.roots):
        try:
            rd = RunDir.open(path)
            done = sum(1 for s, _ in rd.states(verify=False).values() if s == DONE)
            rows.append({"run_dir": rd.path, "run_id": rd.run_id, "study": rd.study, "chunks": rd.n_chunks,
                         "done": done, "created": rd.manifest.get("created")})
        except InputError as exc:
            rows.append({"run_dir": os.path.abspath(path), "error": str(exc)})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        if "error" in r:
            print(f"{'?':12}  {'unreadable':12}  {r['run_dir']}  ({r['error']})")
        else:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"])) if r.get("created") else ""
            print(f"{r['run_id'][:12]}  {r['study']:12}  {r['done']}/{r['chunks']} done  {when}  {r['run_dir']}")
    return 0


def _open_for_rerun(args, executor, allow_changed=False):
    from gat_hpc.runs.rundir import RunDir
    from gat_hpc.runs.sweep import on_root

    def check():
        rd = RunDir.open(args.run_dir)
        changed = rd.changed_sources()
        if changed and not allow_changed:
            srcs = ", ".join(f"{role} ({rd.manifest['inputs'][role]['source']})" for role in changed)
            raise InputError(f"{rd.path}: inputs changed since the run started: {srcs}; results would mix "
                             "two inputs. Start a new run directory, or after fixing a bad input re-run the failed "
                             "chunks with `gat-hpc runs retry-failed --accept-changed-inputs`")
        if changed:
            rd.refresh_inputs()
        return rd.path

    return RunDir.open(on_root(executor, check))


def cmd_resume(args):
    from gat_hpc.runs.sweep import finish, run_chunks

    if args.executor == "slurm":
        from gat_hpc.cli.slurm import rerun_on_slurm
        return rerun_on_slurm(args, retry=False)
    ex = make_executor_from(args)
    rd = _open_for_rerun(args, ex)
    run_chunks(rd, ex, quiet=args.quiet, label=f"{rd.study} (resume)")
    return finish(rd, ex, quiet=args.quiet)


def cmd_retry(args):
    from gat_hpc.runs.sweep import finish, on_root, run_chunks

    if args.max_attempts < 1 or args.backoff < 0:
        raise InputError("--max-attempts must be at least 1 and --backoff non-negative")
    if args.executor == "slurm":
        from gat_hpc.cli.slurm import rerun_on_slurm
        return rerun_on_slurm(args, retry=True)
    ex = make_executor_from(args)
    rd = _open_for_rerun(args, ex, allow_changed=args.accept_changed_inputs)
    wait = args.backoff
    for round_ in range(args.max_attempts):
        def retryable():
            return [cid for cid, (s, r) in rd.states().items() if s == "failed" and r.attempt < args.max_attempts]
        ids = on_root(ex, retryable)
        if not ids:
            break
        if round_ > 0 and wait > 0:
            time.sleep(wait)
            wait *= 2
        run_chunks(rd, ex, ids=ids, quiet=args.quiet, label=f"{rd.study} (retry {round_ + 1})")
    return finish(rd, ex, quiet=args.quiet)
