"""Process-pool executor: ``max_procs`` forked workers take chunks as they free up."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from gat_hpc.errors import GatError
from gat_hpc.executors.base import Executor


def _start_worker(counter, workers):
    """Pool initializer: number the workers 0..workers-1 (the GPU each takes under --device gpu)."""
    from gat_hpc.cuda.runtime import worker_slot

    with counter.get_lock():
        index = counter.value
        counter.value += 1
    worker_slot(index, workers)


def _work(path, cid):
    from gat_hpc.runs.execute import execute_chunk, open_cached

    return execute_chunk(open_cached(path), cid, "process")


class WorkerDied(GatError):
    exit_code = 4


class ProcessExecutor(Executor):
    name = "process"

    def __init__(self, max_procs=None):
        self.max_procs = max_procs or os.cpu_count() or 1

    def run(self, rd, chunk_ids, progress=None):
        out = Counter()
        ids = list(chunk_ids)
        if not ids:
            return out
        nproc = min(self.max_procs, len(ids))
        # fork: workers inherit the imported modules, so starting them costs milliseconds
        ctx = mp.get_context("fork")
        counter = ctx.Value("i", 0)
        with ProcessPoolExecutor(max_workers=nproc, mp_context=ctx, initializer=_start_worker,
                                 initargs=(counter, nproc)) as pool:
            # keep a bounded window of submitted chunks so thousands of chunks don't queue up front
            window = 4 * nproc
            it = iter(ids)
            running = set()
            try:
                for cid in it:
                    running.add(pool.submit(_work, rd.path, cid))
                    if len(running) >= window:
                        break
                while running:
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        out[fut.result()] += 1
                        if progress:
                            progress.advance()
                        nxt = next(it, None)
                        if nxt is not None:
                            running.add(pool.submit(_work, rd.path, nxt))
            except BrokenProcessPool:
                raise WorkerDied(f"a worker process died before finishing its chunk; the finished chunks are kept: "
                                 f"run `gat-hpc runs resume --run-dir {rd.path}` to complete the run") from None
        return out
