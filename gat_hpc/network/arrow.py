"""GAT ``grid.arrow`` folders: one Arrow IPC file per table plus ``manifest.json``.

The layout follows GAT's (the Rust Grid Analysis Toolkit, schema version 2.0.0,
``crates/gat-io/src/arrow_schema.rs`` and ``arrow_manifest.rs``): tables
``system``, ``buses``, ``generators``, ``loads`` and ``branches`` stored as
``<table>.arrow`` (Arrow IPC file format, uncompressed) with GAT's column names
and units, and a ``manifest.json`` holding each table's SHA-256. gat-hpc adds
a ``shunts`` table and a few columns (marked + below); GAT ignores both.

Tables and columns (units in the names; ids are the case's numbers):

* ``system`` (one row): base_mva, base_frequency_hz (60), name, description;
  + gencost_rows, gencost_columns (shape of MATPOWER's gencost; 0 = none).
* ``buses``: id (bus number), name, voltage_kv (base kV), voltage_pu,
  angle_rad, bus_type ("PQ", "PV", "Slack", "Isolated"; read also as codes 1-4),
  vmin_pu, vmax_pu, area_id, zone_id.
* ``generators``: id (``gen_id``, 1-based row), name, bus, status,
  active_power_mw, reactive_power_mvar, pmin_mw, pmax_mw, qmin_mvar, qmax_mvar,
  voltage_setpoint_pu, mbase_mva, cost_model (0 none, 1 piecewise linear,
  2 polynomial), cost_startup, cost_shutdown, cost_coeffs (polynomial:
  coefficients lowest degree first, as GAT; piecewise: the MW points),
  cost_values (piecewise: $/h at those points), is_synchronous_condenser
  (GAT's rule, written for GAT, not read); + pg_pu, qg_pu, pmin_pu, pmax_pu,
  qmin_pu, qmax_pu; + qcost_model, qcost_startup, qcost_shutdown, qcost_coeffs,
  qcost_values (MATPOWER's reactive-power cost rows, when gencost has them).
* ``loads``: id (``load_id``), name, bus, status, active_power_mw,
  reactive_power_mvar; + p_pu, q_pu.
* ``branches``: id (``branch_id``, 1-based row), name, element_type ("line" or
  "transformer": transformer when MATPOWER's ratio column is non-zero),
  from_bus, to_bus, status, resistance_pu, reactance_pu, charging_b_pu,
  tap_ratio (1 for lines), phase_shift_rad, rate_a_mva, rate_b_mva, rate_c_mva
  (null = no limit, MATPOWER's 0), angle_min_rad, angle_max_rad.
* + ``shunts``: id (``shunt_id``), name, bus, status, gs_mw, bs_mvar (MW/MVAr
  at 1 p.u. voltage, MATPOWER's Gs/Bs), g_pu, b_pu. A folder without this table
  (one written by GAT) has no shunts.

Why the ``*_pu`` columns: the model holds powers in p.u.; MW = p.u. * base_mva
and back is not exact in floating point for about one value in eight, so the
exact p.u. values travel next to GAT's MW columns. The reader takes the p.u.
column when present and checks that it agrees with the MW column (an edit of
one without the other is an error); without it, it divides the MW column.

``manifest.json``: {format: "gat-grid-arrow", version and schema_version:
"2.0.0", gat_hpc_version, gat_version ("gat-hpc <version>", the key GAT
requires), created_at (UTC; SOURCE_DATE_EPOCH is honoured for reproducible
output), source {file, format, file_hash} when the network came from a file,
tables: {name: {file, sha256, rows, row_count, file_size_bytes}}}.
Table files are byte-for-byte reproducible for the same network.

Names of generators, loads, shunts and branches are written empty: the model
has none. ``gen_id`` and ``branch_id`` are row numbers on reading, whatever the
``id`` column says; load and shunt ids are read from ``id``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os

import numpy as np
import pyarrow as pa

from gat_hpc.errors import InputError
from gat_hpc.network.model import NONE, PQ, PV, REF, Network

FORMAT = "gat-grid-arrow"
SCHEMA_VERSION = "2.0.0"
REQUIRED_TABLES = ("system", "buses", "generators", "loads", "branches")
TABLES = REQUIRED_TABLES + ("shunts",)

_BUS_TYPE_NAMES = {PQ: "PQ", PV: "PV", REF: "Slack", NONE: "Isolated"}
_BUS_TYPE_CODES = {"pq": PQ, "pv": PV, "slack": REF, "ref": REF, "isolated": NONE, "none": NONE}
_COST_NONE, _COST_PIECEWISE, _COST_POLYNOMIAL = 0, 1, 2
_REQUIRED = object()  # marks a column that must be present and non-null

F64, I64, I32, BOOL, STR = pa.float64(), pa.int64(), pa.int32(), pa.bool_(), pa.string()
LIST = pa.list_(pa.float64())


# ---------------------------------------------------------------- gencost
def _encode_costs(rows, where):
    """MATPOWER gencost rows -> (model, startup, shutdown, coeffs list, values list) Arrow arrays."""
    ng, width = rows.shape
    model = rows[:, 0]
    n = rows[:, 3]
    bad = ~np.isin(model, (_COST_PIECEWISE, _COST_POLYNOMIAL))
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{where}: gencost row {k + 1} has model {model[k]:g}; expected 1 (piecewise linear) or 2 (polynomial)")
    n_int = n.astype(np.int64)
    need = 4 + np.where(model == _COST_PIECEWISE, 2 * n_int, n_int)
    bad = (n_int != n) | (n_int < 0) | (need > width)
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{where}: gencost row {k + 1} has NCOST = {n[k]:g}, which does not fit its {width} columns")
    model = model.astype(np.int32)
    poly = model == _COST_POLYNOMIAL
    k = np.arange(int(n_int.max()) if ng else 0)[None, :]
    n2 = n_int[:, None]
    # polynomial: MATPOWER stores the highest degree first, GAT the lowest first
    col_c = np.where(poly[:, None], 4 + n2 - 1 - k, 4 + 2 * k)
    col_v = 5 + 2 * k
    has_c = k < n2
    has_v = has_c & ~poly[:, None]
    coeffs = np.take_along_axis(rows, np.clip(col_c, 0, width - 1), axis=1)[has_c]
    values = np.take_along_axis(rows, np.clip(col_v, 0, width - 1), axis=1)[has_v]

    def as_list(counts, flat):
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets, I32), pa.array(flat, F64))

    return (pa.array(model, I32), pa.array(rows[:, 1], F64), pa.array(rows[:, 2], F64),
            as_list(has_c.sum(axis=1), coeffs), as_list(has_v.sum(axis=1), values))


def _decode_costs(tab, prefix, width):
    """Cost columns of the generators table -> MATPOWER gencost rows (width columns)."""
    model = tab.i64(prefix + "model", 0)
    ng = len(model)
    coeffs, n = tab.lists(prefix + "coeffs")
    values, nv = tab.lists(prefix + "values")
    rows = np.zeros((ng, width))
    rows[:, 0] = model
    rows[:, 1] = tab.f64(prefix + "startup", 0.0)
    rows[:, 2] = tab.f64(prefix + "shutdown", 0.0)
    rows[:, 3] = n
    poly = model == _COST_POLYNOMIAL
    for flat, counts, is_value in ((coeffs, n, False), (values, nv, True)):
        owner = np.repeat(np.arange(ng), counts)
        k = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
        if is_value:
            col = 5 + 2 * k
        else:
            col = np.where(poly[owner], 4 + counts[owner] - 1 - k, 4 + 2 * k)
        if np.any(col >= width):
            g = int(owner[np.flatnonzero(col >= width)[0]])
            tab.fail(f"generator row {g + 1}: its {prefix}* cost data needs more than gencost_columns = {width} columns")
        rows[owner, col] = flat
    return rows


# ---------------------------------------------------------------- writing
def _network_tables(net):
    """The Arrow tables of a network, in file order."""
    base = net.base_mva
    ids = net.bus_id
    where = net.source or net.name or "case"
    ng = net.n_gen
    gencost = net.gencost
    g_rows = 0 if gencost is None else gencost.shape[0]
    if g_rows not in (0, ng, 2 * ng):
        raise InputError(f"{where}: gencost has {g_rows} rows for {ng} generators; expected {ng} or {2 * ng}")
    width = 0 if gencost is None or g_rows == 0 else gencost.shape[1]

    tables = {}
    tables["system"] = pa.table({
        "base_mva": pa.array([base], F64),
        "base_frequency_hz": pa.array([60.0], F64),
        "name": pa.array([net.name], STR),
        "description": pa.array([None], STR),
        "gencost_rows": pa.array([g_rows], I64),
        "gencost_columns": pa.array([width], I64),
    })
    tables["buses"] = pa.table({
        "id": pa.array(ids, I64),
        "name": pa.array([str(s) for s in net.bus_name], STR),
        "voltage_kv": pa.array(net.base_kv, F64),
        "voltage_pu": pa.array(net.vm, F64),
        "angle_rad": pa.array(net.va, F64),
        "bus_type": pa.array([_BUS_TYPE_NAMES[t] for t in net.bus_type.tolist()], STR),
        "vmin_pu": pa.array(net.vmin, F64),
        "vmax_pu": pa.array(net.vmax, F64),
        "area_id": pa.array(net.area, I64),
        "zone_id": pa.array(net.zone, I64),
    })

    empty = [""] * ng
    gen = {
        "id": pa.array(net.gen_id, I64), "name": pa.array(empty, STR),
        "bus": pa.array(ids[net.gen_bus], I64), "status": pa.array(net.gen_status, BOOL),
        "active_power_mw": pa.array(net.pg * base, F64), "reactive_power_mvar": pa.array(net.qg * base, F64),
        "pmin_mw": pa.array(net.pmin * base, F64), "pmax_mw": pa.array(net.pmax * base, F64),
        "qmin_mvar": pa.array(net.qmin * base, F64), "qmax_mvar": pa.array(net.qmax * base, F64),
        "voltage_setpoint_pu": pa.array(net.vg, F64), "mbase_mva": pa.array(net.mbase, F64),
    }
    for prefix, lo in (("cost_", 0), ("qcost_", ng)):
        if g_rows > lo:
            cols = _encode_costs(gencost[lo:lo + ng], where)
        elif prefix == "cost_":
            none = pa.ListArray.from_arrays(pa.array(np.zeros(ng + 1, dtype=np.int32), I32), pa.array([], F64))
            cols = (pa.array(np.zeros(ng), I32), pa.nulls(ng, F64), pa.nulls(ng, F64), none, none)
        else:
            continue
        for name, arr in zip(("model", "startup", "shutdown", "coeffs", "values"), cols):
            gen[prefix + name] = arr
        if prefix == "cost_":
            gen["is_synchronous_condenser"] = pa.array(
                ((net.pmax <= 0) | (net.pg < 0)) & (net.qmax > net.qmin), BOOL)
    for col, arr in (("pg_pu", net.pg), ("qg_pu", net.qg), ("pmin_pu", net.pmin), ("pmax_pu", net.pmax),
                     ("qmin_pu", net.qmin), ("qmax_pu", net.qmax)):
        gen[col] = pa.array(arr, F64)
    tables["generators"] = pa.table(gen)

    nl = len(net.load_id)
    tables["loads"] = pa.table({
        "id": pa.array(net.load_id, I64), "name": pa.array([""] * nl, STR),
        "bus": pa.array(ids[net.load_bus], I64), "status": pa.array(net.load_status, BOOL),
        "active_power_mw": pa.array(net.load_p * base, F64), "reactive_power_mvar": pa.array(net.load_q * base, F64),
        "p_pu": pa.array(net.load_p, F64), "q_pu": pa.array(net.load_q, F64),
    })

    nb = net.n_branch
    xf = net.tap != 0

    def rating(v):
        return pa.array(v, F64, mask=v == 0)  # GAT: null = no limit (MATPOWER's 0)

    tables["branches"] = pa.table({
        "id": pa.array(net.branch_id, I64), "name": pa.array([""] * nb, STR),
        "element_type": pa.array(np.where(xf, "transformer", "line").tolist(), STR),
        "from_bus": pa.array(ids[net.f_bus], I64), "to_bus": pa.array(ids[net.t_bus], I64),
        "status": pa.array(net.branch_status, BOOL),
        "resistance_pu": pa.array(net.r, F64), "reactance_pu": pa.array(net.x, F64),
        "charging_b_pu": pa.array(net.b, F64),
        "tap_ratio": pa.array(np.where(xf, net.tap, 1.0), F64),
        "phase_shift_rad": pa.array(net.shift, F64),
        "rate_a_mva": rating(net.rate_a_mva), "rate_b_mva": rating(net.rate_b_mva),
        "rate_c_mva": rating(net.rate_c_mva),
        "angle_min_rad": pa.array(net.angmin, F64), "angle_max_rad": pa.array(net.angmax, F64),
    })

    ns = len(net.shunt_id)
    tables["shunts"] = pa.table({
        "id": pa.array(net.shunt_id, I64), "name": pa.array([""] * ns, STR),
        "bus": pa.array(ids[net.shunt_bus], I64), "status": pa.array(net.shunt_status, BOOL),
        "gs_mw": pa.array(net.shunt_g * base, F64), "bs_mvar": pa.array(net.shunt_b * base, F64),
        "g_pu": pa.array(net.shunt_g, F64), "b_pu": pa.array(net.shunt_b, F64),
    })
    return tables


def _ipc_bytes(table):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _created_at():
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch and epoch.isdigit()
            else _dt.datetime.now(_dt.timezone.utc))
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_table(folder, name, table):
    """Write one table file; return its manifest entry."""
    data = _ipc_bytes(table)
    fname = name + ".arrow"
    with open(os.path.join(folder, fname), "wb") as fh:
        fh.write(data)
    return {"file": fname, "sha256": hashlib.sha256(data).hexdigest(), "rows": table.num_rows,
            "row_count": table.num_rows, "file_size_bytes": len(data)}


def write_grid_arrow(net, path):
    """Write ``net`` as a grid.arrow folder at ``path``, atomically (see the module docstring).

    The folder is built under a temporary name and renamed into place, so a
    failure leaves no partial folder and an existing folder at ``path`` as it was.
    """
    from gat_hpc import __version__
    from gat_hpc.util.atomic import atomic_dir

    tables = _network_tables(net)
    manifest = {
        "format": FORMAT,
        "version": SCHEMA_VERSION,
        "schema_version": SCHEMA_VERSION,
        "gat_hpc_version": __version__,
        "gat_version": f"gat-hpc {__version__}",
        "created_at": _created_at(),
    }
    if net.source and os.path.isfile(net.source):
        from gat_hpc.network.io import case_format

        manifest["source"] = {"file": os.path.basename(net.source), "format": case_format(net.source),
                              "file_hash": _sha256_file(net.source)}
    manifest["tables"] = {}
    with atomic_dir(path) as tmp:
        for name, table in tables.items():
            manifest["tables"][name] = _write_table(tmp, name, table)
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=False)
            fh.write("\n")


# ---------------------------------------------------------------- reading
class _Table:
    """One table read from the folder, with typed column access that names table and column in errors."""

    def __init__(self, folder, name, table):
        self.folder = folder
        self.name = name
        self.table = table

    def fail(self, message):
        raise InputError(f"{self.folder}: table '{self.name}': {message}")

    def __len__(self):
        return self.table.num_rows

    def has(self, col):
        return col in self.table.column_names

    def _array(self, col, default):
        if not self.has(col):
            if default is _REQUIRED:
                self.fail(f"column '{col}' is missing")
            return None
        arr = self.table.column(col).combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if arr.null_count and default is _REQUIRED:
            row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            self.fail(f"column '{col}' is null in row {row + 1}; a value is required")
        return arr

    def _numbers(self, col, default, dtype):
        arr = self._array(col, default)
        if arr is None:
            return np.full(len(self), default, dtype=dtype)
        if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type)):
            self.fail(f"column '{col}' has type {arr.type}; expected numbers")
        out = arr.to_numpy(zero_copy_only=False)
        if arr.null_count:
            out = np.where(arr.is_null().to_numpy(zero_copy_only=False), default, out)
        return out

    def f64(self, col, default=_REQUIRED):
        return np.asarray(self._numbers(col, default, np.float64), dtype=np.float64)

    def i64(self, col, default=_REQUIRED):
        vals = self._numbers(col, default, np.int64)
        if vals.dtype.kind == "f":
            whole = np.isfinite(vals) & (np.floor(vals) == vals)
            if not np.all(whole):
                row = int(np.flatnonzero(~whole)[0])
                self.fail(f"column '{col}' row {row + 1} is {vals[row]!r}; expected an integer")
        return vals.astype(np.int64)

    def boolean(self, col, default=_REQUIRED):
        return self._numbers(col, default, bool).astype(bool)

    def strings(self, col, default):
        arr = self._array(col, default)
        if arr is None:
            return None
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            self.fail(f"column '{col}' has type {arr.type}; expected strings")
        return arr.to_pylist()

    def lists(self, col):
        """A list<float64> column -> (flat values, count per row); absent or null rows count 0."""
        arr = self._array(col, None)
        if arr is None:
            return np.zeros(0), np.zeros(len(self), dtype=np.int64)
        if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
            self.fail(f"column '{col}' has type {arr.type}; expected a list of numbers")
        counts = np.asarray(arr.value_lengths().fill_null(0), dtype=np.int64)
        flat = arr.flatten()  # null rows contribute nothing, whatever their offsets
        return np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64), counts

    def power(self, pu_col, mw_col, base):
        """Per-unit values from the exact p.u. column, checked against GAT's MW column; else MW / base."""
        mw = self.f64(mw_col)
        if not self.has(pu_col):
            return mw / base
        pu = self.f64(pu_col)
        off = ~np.isclose(pu * base, mw, rtol=1e-12, atol=1e-9, equal_nan=True)
        if np.any(off):
            row = int(np.flatnonzero(off)[0])
            self.fail(f"row {row + 1}: {mw_col} = {mw[row]!r} disagrees with {pu_col} = {pu[row]!r} at base "
                      f"{base} MVA; edit both columns or drop {pu_col}")
        return pu


