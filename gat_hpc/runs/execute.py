"""Run one chunk under its lock and record the outcome: the step every executor repeats.

The study's context (parsed network, profile, ...) is built once per process and
run, then reused by every chunk the process runs.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import asdict

from gat_hpc.errors import GatError
from gat_hpc.runs.rundir import DONE, RunDir
from gat_hpc.runs.spec import ChunkResult

_CONTEXTS = {}
_RUNDIRS = {}

# outcomes of execute_chunk
RAN_OK, RAN_FAILED, SKIPPED_DONE, SKIPPED_BUSY = "ok", "failed", "already-done", "busy"


def open_cached(path):
    """RunDir.open once per process and path (workers run many chunks of one run)."""
    key = os.path.abspath(path)
    rd = _RUNDIRS.get(key)
    if rd is None:
        rd = _RUNDIRS[key] = RunDir.open(key)
    return rd


def study_context(rd):
    from gat_hpc.studies import get_study

    key = (rd.path, rd.run_id)
    if key not in _CONTEXTS:
        study = get_study(rd.study)
        rd.verify_input_copies()
        _CONTEXTS[key] = (study, study.context(rd))
    return _CONTEXTS[key]


def execute_chunk(rd, cid, executor="local", rank=None, force=False):
    """Run chunk ``cid`` unless it is done (or ``force``) or another worker holds it.

    Returns one of RAN_OK, RAN_FAILED, SKIPPED_DONE, SKIPPED_BUSY. Study errors are recorded
    in the chunk's result (status failed, with the error text), not raised; problems with
    the run directory itself (corrupt spec, unwritable folder) are raised.
    """
    with rd.lock(cid) as held:
        if not held:
            return SKIPPED_BUSY
        state, prev = rd.state(cid)
        if state == DONE and not force:
            return SKIPPED_DONE
        spec = rd.read_spec(cid)
        attempt = (prev.attempt + 1) if prev is not None else 1
        start = time.time()
        outputs, metrics, error, status = [], {}, "", "ok"
        try:
            study, ctx = study_context(rd)
            tables, metrics = study.run_chunk(ctx, spec)
            for name in sorted(tables):
                outputs.append(asdict(rd.write_table(cid, name, tables[name])))
        except GatError as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug or an environment problem: keep the traceback for describe
            status = "failed"
            error = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=8))
        res = ChunkResult(run_id=rd.run_id, chunk_id=cid, status=status, attempt=attempt,
                          host=socket.gethostname(), pid=os.getpid(), rank=rank, executor=executor,
                          start=start, end=time.time(), outputs=outputs if status == "ok" else [],
                          metrics=metrics if status == "ok" else {}, error=error)
        rd.write_result(res)
        return RAN_OK if status == "ok" else RAN_FAILED
