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


def execute_chunk_group(rd, cid, comm, executor="mpi", rank=None):
    """``execute_chunk`` for a chunk that a group of MPI ranks runs together (a distributed
    solve per chunk, ``ranks_per_solve``): the group's first rank takes the lock, decides and
    writes; every rank of ``comm`` (an mpi4py communicator) runs the study's chunk with
    ``ctx["comm"]`` set to the group's PETSc communicator."""
    if comm.Get_rank() == 0:
        with rd.lock(cid) as held:
            return _group_chunk(rd, cid, comm, held, executor, rank)
    return _group_chunk(rd, cid, comm, None, executor, rank)


def _group_chunk(rd, cid, comm, held, executor, rank):
    from petsc4py import PETSc

    lead = comm.Get_rank() == 0
    decision = prev = None
    if lead:
        if not held:
            decision = SKIPPED_BUSY
        else:
            state, prev = rd.state(cid)
            decision = SKIPPED_DONE if state == DONE else "run"
    decision = comm.bcast(decision, root=0)
    if decision != "run":
        return decision
    spec = rd.read_spec(cid)
    start = time.time()
    tables, metrics, error = {}, {}, ""
    try:
        study, ctx = study_context(rd)
        if ctx.get("comm") is None or ctx["comm"].tompi4py() != comm:
            ctx["comm"] = PETSc.Comm(comm)
    except Exception as exc:
        error = _error_text(exc)
    # the chunk's solves are collective: either every rank of the group has its context and
    # runs them, or none does (a rank that failed here would leave the others waiting)
    if not any(comm.allgather(error)):
        try:
            tables, metrics = study.run_chunk(ctx, spec)
        except Exception as exc:
            error = _error_text(exc)
    errors = [e for e in comm.allgather(error) if e]  # one rank's failure fails the chunk for all
    if not lead:
        return RAN_OK if not errors else RAN_FAILED
    return _record(rd, cid, prev, start, executor, rank, tables, metrics, errors[0] if errors else "")


def _error_text(exc):
    """A chunk's error as recorded in its result: the message, with the traceback for anything
    that is not a GatError (a bug or an environment problem, for `runs describe`)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, GatError):
        return text
    return text + "\n" + "".join(traceback.format_exc(limit=8))


def _record(rd, cid, prev, start, executor, rank, tables, metrics, error):
    """Write a chunk's tables (unless it failed) and its result; returns RAN_OK or RAN_FAILED."""
    outputs = []
    if not error:
        try:
            for name in sorted(tables):
                outputs.append(asdict(rd.write_table(cid, name, tables[name])))
        except Exception as exc:
            error = _error_text(exc)
    ok = not error
    rd.write_result(ChunkResult(run_id=rd.run_id, chunk_id=cid, status="ok" if ok else "failed",
                                attempt=(prev.attempt + 1) if prev is not None else 1, host=socket.gethostname(),
                                pid=os.getpid(), rank=rank, executor=executor, start=start, end=time.time(),
                                outputs=outputs if ok else [], metrics=metrics if ok else {}, error=error))
    return RAN_OK if ok else RAN_FAILED


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
        start = time.time()
        tables, metrics, error = {}, {}, ""
        try:
            study, ctx = study_context(rd)
            tables, metrics = study.run_chunk(ctx, spec)
        except Exception as exc:
            error = _error_text(exc)
        return _record(rd, cid, prev, start, executor, rank, tables, metrics, error)
