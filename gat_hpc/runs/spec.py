"""ChunkSpec and ChunkResult: the JSON records every executor reads and writes.

Both carry ``schema`` (a version number) and are validated on read, so a
malformed or foreign file is reported as such instead of being half-trusted.
Paths inside them are relative to the run directory and may not leave it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from gat_hpc.errors import InputError

CHUNK_SCHEMA = 1
RESULT_SCHEMA = 1
STATUSES = ("ok", "failed")


def _require(d, key, types, where):
    if key not in d:
        raise InputError(f"{where}: missing field '{key}'")
    v = d[key]
    allowed = types if isinstance(types, tuple) else (types,)
    if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed):
        raise InputError(f"{where}: field '{key}' has the wrong type ({type(v).__name__})")
    return v


def _json_object(text, where):
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: malformed JSON ({exc})") from None
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a JSON object")
    return d


def check_relative(path, where):
    """A path recorded in a run directory: relative, normalised, never climbing out."""
    if not isinstance(path, str) or not path:
        raise InputError(f"{where}: empty or non-text path")
    if path.startswith("/") or path.startswith("\\"):
        raise InputError(f"{where}: absolute path '{path}' is not allowed in a run directory")
    parts = path.replace("\\", "/").split("/")
    if any(p in ("..", "") for p in parts):
        raise InputError(f"{where}: path '{path}' points outside the run directory")
    return path


@dataclass
class ChunkSpec:
    """One unit of work: which study, which slice (hours, contingencies, samples), which parameters."""

    run_id: str
    chunk_id: int
    study: str
    ranges: dict  # e.g. {"hours": [0, 24]} half-open ranges, or {"items": [...]}
    params: dict = field(default_factory=dict)
    seed_spawn_key: list = field(default_factory=list)
    schema: int = CHUNK_SCHEMA

    def to_json(self):
        return json.dumps(asdict(self), sort_keys=True, indent=1) + "\n"

    @classmethod
    def from_json(cls, text, where="chunk spec"):
        d = _json_object(text, where)
        schema = _require(d, "schema", int, where)
        if schema != CHUNK_SCHEMA:
            raise InputError(f"{where}: chunk schema {schema} is not supported (expected {CHUNK_SCHEMA})")
        spec = cls(run_id=_require(d, "run_id", str, where), chunk_id=_require(d, "chunk_id", int, where),
                   study=_require(d, "study", str, where), ranges=_require(d, "ranges", dict, where),
                   params=_require(d, "params", dict, where),
                   seed_spawn_key=_require(d, "seed_spawn_key", list, where), schema=schema)
        if spec.chunk_id < 0:
            raise InputError(f"{where}: negative chunk_id")
        for k, v in spec.ranges.items():
            if k != "items" and not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v) and v[0] <= v[1]):
                raise InputError(f"{where}: range '{k}' must be [start, stop] integers with start <= stop")
        return spec


@dataclass
class Output:
    path: str  # relative to the run directory
    table: str
    rows: int
    sha256: str


@dataclass
class ChunkResult:
    """What became of one attempt at a chunk."""

    run_id: str
    chunk_id: int
    status: str  # ok | failed
    attempt: int
    host: str
    pid: int
    rank: int | None
    executor: str
    start: float  # Unix time, seconds
    end: float
    outputs: list = field(default_factory=list)  # [Output as dict]
    metrics: dict = field(default_factory=dict)
    error: str = ""
    schema: int = RESULT_SCHEMA

    @property
    def seconds(self):
        return self.end - self.start

    def to_json(self):
        return json.dumps(asdict(self), sort_keys=True, indent=1, default=_plain) + "\n"

    @classmethod
    def from_json(cls, text, where="chunk result"):
        d = _json_object(text, where)
        schema = _require(d, "schema", int, where)
        if schema != RESULT_SCHEMA:
            raise InputError(f"{where}: result schema {schema} is not supported (expected {RESULT_SCHEMA})")
        status = _require(d, "status", str, where)
        if status not in STATUSES:
            raise InputError(f"{where}: status '{status}' is not one of {STATUSES}")
        outputs = _require(d, "outputs", list, where)
        outs = []
        for i, o in enumerate(outputs):
            if not isinstance(o, dict):
                raise InputError(f"{where}: outputs[{i}] is not an object")
            ow = f"{where}: outputs[{i}]"
            outs.append(dict(path=check_relative(_require(o, "path", str, ow), ow), table=_require(o, "table", str, ow),
                             rows=_require(o, "rows", int, ow), sha256=_require(o, "sha256", str, ow)))
        rank = d.get("rank")
        res = cls(run_id=_require(d, "run_id", str, where), chunk_id=_require(d, "chunk_id", int, where),
                  status=status, attempt=_require(d, "attempt", int, where), host=_require(d, "host", str, where),
                  pid=_require(d, "pid", int, where), rank=rank if isinstance(rank, int) else None,
                  executor=_require(d, "executor", str, where), start=float(_require(d, "start", (int, float), where)),
                  end=float(_require(d, "end", (int, float), where)), outputs=outs,
                  metrics=_require(d, "metrics", dict, where), error=_require(d, "error", str, where), schema=schema)
        if not (math.isfinite(res.start) and math.isfinite(res.end)):
            raise InputError(f"{where}: non-finite start/end")
        return res


def _plain(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
