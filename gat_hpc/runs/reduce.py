"""Merge the chunk partitions of a finished run into ``RUN/reduce/``: idempotent, all or nothing.

Partitions are streamed in chunk-id order (studies plan chunks over increasing key
ranges), each sorted by the table's keys, into one Parquet file per table; only the
files listed in the chunks' results (and matching their checksums) are read, never a
directory listing, so a stray or half-written file cannot leak into the result.
"""

from __future__ import annotations

import json
import os

from gat_hpc.errors import InputError
from gat_hpc.runs.rundir import DONE, sha256_file
from gat_hpc.util.atomic import atomic_dir


def reduce_run(rd, allow_partial=False):
    """Write RUN/reduce/<table>.parquet and summary.json; returns the summary dict."""
    import pyarrow.parquet as pq

    from gat_hpc.studies import get_study

    study = get_study(rd.study)
    states = rd.states()
    pending = [cid for cid, (s, _) in states.items() if s != DONE]
    if pending and not allow_partial:
        shown = ", ".join(f"{c} ({states[c][0]})" for c in pending[:10])
        raise InputError(f"{rd.path}: {len(pending)} of {rd.n_chunks} chunks are not done: {shown}; "
                         f"run `gat-hpc runs resume --run-dir {rd.path}` first")
    done = [cid for cid in rd.chunk_ids() if states[cid][0] == DONE]
    rows, digests = {}, {}
    out_final = rd.resolve("reduce")
    with atomic_dir(out_final) as tmp:
        paths = {}
        for table, keys in study.tables.items():
            path = os.path.join(tmp, f"{table}.parquet")
            writer = None
            n = 0
            for cid in done:
                for out in states[cid][1].outputs:
                    if out["table"] != table:
                        continue
                    t = pq.read_table(rd.resolve(out["path"])).sort_by([(k, "ascending") for k in keys])
                    if writer is None:
                        writer = pq.ParquetWriter(path, t.schema)
                    writer.write_table(t)
                    n += t.num_rows
            if writer is None:
                continue
            writer.close()
            rows[table] = n
            paths[table] = path
        summary = {"run_id": rd.run_id, "study": rd.study, "chunks": rd.n_chunks, "chunks_done": len(done),
                   "partial": bool(pending), "rows": rows}
        if hasattr(study, "extra_outputs"):  # derived tables, e.g. the top violations
            paths.update(study.extra_outputs(rd, paths, tmp))
        summary.update(study.summarize(rd, paths))
        for table, path in paths.items():
            digests[table] = sha256_file(path)
        summary["sha256"] = digests
        with open(os.path.join(tmp, "summary.json"), "w") as fh:
            json.dump(summary, fh, indent=1, sort_keys=True)
            fh.write("\n")
    return summary
