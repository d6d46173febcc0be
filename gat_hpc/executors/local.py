"""In-process executor: chunks one after another."""

from __future__ import annotations

from collections import Counter

from gat_hpc.executors.base import Executor
from gat_hpc.runs.execute import execute_chunk


class LocalExecutor(Executor):
    name = "local"

    def run(self, rd, chunk_ids, progress=None):
        out = Counter()
        for cid in chunk_ids:
            out[execute_chunk(rd, cid, self.name)] += 1
            if progress:
                progress.advance()
        return out
