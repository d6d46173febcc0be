"""Drive a sweep: create or open the run directory, run the chunks that need it, reduce.

Under the MPI executor only rank 0 touches the manifest and reduces; the decisions it
takes (which chunks, success or failure) are broadcast so every rank exits alike.
"""

from __future__ import annotations

import sys

from gat_hpc.errors import GatError, InputError
from gat_hpc.runs.rundir import DONE, FAILED, RunDir

PARTIAL_FAILURE = 4  # exit code: the sweep ran, some chunks failed


def on_root(executor, fn):
    """Run ``fn`` on the root, share its result (or its error) with every rank."""
    result, err = None, None
    if executor.is_root:
        try:
            result = fn()
        except GatError as exc:
            err = (type(exc).__name__, str(exc), exc.exit_code)
    result, err = executor.broadcast((result, err))
    if err:
        exc = InputError(err[1]) if err[0] == "InputError" else GatError(err[1])
        exc.exit_code = err[2]
        raise exc
    return result


def create_or_open(executor, path, study, config, inputs, chunks, command, derived=None):
    def make():
        rd = RunDir.create(path, study, config, inputs, chunks, command, derived=derived)
        return rd.path
    p = on_root(executor, make)
    return RunDir.open(p)


def run_chunks(rd, executor, which=("missing", "failed", "corrupt"), quiet=False, label=None, ids=None):
    """Run the chunks in the given states (or exactly ``ids``); returns the outcome counts."""
    from gat_hpc.cli.progress import ProgressBar

    def pick():
        return [cid for cid, (s, _) in rd.states().items() if s in which]

    if ids is None:
        ids = on_root(executor, pick)
    bar = ProgressBar(len(ids), label or rd.study, quiet=quiet or not executor.is_root)
    counts = executor.run(rd, ids, bar)
    bar.close()
    return counts


def finish(rd, executor, quiet=False, reduce=True):
    """Report failures (exit 4) or reduce (exit 0). Returns the exit code on every rank."""
    from gat_hpc.runs.reduce import reduce_run

    def decide():
        states = rd.states()
        failed = [(cid, r) for cid, (s, r) in states.items() if s == FAILED]
        other = [cid for cid, (s, _) in states.items() if s not in (DONE, FAILED)]
        if failed or other:
            lines = [f"gat-hpc: error: {len(failed)} of {rd.n_chunks} chunks failed"
                     + (f", {len(other)} not done" if other else "")]
            for cid, r in failed[:5]:
                lines.append(f"  chunk {cid} (attempt {r.attempt}): {r.error.splitlines()[0] if r.error else '?'}")
            lines.append(f"  fix the cause, then run `gat-hpc runs retry-failed --run-dir {rd.path}`"
                         + (f" (or `gat-hpc runs resume --run-dir {rd.path}`)" if other else ""))
            print("\n".join(lines), file=sys.stderr)
            return PARTIAL_FAILURE
        if reduce:
            summary = reduce_run(rd)
            if not quiet:
                print(f"{rd.study}: {rd.n_chunks} chunks done, reduced into {rd.path}/reduce "
                      f"({', '.join(f'{k}: {v} rows' for k, v in summary['rows'].items())})", file=sys.stderr)
        return 0

    return on_root(executor, decide)
