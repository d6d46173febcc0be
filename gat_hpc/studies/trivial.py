"""A study whose chunks do almost nothing: it measures and tests the sweep machinery itself.

Chunk ``ranges = {"items": [a, b]}`` writes one row per item: item, value = item**2 + seed.
With ``seconds_per_item`` a chunk also sleeps that long per item: a slow chunk on demand, for
the tests of time limits, requeues and cancelled tasks.
``gat-hpc emit-sbatch trivial`` runs it as a Slurm array (scheduler overhead), and the executor
overhead benchmark and tests use it.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa


class Trivial:
    name = "trivial"
    tables = {"items": ["item"]}

    @staticmethod
    def plan(n_items, chunk_size, seed=0, seconds_per_item=0.0):
        chunks = [{"ranges": {"items": [a, min(a + chunk_size, n_items)]}} for a in range(0, n_items, chunk_size)]
        config = {"n_items": n_items, "chunk_size": chunk_size, "seed": seed}
        if seconds_per_item:
            config["seconds_per_item"] = float(seconds_per_item)
        return config, chunks

    def context(self, rd):
        return rd.config

    def run_chunk(self, ctx, spec):
        a, b = spec.ranges["items"]
        if ctx.get("seconds_per_item"):
            time.sleep(ctx["seconds_per_item"] * (b - a))
        item = np.arange(a, b, dtype=np.int64)
        return {"items": pa.table({"item": item, "value": item * item + int(ctx["seed"])})}, {"items": int(b - a)}

    def summarize(self, rd, paths):
        import pyarrow.parquet as pq

        t = pq.read_table(paths["items"])
        return {"items": t.num_rows, "value_sum": int(pa.compute.sum(t["value"]).as_py() or 0)}