def _load_manifest(folder):
    mpath = os.path.join(folder, "manifest.json")
    try:
        with open(mpath, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{folder}: manifest.json is missing; not a grid.arrow folder, or an incomplete one") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{mpath}: cannot read the manifest: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), dict):
        raise InputError(f"{mpath}: expected a JSON object with a 'tables' object")
    version = str(manifest.get("schema_version", manifest.get("version", SCHEMA_VERSION)))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) > int(SCHEMA_VERSION.split(".")[0]):
        raise InputError(f"{mpath}: schema version {version} is not supported; expected {SCHEMA_VERSION} "
                         "or an earlier 2.x")
    return manifest


def _read_table(folder, name, entry):
    """Read one table, verifying its SHA-256 and row count against the manifest entry."""
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise InputError(f"{folder}: manifest.json entry for table '{name}' has no sha256")
    fname = entry.get("file", name + ".arrow")
    if not isinstance(fname, str) or os.path.basename(fname) != fname or fname in ("", ".", ".."):
        raise InputError(f"{folder}: manifest.json gives table '{name}' the file {fname!r}; expected a file name "
                         "inside the folder")
    fpath = os.path.join(folder, fname)
    try:
        with open(fpath, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise InputError(f"{folder}: table '{name}' is missing: {fname} does not exist") from None
    except OSError as exc:
        raise InputError(f"{folder}: table '{name}': cannot read {fname}: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != str(entry["sha256"]).lower():
        raise InputError(f"{folder}: table '{name}' ({fname}) does not match its SHA-256 in manifest.json "
                         f"(expected {entry['sha256']}, found {digest}): the file was changed or damaged after "
                         "it was written; write the folder again")
    try:
        table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    except pa.ArrowInvalid:
        try:
            table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        except pa.ArrowInvalid as exc:
            raise InputError(f"{folder}: table '{name}' ({fname}) is not an Arrow IPC file: {exc}") from None
    rows = entry.get("rows", entry.get("row_count"))
    if rows is not None and int(rows) != table.num_rows:
        raise InputError(f"{folder}: table '{name}' has {table.num_rows} rows; manifest.json says {rows}")
    return _Table(folder, name, table)


def read_grid_arrow(path):
    """Read a grid.arrow folder into a :class:`Network`, verifying every table's SHA-256."""
    folder = os.fspath(path)
    if not os.path.isdir(folder):
        if os.path.basename(folder) == "manifest.json" and os.path.isfile(folder):
            folder = os.path.dirname(os.path.abspath(folder))
        elif not os.path.exists(folder):
            raise InputError(f"{folder}: no such folder; expected a grid.arrow folder")
        else:
            raise InputError(f"{folder}: is a file; expected a grid.arrow folder (manifest.json and *.arrow tables)")
    manifest = _load_manifest(folder)
    listed = manifest["tables"]
    for name in REQUIRED_TABLES:
        if name not in listed:
            raise InputError(f"{folder}: table '{name}' is missing from manifest.json; a grid.arrow folder needs "
                             f"the tables {', '.join(REQUIRED_TABLES)}")
    # every listed table is verified, also those this reader does not use
    tabs = {name: _read_table(folder, name, entry) for name, entry in listed.items()}

    system = tabs["system"]
    if len(system) != 1:
        system.fail(f"expected one row, found {len(system)}")
    base = float(system.f64("base_mva")[0])
    name = system.strings("name", None)
    name = name[0] if name and name[0] is not None else os.path.splitext(os.path.basename(folder.rstrip("/")))[0]

    bt = tabs["buses"]
    bus_id = bt.i64("id")
    kinds = bt._array("bus_type", _REQUIRED)
    if pa.types.is_string(kinds.type) or pa.types.is_large_string(kinds.type):
        labels = np.array([str(s).strip().lower() for s in kinds.to_pylist()], dtype=object)
        known = np.isin(labels, list(_BUS_TYPE_CODES))
        if not np.all(known):
            row = int(np.flatnonzero(~known)[0])
            bt.fail(f"row {row + 1} (bus {bus_id[row]}): bus_type {kinds[row].as_py()!r}; expected PQ, PV, Slack "
                    "or Isolated")
        bus_type = np.array([_BUS_TYPE_CODES[s] for s in labels], dtype=np.int64)
    else:
        bus_type = bt.i64("bus_type")
    names = bt.strings("name", None)
    if names is None:
        names = [None] * len(bus_id)
    names = [str(b) if s is None else s for s, b in zip(names, bus_id.tolist())]
    buses = dict(bus_id=bus_id, bus_name=names,
                 bus_type=bus_type, base_kv=bt.f64("voltage_kv"), vm=bt.f64("voltage_pu"), va=bt.f64("angle_rad"),
                 vmin=bt.f64("vmin_pu", 0.9), vmax=bt.f64("vmax_pu", 1.1),
                 area=bt.i64("area_id", 1), zone=bt.i64("zone_id", 1))

    gt = tabs["generators"]
    ng = len(gt)
    gens = dict(bus=gt.i64("bus"), status=gt.boolean("status"),
                pg=gt.power("pg_pu", "active_power_mw", base), qg=gt.power("qg_pu", "reactive_power_mvar", base),
                pmin=gt.power("pmin_pu", "pmin_mw", base), pmax=gt.power("pmax_pu", "pmax_mw", base),
                qmin=gt.power("qmin_pu", "qmin_mvar", base), qmax=gt.power("qmax_pu", "qmax_mvar", base),
                vg=gt.f64("voltage_setpoint_pu", 1.0), mbase=gt.f64("mbase_mva", base))
    if system.has("gencost_rows"):
        g_rows, width = int(system.i64("gencost_rows")[0]), int(system.i64("gencost_columns")[0])
    else:
        # a folder written by GAT: costs where cost_model says so, sized to fit
        model = gt.i64("cost_model", 0)
        g_rows = ng if np.any(model != _COST_NONE) else 0
        _, n = gt.lists("cost_coeffs")
        width = 4 + int(np.max(np.where(model == _COST_PIECEWISE, 2 * n, n), initial=0))
    gencost = None
    if g_rows:
        parts = [_decode_costs(gt, "cost_", width)]
        if g_rows == 2 * ng:
            parts.append(_decode_costs(gt, "qcost_", width))
        elif g_rows != ng:
            system.fail(f"gencost_rows = {g_rows}; expected 0, {ng} or {2 * ng} for {ng} generators")
        gencost = np.concatenate(parts)

    lt = tabs["loads"]
    loads = dict(load_id=lt.i64("id"), bus=lt.i64("bus"), status=lt.boolean("status"),
                 p=lt.power("p_pu", "active_power_mw", base), q=lt.power("q_pu", "reactive_power_mvar", base))

    shunts = dict(bus=np.zeros(0, dtype=np.int64))
    if "shunts" in tabs:
        st = tabs["shunts"]
        shunts = dict(shunt_id=st.i64("id"), bus=st.i64("bus"), status=st.boolean("status"),
                      g=st.power("g_pu", "gs_mw", base), b=st.power("b_pu", "bs_mvar", base))

    brt = tabs["branches"]
    nb = len(brt)
    ratio = brt.f64("tap_ratio")
    kind = brt.strings("element_type", None)
    is_xf = np.zeros(nb, dtype=bool) if kind is None else np.array(
        [str(k).strip().lower() == "transformer" for k in kind], dtype=bool)
    branches = dict(f_bus=brt.i64("from_bus"), t_bus=brt.i64("to_bus"), status=brt.boolean("status"),
                    r=brt.f64("resistance_pu"), x=brt.f64("reactance_pu"), b=brt.f64("charging_b_pu"),
                    # MATPOWER's ratio 0 marks a line; a line written with ratio 1 reads back as 0
                    tap=np.where(~is_xf & (ratio == 1.0), 0.0, ratio), shift=brt.f64("phase_shift_rad"),
                    rate_a_mva=brt.f64("rate_a_mva", 0.0), rate_b_mva=brt.f64("rate_b_mva", 0.0),
                    rate_c_mva=brt.f64("rate_c_mva", 0.0),
                    angmin=brt.f64("angle_min_rad", -2 * np.pi), angmax=brt.f64("angle_max_rad", 2 * np.pi))

    return Network.create(base_mva=base, name=name, source=folder, buses=buses, loads=loads, shunts=shunts,
                          gens=gens, branches=branches, gencost=gencost)
