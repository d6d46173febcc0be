"""What a report reads: a run directory's own files, nothing else.

Only ``run.json``, ``results/<id>.json``, ``reduce/*.parquet`` and ``reduce/summary.json`` are
read (never the case file, never a study's code), so a report can be made on a laptop from a
run directory copied off a cluster, with another gat-hpc version. A ``gat-hpc pf ac|dc --out
DIR`` folder (buses/flows/generators.parquet + summary.json, no run.json) is read too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from gat_hpc.errors import InputError

PF_FOLDER = "pf-folder"  # the study name given to a `gat-hpc pf --out DIR` folder
STUDY_TITLES = {
    "contingency": "N-1 / N-2 contingency screening",
    "adequacy": "Monte-Carlo resource adequacy",
    "pf-hourly": "hourly AC power flow",
    "opf-dc": "rolling DC optimal power flow",
    "trivial": "trivial sweep (machinery only)",
    PF_FOLDER: "power flow (one solve)",
}


@dataclass
class Chunks:
    """The chunk results of a run as arrays (one entry per chunk that has a result file)."""

    chunk_id: np.ndarray  # int64
    start: np.ndarray  # float64, Unix seconds
    end: np.ndarray
    status: np.ndarray  # object: ok | failed
    attempt: np.ndarray  # int64
    host: np.ndarray  # object
    rank: np.ndarray  # int64, -1 when the executor has no ranks
    pid: np.ndarray  # int64
    executor: np.ndarray  # object
    rows: np.ndarray  # int64: rows written (all the chunk's outputs)
    error: np.ndarray  # object: the error's first line (type and message)
    n_chunks: int  # chunks planned (run.json)
    unreadable: list  # chunk ids whose result file exists but does not parse

    @property
    def n(self):
        return len(self.chunk_id)

    @property
    def missing(self):
        have = set(self.chunk_id.tolist()) | set(self.unreadable)
        return [c for c in range(self.n_chunks) if c not in have]


class RunData:
    """A finished (reduced) run directory, or a `pf --out` folder, opened for reporting."""

    def __init__(self, path, manifest, summary, study):
        self.path = path
        self.manifest = manifest
        self.summary = summary
        self.study = study
        self._chunks = None
        self.cache = {}  # results shared between figures (e.g. one scan of a large table)

    # ------------------------------------------------------------ opening
    @classmethod
    def open(cls, path):
        """Check the folder and read its manifest and summary; InputError (one line) when unusable."""
        path = os.path.abspath(os.fspath(path))
        if not os.path.exists(path):
            raise InputError(f"{path}: no such run directory")
        if not os.path.isdir(path):
            raise InputError(f"{path}: is not a directory (give a run directory made by a gat-hpc sweep)")
        mpath = os.path.join(path, "run.json")
        if not os.path.isfile(mpath):
            if all(os.path.isfile(os.path.join(path, f)) for f in ("summary.json", "buses.parquet", "flows.parquet")):
                return cls(path, {}, _read_json(os.path.join(path, "summary.json")), PF_FOLDER)
            raise InputError(f"{path}: not a gat-hpc run directory (run.json is missing)")
        m = _read_json(mpath)
        for key, typ in (("study", str), ("n_chunks", int), ("run_id", str)):
            if not isinstance(m.get(key), typ):
                raise InputError(f"{mpath}: field '{key}' is missing or has the wrong type")
        spath = os.path.join(path, "reduce", "summary.json")
        if not os.path.isfile(spath):
            raise InputError(f"{path}: the run is not reduced yet (reduce/summary.json is missing); finish it with "
                             f"`gat-hpc runs resume --run-dir {path}` or `gat-hpc reduce --run-dir {path} [--partial]`")
        summary = _read_json(spath)
        if summary.get("run_id") not in (None, m["run_id"]):
            raise InputError(f"{spath}: belongs to another run (run_id {str(summary.get('run_id'))[:12]}, "
                             f"run.json says {m['run_id'][:12]}); reduce the run again")
        return cls(path, m, summary, m["study"])

    # ------------------------------------------------------------ facts
    @property
    def is_run(self):
        return self.study != PF_FOLDER

    @property
    def config(self):
        return self.manifest.get("config", {}) if self.is_run else {}

    @property
    def title(self):
        return STUDY_TITLES.get(self.study, self.study)

    def table_path(self, name):
        """reduce/<name>.parquet of a run (<name>.parquet of a pf folder), or None when absent."""
        folder = os.path.join(self.path, "reduce") if self.is_run else self.path
        p = os.path.join(folder, f"{name}.parquet")
        return p if os.path.isfile(p) else None

    def has(self, name):
        return self.table_path(name) is not None

    def read(self, name, columns=None, filters=None):
        """A whole table (pyarrow.Table); InputError naming the file when it is missing or unreadable."""
        import pyarrow.parquet as pq

        p = self.table_path(name)
        if p is None:
            raise InputError(f"{self.path}: {name}.parquet is missing from the reduced run")
        try:
            return pq.read_table(p, columns=columns, filters=filters)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{p}: cannot read the table ({exc})") from None

    def batches(self, name, columns, batch_size=1 << 20):
        """Stream a table's columns in record batches (tables of tens of millions of rows)."""
        import pyarrow.parquet as pq

        p = self.table_path(name)
        if p is None:
            raise InputError(f"{self.path}: {name}.parquet is missing from the reduced run")
        try:
            pf = pq.ParquetFile(p)
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise InputError(f"{p}: column(s) {', '.join(missing)} missing (made by another gat-hpc version?)")
            yield from pf.iter_batches(columns=columns, batch_size=batch_size)
        except (OSError, ValueError) as exc:
            raise InputError(f"{p}: cannot read the table ({exc})") from None

    def columns(self, name):
        import pyarrow.parquet as pq

        p = self.table_path(name)
        return pq.read_schema(p).names if p else []

    # ------------------------------------------------------------ chunk results
    def chunks(self):
        """Every chunk's result (results/<id>.json for id < n_chunks), as arrays."""
        if self._chunks is None:
            self._chunks = read_chunks(self.path, int(self.manifest.get("n_chunks", 0)))
        return self._chunks


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: malformed JSON ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
    if not isinstance(d, dict):
        raise InputError(f"{path}: expected a JSON object")
    return d


