"""MPI executor: every rank (rank 0 included) takes the next chunk from a counter held by rank 0.

The counter is an MPI one-sided window on rank 0, incremented with an atomic
fetch-and-add, so chunks are handed out dynamically (uneven chunks balance) without a
rank sitting idle as a dispatcher. Works with any number of ranks, including 1.

A run whose chunks are distributed solves (``solver = petsc`` with ``ranks_per_solve = R``
in its configuration) splits the ranks into groups of R consecutive ranks (the last group
takes what is left); each group's first rank takes chunks from the counter and the whole
group runs each of them (:func:`~gat_hpc.runs.execute.execute_chunk_group`).
"""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np

from gat_hpc.errors import GatError
from gat_hpc.executors.base import Executor
from gat_hpc.runs.execute import execute_chunk, execute_chunk_group


class MPIExecutor(Executor):
    name = "mpi"

    def __init__(self, comm=None):
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.is_root = self.rank == 0

    def broadcast(self, value):
        return self.comm.bcast(value, root=0)

    def barrier(self):
        self.comm.Barrier()

    def run(self, rd, chunk_ids, progress=None):
        MPI = self.MPI
        ids = self.comm.bcast(list(chunk_ids) if self.is_root else None, root=0)
        # a run of distributed solves (ranks_per_solve R): groups of R consecutive ranks each run
        # one chunk together; the groups' first ranks take chunks from the counter
        per = int(rd.config.get("ranks_per_solve", 1)) if rd.config.get("solver") == "petsc" else 0
        group = self.comm.Split(self.rank // per, self.rank) if per else None
        lead = group is None or group.Get_rank() == 0
        item = MPI.INT64_T.Get_size()
        win = MPI.Win.Allocate(item if self.is_root else 0, item, comm=self.comm)
        try:
            if self.is_root:
                np.frombuffer(win.tomemory(), dtype=np.int64)[0] = 0
            self.comm.Barrier()
            one = np.ones(1, dtype=np.int64)
            got = np.zeros(1, dtype=np.int64)
            mine = Counter()
            while True:
                if lead:
                    win.Lock(0, MPI.LOCK_SHARED)
                    win.Fetch_and_op(one, got, 0, 0, MPI.SUM)
                    win.Unlock(0)
                k = int(got[0]) if group is None else group.bcast(int(got[0]), root=0)
                if k >= len(ids):
                    break
                try:
                    if group is None:
                        mine[execute_chunk(rd, ids[k], self.name, rank=self.rank)] += 1
                    else:
                        outcome = execute_chunk_group(rd, ids[k], group, self.name, rank=self.rank)
                        if lead:
                            mine[outcome] += 1
                except GatError as exc:
                    # the run directory itself is unusable: stop every rank rather than leave them waiting
                    print(f"gat-hpc: error: rank {self.rank}: {exc}", file=sys.stderr, flush=True)
                    self.comm.Abort(exc.exit_code)
                if progress and self.is_root:
                    progress.set(min(k + 1, len(ids)))
            self.comm.Barrier()
        finally:
            win.Free()
            if group is not None:
                group.Free()
        total = Counter()
        for c in self.comm.allgather(dict(mine)):
            total.update(c)
        return total
