"""The run directory: manifest, chunk specs, results, data partitions, locks.

Layout (every file written atomically: temporary name, fsync, rename)::

    RUN/run.json                   manifest, written last when the run is created
    RUN/inputs/<role><ext>         copies of the inputs (workers read these, never the originals)
    RUN/chunks/<id>.json           ChunkSpec
    RUN/results/<id>.json          ChunkResult of the latest attempt
    RUN/data/<table>/chunk=<id>/part-0.parquet
    RUN/locks/<id>.lock            flock(2) held while a worker runs the chunk
    RUN/reduce/                    merged tables and summary.json
    RUN/logs/                      executor and Slurm logs

A chunk is *done* when its result says ok and every output it lists exists with
the recorded SHA256. Anything else is *missing*, *failed* or *corrupt*, and
``resume`` runs it again; its partition files are overwritten in place, so a
re-run never duplicates rows. Every path read from a JSON file is checked to
stay inside the run directory (no absolute paths, no ``..``, no symlink escapes).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time

from gat_hpc import __version__
from gat_hpc.errors import InputError
from gat_hpc.runs.spec import ChunkResult, ChunkSpec, Output, check_relative
from gat_hpc.util.atomic import atomic_path, atomic_write_bytes, atomic_write_text

MANIFEST_SCHEMA = 1
DONE, FAILED, MISSING, CORRUPT = "done", "failed", "missing", "corrupt"


def sha256_file(path, bufsize=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(bufsize), b""):
            h.update(block)
    return h.hexdigest()


def sha256_input(path):
    """SHA256 of an input: a file's bytes, or for a folder (grid.arrow) its files' names and hashes.

    A folder's manifest.json is left out: it carries a creation time, and it only restates the
    tables' own hashes, which are covered.
    """
    if not os.path.isdir(path):
        return sha256_file(path)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path)
            if rel == "manifest.json":
                continue
            h.update(f"{rel}\0{sha256_file(full)}\n".encode())
    return h.hexdigest()


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def make_run_id(input_hashes, study, config, version=__version__):
    """Content address of a study: same inputs, configuration and version -> same id."""
    blob = canonical_json({"inputs": input_hashes, "study": study, "config": config, "gat_hpc": version})
    return hashlib.sha256(blob.encode()).hexdigest()


class RunDir:
    """A run directory on disk. Use :meth:`create` for a new run and :meth:`open` for an existing one."""

    def __init__(self, path, manifest):
        self.path = os.path.abspath(path)
        self.real = os.path.realpath(self.path)
        self.manifest = manifest

    # ------------------------------------------------------------ paths
    def resolve(self, rel, where="run directory"):
        """Absolute path of a recorded relative path; refuses anything that leaves the run directory."""
        check_relative(rel, where)
        full = os.path.join(self.path, rel)
        real = os.path.realpath(full)
        if real != self.real and not real.startswith(self.real + os.sep):
            raise InputError(f"{where}: '{rel}' resolves outside the run directory ({real})")
        return full

    def spec_path(self, cid):
        return self.resolve(f"chunks/{cid}.json")

    def result_path(self, cid):
        return self.resolve(f"results/{cid}.json")

    def partition_rel(self, table, cid):
        return f"data/{table}/chunk={cid}/part-0.parquet"

    @property
    def run_id(self):
        return self.manifest["run_id"]

    @property
    def study(self):
        return self.manifest["study"]

    @property
    def config(self):
        return self.manifest["config"]

    @property
    def n_chunks(self):
        return int(self.manifest["n_chunks"])

    def chunk_ids(self):
        return list(range(self.n_chunks))

    def input_path(self, role):
        inputs = self.manifest["inputs"]
        if role not in inputs:
            raise InputError(f"{self.path}: the run has no input '{role}'")
        return self.resolve(inputs[role]["copy"], f"{self.path}/run.json inputs.{role}")

    # ------------------------------------------------------------ create / open
    @classmethod
    def create(cls, path, study, config, inputs, chunks, command=None, derived=None):
        """Create a run directory, or return the existing one when it holds the same study.

        ``inputs``: {role: source path}; ``chunks``: list of dicts with ``ranges``, optional
        ``params`` and ``seed_spawn_key``; ``derived``: {role: (file name suffix, bytes)} of
        inputs computed while planning (e.g. the contingency list): stored and hashed like
        inputs, but with no source file to compare on resume. The manifest is written last, so a run
        directory without run.json is an unfinished creation and is rebuilt.
        """
        path = os.path.abspath(path)
        hashes, sources = {}, {}
        for role, src in sorted(inputs.items()):
            if not os.path.exists(src):
                raise InputError(f"{src}: no such file (input '{role}')")
            hashes[role] = sha256_input(src)
            sources[role] = os.path.abspath(src)
        derived = derived or {}
        for role, (_, data) in sorted(derived.items()):
            hashes[role] = hashlib.sha256(data).hexdigest()
        run_id = make_run_id(hashes, study, config)
        manifest_path = os.path.join(path, "run.json")
        if os.path.exists(manifest_path):
            existing = cls.open(path)
            if existing.run_id != run_id:
                raise InputError(
                    f"{path}: already holds another run ({existing.study}, run_id {existing.run_id[:12]}); "
                    "choose a new --run-dir, or `gat-hpc runs resume` to continue that run")
            return existing
        if os.path.exists(path) and not os.path.isdir(path):
            raise InputError(f"{path}: exists and is not a directory")
        try:
            os.makedirs(path, exist_ok=True)
            for sub in ("inputs", "chunks", "results", "data", "locks", "logs"):
                os.makedirs(os.path.join(path, sub), exist_ok=True)
            if not os.access(path, os.W_OK):
                raise PermissionError(errno.EACCES, "not writable", path)
        except OSError as exc:
            raise InputError(f"{path}: cannot create the run directory ({exc.strerror})") from None
        copies = {}
        for role, src in sources.items():
            ext = ".arrow" if os.path.isdir(src) else os.path.splitext(src)[1]
            rel = f"inputs/{role}{ext}"
            _copy_input(src, os.path.join(path, rel))
            copies[role] = {"source": src, "copy": rel, "sha256": hashes[role]}
        for role, (suffix, data) in sorted(derived.items()):
            rel = f"inputs/{role}{suffix}"
            atomic_write_bytes(os.path.join(path, rel), data)
            copies[role] = {"source": None, "copy": rel, "sha256": hashes[role], "derived": True}
        for cid, ch in enumerate(chunks):
            spec = ChunkSpec(run_id=run_id, chunk_id=cid, study=study, ranges=ch["ranges"],
                             params=ch.get("params", {}), seed_spawn_key=ch.get("seed_spawn_key", []))
            atomic_write_text(os.path.join(path, "chunks", f"{cid}.json"), spec.to_json())
        manifest = {
            "schema": MANIFEST_SCHEMA, "run_id": run_id, "gat_hpc_version": __version__, "study": study,
            "config": config, "inputs": copies, "n_chunks": len(chunks), "command": command or [],
            "created": time.time(), "jobs": [],
        }
        atomic_write_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        return cls(path, manifest)

    @classmethod
    def open(cls, path):
        """Open and validate an existing run directory."""
        path = os.path.abspath(path)
        mpath = os.path.join(path, "run.json")
        if not os.path.isdir(path):
            raise InputError(f"{path}: no such run directory")
        if not os.path.isfile(mpath):
            raise InputError(f"{path}: not a gat-hpc run directory (run.json is missing)")
        try:
            with open(mpath) as fh:
                m = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{mpath}: malformed run manifest ({exc})") from None
        where = mpath
        if not isinstance(m, dict) or m.get("schema") != MANIFEST_SCHEMA:
            raise InputError(f"{where}: unknown manifest schema {m.get('schema') if isinstance(m, dict) else m!r}")
        for key, typ in (("run_id", str), ("gat_hpc_version", str), ("study", str), ("config", dict),
                         ("inputs", dict), ("n_chunks", int)):
            if not isinstance(m.get(key), typ):
                raise InputError(f"{where}: field '{key}' is missing or has the wrong type")
        if m["gat_hpc_version"] != __version__:
            raise InputError(f"{where}: made by gat-hpc {m['gat_hpc_version']}, this is {__version__}; "
                             "results of different versions are not mixed: start a new run directory")
        rd = cls(path, m)
        for role, info in m["inputs"].items():
            if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
                raise InputError(f"{where}: inputs.{role} is malformed")
            rd.resolve(info.get("copy", ""), f"{where} inputs.{role}")
        return rd

    def save_manifest(self):
        atomic_write_text(os.path.join(self.path, "run.json"), json.dumps(self.manifest, indent=1, sort_keys=True) + "\n")

    # ------------------------------------------------------------ inputs
    def changed_sources(self):
        """Roles whose original input file changed (or vanished) since the run was created."""
        changed = []
        for role, info in sorted(self.manifest["inputs"].items()):
            if info.get("derived"):
                continue
            src = info.get("source")
            if not src or not os.path.exists(src) or sha256_input(src) != info["sha256"]:
                changed.append(role)
        return changed

    def verify_input_copies(self):
        for role, info in self.manifest["inputs"].items():
            p = self.input_path(role)
            if not os.path.exists(p) or sha256_input(p) != info["sha256"]:
                raise InputError(f"{p}: the run's copy of input '{role}' is missing or corrupt; start a new run")

    def refresh_inputs(self):
        """Copy changed sources into the run again and record their new hashes (retry after a fix)."""
        changed = self.changed_sources()
        for role in changed:
            info = self.manifest["inputs"][role]
            src = info["source"]
            if not os.path.exists(src):
                raise InputError(f"{src}: input '{role}' of this run no longer exists")
            _copy_input(src, self.input_path(role))
            info.setdefault("previous_sha256", []).append(info["sha256"])
            info["sha256"] = sha256_input(self.input_path(role))
        if changed:
            self.save_manifest()
        return changed

    # ------------------------------------------------------------ chunks
    def read_spec(self, cid):
        p = self.spec_path(cid)
        try:
            with open(p) as fh:
                text = fh.read()
        except FileNotFoundError:
            raise InputError(f"{p}: chunk spec is missing") from None
        spec = ChunkSpec.from_json(text, p)
        if spec.run_id != self.run_id or spec.chunk_id != cid:
            raise InputError(f"{p}: belongs to another run or chunk (run_id {spec.run_id[:12]}, chunk {spec.chunk_id})")
        return spec

    def read_result(self, cid):
        """The recorded ChunkResult, or None when there is none; InputError when unreadable."""
        p = self.result_path(cid)
        try:
            with open(p) as fh:
                text = fh.read()
        except FileNotFoundError:
            return None
        res = ChunkResult.from_json(text, p)
        if res.run_id != self.run_id or res.chunk_id != cid:
            raise InputError(f"{p}: belongs to another run or chunk")
        return res

    def state(self, cid, verify=True):
        """(state, result) of a chunk: done | failed | missing | corrupt."""
        try:
            res = self.read_result(cid)
        except InputError:
            return CORRUPT, None
        if res is None:
            return MISSING, None
        if res.status == "failed":
            return FAILED, res
        if verify:
            for out in res.outputs:
                try:
                    full = self.resolve(out["path"])
                except InputError:
                    return CORRUPT, res
                if not os.path.isfile(full) or sha256_file(full) != out["sha256"]:
                    return CORRUPT, res
        return DONE, res

    def states(self, verify=True):
        return {cid: self.state(cid, verify) for cid in self.chunk_ids()}

    @contextlib.contextmanager
    def lock(self, cid):
        """Hold the chunk's lock while running it; yields False when another worker holds it."""
        p = self.resolve(f"locks/{cid}.lock")
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def write_table(self, cid, table_name, table):
        """Write one partition atomically; returns its Output record."""
        import pyarrow.parquet as pq

        rel = self.partition_rel(table_name, cid)
        full = self.resolve(rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        self.resolve(rel)  # re-check now that the folders exist (a symlinked folder would show here)
        with atomic_path(full) as tmp:
            pq.write_table(table, tmp)
            digest = sha256_file(tmp)
        return Output(path=rel, table=table_name, rows=table.num_rows, sha256=digest)

    def write_result(self, res):
        atomic_write_text(self.result_path(res.chunk_id), res.to_json())


def _copy_input(src, dst):
    """Copy an input file or folder into the run, atomically."""
    if os.path.isdir(src):
        from gat_hpc.util.atomic import atomic_dir

        with atomic_dir(dst) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
    else:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
