"""Merge the chunk partitions of a finished run into ``RUN/reduce/``: idempotent, all or nothing.

Each table comes out sorted by its keys, whatever the chunking: the partitions are grouped
by the range of their leading key (partitions whose ranges overlap, such as the contingency
blocks of one block of hours, form one group), the groups are written in key order, and
each group is sorted by all the keys in memory, one group at a time. So two runs that differ
only in chunk sizes give byte-identical tables. Only the files listed in the chunks' results
(and matching their checksums) are read, never a directory listing, so a stray or
half-written file cannot leak into the result.
"""

from __future__ import annotations

import json
import os

from gat_hpc.errors import InputError
from gat_hpc.runs.rundir import DONE, sha256_file
from gat_hpc.util.atomic import atomic_dir

ROW_GROUP = 1 << 20  # rows per Parquet row group of a reduced table


def reduce_run(rd, allow_partial=False):
    """Write RUN/reduce/<table>.parquet and summary.json; returns the summary dict."""
    import pyarrow as pa
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
            files = [rd.resolve(out["path"]) for cid in done for out in states[cid][1].outputs
                     if out["table"] == table]
            if not files:
                continue
            path = os.path.join(tmp, f"{table}.parquet")
            order = [(k, "ascending") for k in keys]
            writer = pending = None
            n = 0
            for group in _overlap_groups(files, keys[0]):
                parts = [pq.read_table(f) for f in group]
                t = (parts[0] if len(parts) == 1 else pa.concat_tables(parts)).sort_by(order)
                if writer is None:
                    writer = pq.ParquetWriter(path, t.schema)
                n += t.num_rows
                # row groups of ROW_GROUP rows whatever the groups, so the bytes do not depend
                # on the chunking either
                pending = t if pending is None else pa.concat_tables([pending, t])
                while pending.num_rows >= ROW_GROUP:
                    writer.write_table(pending.slice(0, ROW_GROUP))
                    pending = pending.slice(ROW_GROUP)
            if pending is not None and (pending.num_rows or n == 0):
                writer.write_table(pending)
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


def _overlap_groups(files, key):
    """The Parquet ``files`` in groups to merge: sorted by the smallest value of column ``key``,
    a file joins the current group when its range of ``key`` overlaps the group's. Ranges come
    from the files' row-group statistics (the column itself is read only where a file has none).
    Empty files go with the first group."""
    spans, empty = [], []
    for i, f in enumerate(files):
        span = _key_range(f, key)
        if span is None:
            empty.append(f)
        else:
            spans.append((*span, i, f))
    spans.sort(key=lambda s: (s[0], s[2]))
    groups, hi = [], None
    for lo_f, hi_f, _, f in spans:
        if groups and lo_f <= hi:
            groups[-1].append(f)
            hi = max(hi, hi_f)
        else:
            groups.append([f])
            hi = hi_f
    if empty:
        if groups:
            groups[0] = empty + groups[0]
        else:
            groups = [empty]
    return groups


def _key_range(path, key):
    """(min, max) of column ``key`` of a Parquet file, None when it has no non-null value."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    at = meta.schema.names.index(key)
    lo = hi = None
    for g in range(meta.num_row_groups):
        col = meta.row_group(g).column(at)
        stats = col.statistics
        if col.num_values == 0 or (stats is not None and stats.null_count == col.num_values):
            continue
        if stats is None or not stats.has_min_max:
            break
        lo = stats.min if lo is None else min(lo, stats.min)
        hi = stats.max if hi is None else max(hi, stats.max)
    else:
        return None if lo is None else (lo, hi)
    col = pq.read_table(path, columns=[key])[key]  # no statistics: read the column
    if len(col) == col.null_count:
        return None
    mm = pc.min_max(col)
    return mm["min"].as_py(), mm["max"].as_py()
