"""Errors and timings that every rank agrees on, so a failure on one rank never leaves the
others waiting in a collective call."""

from __future__ import annotations

import contextlib
import time

from gat_hpc.errors import ConvergenceError, GatError, InputError


def agree(comm, fn, *args, **kwargs):
    """Run ``fn`` on every rank of ``comm`` (mpi4py); if it raised a GatError on any rank, raise
    that error (from the lowest such rank) on every rank. Other exceptions become GatErrors
    naming the rank, so no rank is left behind."""
    error = None
    try:
        result = fn(*args, **kwargs)
    except GatError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001 - reported with the rank that hit it
        error = GatError(f"rank {comm.Get_rank()}: {type(exc).__name__}: {exc}")
    failures = comm.allgather(None if error is None else (type(error).__name__, str(error), error.exit_code))
    first = next((f for f in failures if f is not None), None)
    if first is None:
        return result
    if error is None:
        error = {"InputError": InputError, "ConvergenceError": ConvergenceError}.get(first[0], GatError)(first[1])
        error.exit_code = first[2]
    try:
        raise error
    finally:
        error = None  # no cycle frame -> error -> traceback -> frame


class Clock:
    """Wall time per phase on this rank: ``with clock("factor"): ...``; :meth:`max_over` gives
    each phase's maximum over the ranks (what a user waits for)."""

    def __init__(self):
        self.seconds = {}

    @contextlib.contextmanager
    def __call__(self, phase):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - t0)

    def add(self, phase, seconds):
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def max_over(self, comm, phases=None):
        phases = sorted(set().union(*comm.allgather(set(self.seconds)))) if phases is None else phases
        from mpi4py import MPI

        import numpy as np

        mine = np.array([self.seconds.get(p, 0.0) for p in phases])
        out = np.empty_like(mine)
        comm.Allreduce(mine, out, op=MPI.MAX)
        return dict(zip(phases, out.tolist()))
