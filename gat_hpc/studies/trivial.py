"""A study whose chunks do almost nothing: it measures and tests the sweep machinery itself.

Chunk ``ranges = {"items": [a, b]}`` writes one row per item: item, value = item**2 + seed.
``gat-hpc selftest-sweep`` uses it, and so do the executor overhead benchmark and tests.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class Trivial:
    name = "trivial"
    tables = {"items": ["item"]}

    @staticmethod
    def plan(n_items, chunk_size, seed=0):
        chunks = [{"ranges": {"items": [a, min(a + chunk_size, n_items)]}} for a in range(0, n_items, chunk_size)]
        return {"n_items": n_items, "chunk_size": chunk_size, "seed": seed}, chunks

    def context(self, rd):
        return rd.config

    def run_chunk(self, ctx, spec):
        a, b = spec.ranges["items"]
        item = np.arange(a, b, dtype=np.int64)
        return {"items": pa.table({"item": item, "value": item * item + int(ctx["seed"])})}, {"items": int(b - a)}

    def summarize(self, rd, paths):
        import pyarrow.parquet as pq

        t = pq.read_table(paths["items"])
        return {"items": t.num_rows, "value_sum": int(pa.compute.sum(t["value"]).as_py() or 0)}