def read_chunks(path, n_chunks):
    """Read results/<id>.json of chunks 0..n_chunks-1 (named by id, never a directory listing)."""
    ids, start, end, status, attempt, host, rank, pid, executor, rows, error = ([] for _ in range(11))
    unreadable = []
    folder = os.path.join(path, "results")
    for cid in range(n_chunks):
        p = os.path.join(folder, f"{cid}.json")
        try:
            with open(p, "rb") as fh:
                d = json.loads(fh.read())
            s, e = float(d["start"]), float(d["end"])
            if not (np.isfinite(s) and np.isfinite(e)):
                raise ValueError("non-finite start/end")
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            unreadable.append(cid)
            continue
        ids.append(cid)
        start.append(s)
        end.append(e)
        status.append(str(d.get("status", "?")))
        attempt.append(int(d.get("attempt", 1) or 1))
        host.append(str(d.get("host", "?")))
        r = d.get("rank")
        rank.append(r if isinstance(r, int) and not isinstance(r, bool) else -1)
        pid.append(int(d.get("pid", -1) or -1))
        executor.append(str(d.get("executor", "?")))
        outs = d.get("outputs") or []
        rows.append(sum(int(o.get("rows", 0) or 0) for o in outs if isinstance(o, dict)))
        err = str(d.get("error") or "").strip()
        error.append(err.splitlines()[0] if err else "")
    obj = lambda v: np.array(v, dtype=object)  # noqa: E731
    return Chunks(chunk_id=np.array(ids, dtype=np.int64), start=np.array(start, dtype=np.float64),
                  end=np.array(end, dtype=np.float64), status=obj(status), attempt=np.array(attempt, dtype=np.int64),
                  host=obj(host), rank=np.array(rank, dtype=np.int64), pid=np.array(pid, dtype=np.int64),
                  executor=obj(executor), rows=np.array(rows, dtype=np.int64), error=obj(error),
                  n_chunks=n_chunks, unreadable=unreadable)
