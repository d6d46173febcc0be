"""MATPOWER change tables (the ``apply_changes`` format): hourly scenarios and contingencies.

A change table is a matrix of 7 columns, one change per row::

    label  prob  table  row  col  chgtype  newval

Rows sharing a label form one change set (one hour of a scenario table, one contingency
of a contingency table) and are applied in table order. Files such as
``scenarios_ACTIVSg2000.m`` and ``contab_ACTIVSg2000.m`` write the codes by name
(``CT_TAREALOAD``, ``BR_STATUS``, ...); the names are MATPOWER's ``idx_ct``, ``idx_bus``,
``idx_gen``, ``idx_brch`` and ``idx_cost`` constants. The file is never executed.

- :func:`read_change_table` parses a file into a :class:`ChangeTable`;
- :class:`ScenarioProfile` turns a scenario table into hourly per-bus loads (the interface of
  :class:`gat_hpc.studies.profiles.Profile`), following ``apply_changes``/``scale_load``;
- :func:`contingencies_from_table`, :func:`contingencies_from_csv` and
  :func:`contingencies_all_branches` build :class:`Contingencies` (outaged branches and
  generators per contingency, 0-based internal indices).

Units: table values are MATPOWER's (MW, MVAr); loads handed to solvers are p.u.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from gat_hpc.errors import InputError
from gat_hpc.network.model import NONE

# ----------------------------------------------------------------------- constants
# Columns of a change table (0-based here; MATPOWER's CT_LABEL..CT_NEWVAL are 1..7).
LABEL, PROB, TABLE, ROW, COL, CHGTYPE, NEWVAL = range(7)
N_COLUMNS = 7

# Table codes (CT_TABLE column), change types (CT_CHGTYPE) and load codes (CT_COL of load rows).
CT_TBUS, CT_TGEN, CT_TBRCH, CT_TAREABUS, CT_TAREAGEN, CT_TAREABRCH = 1, 2, 3, 4, 5, 6
CT_TLOAD, CT_TAREALOAD, CT_TGENCOST, CT_TAREAGENCOST = 7, 8, 9, 10
CT_REP, CT_REL, CT_ADD = 1, 2, 3
CT_LOAD_ALL_PQ, CT_LOAD_FIX_PQ, CT_LOAD_DIS_PQ, CT_LOAD_ALL_P, CT_LOAD_FIX_P, CT_LOAD_DIS_P = 1, 2, 3, 4, 5, 6

_IDX_CT = {
    "CT_LABEL": 1, "CT_PROB": 2, "CT_TABLE": 3, "CT_ROW": 4, "CT_COL": 5, "CT_CHGTYPE": 6, "CT_NEWVAL": 7,
    "CT_TBUS": 1, "CT_TGEN": 2, "CT_TBRCH": 3, "CT_TAREABUS": 4, "CT_TAREAGEN": 5, "CT_TAREABRCH": 6,
    "CT_TLOAD": 7, "CT_TAREALOAD": 8, "CT_TGENCOST": 9, "CT_TAREAGENCOST": 10,
    "CT_REP": 1, "CT_REL": 2, "CT_ADD": 3,
    "CT_LOAD_ALL_PQ": 1, "CT_LOAD_FIX_PQ": 2, "CT_LOAD_DIS_PQ": 3,
    "CT_LOAD_ALL_P": 4, "CT_LOAD_FIX_P": 5, "CT_LOAD_DIS_P": 6,
    "CT_MODCOST_F": -1, "CT_MODCOST_X": -2,
}
_BUS_TYPES = {"PQ": 1, "PV": 2, "REF": 3, "NONE": 4}
_BUS_COLS = {
    "BUS_I": 1, "BUS_TYPE": 2, "PD": 3, "QD": 4, "GS": 5, "BS": 6, "BUS_AREA": 7, "VM": 8, "VA": 9,
    "BASE_KV": 10, "ZONE": 11, "VMAX": 12, "VMIN": 13, "LAM_P": 14, "LAM_Q": 15, "MU_VMAX": 16, "MU_VMIN": 17,
}
_GEN_COLS = {
    "GEN_BUS": 1, "PG": 2, "QG": 3, "QMAX": 4, "QMIN": 5, "VG": 6, "MBASE": 7, "GEN_STATUS": 8, "PMAX": 9,
    "PMIN": 10, "PC1": 11, "PC2": 12, "QC1MIN": 13, "QC1MAX": 14, "QC2MIN": 15, "QC2MAX": 16, "RAMP_AGC": 17,
    "RAMP_10": 18, "RAMP_30": 19, "RAMP_Q": 20, "APF": 21, "MU_PMAX": 22, "MU_PMIN": 23, "MU_QMAX": 24, "MU_QMIN": 25,
}
_BRANCH_COLS = {
    "F_BUS": 1, "T_BUS": 2, "BR_R": 3, "BR_X": 4, "BR_B": 5, "RATE_A": 6, "RATE_B": 7, "RATE_C": 8, "TAP": 9,
    "SHIFT": 10, "BR_STATUS": 11, "ANGMIN": 12, "ANGMAX": 13, "PF": 14, "QF": 15, "PT": 16, "QT": 17,
    "MU_SF": 18, "MU_ST": 19, "MU_ANGMIN": 20, "MU_ANGMAX": 21,
}
_COST_COLS = {"PW_LINEAR": 1, "POLYNOMIAL": 2, "MODEL": 1, "STARTUP": 2, "SHUTDOWN": 3, "NCOST": 4, "COST": 5}

PD, QD = _BUS_COLS["PD"], _BUS_COLS["QD"]
PG, GEN_STATUS, PMAX, PMIN = _GEN_COLS["PG"], _GEN_COLS["GEN_STATUS"], _GEN_COLS["PMAX"], _GEN_COLS["PMIN"]
BR_STATUS = _BRANCH_COLS["BR_STATUS"]

# Every name ``define_constants`` makes visible, and its negation (load codes may be negated).
_NAMES = {}
for _group in (_IDX_CT, _BUS_TYPES, _BUS_COLS, _GEN_COLS, _BRANCH_COLS, _COST_COLS):
    _NAMES.update(_group)
_NAMES.update({"-" + k: -v for k, v in list(_NAMES.items())})

_TABLE_NAMES = {v: k for k, v in _IDX_CT.items() if k.startswith("CT_T")}
_CHG_NAMES = {CT_REP: "CT_REP", CT_REL: "CT_REL", CT_ADD: "CT_ADD"}
_LOAD_NAMES = {v: k for k, v in _IDX_CT.items() if k.startswith("CT_LOAD_")}
_COL_NAMES = {
    CT_TBUS: {v: k for k, v in _BUS_COLS.items()}, CT_TAREABUS: {v: k for k, v in _BUS_COLS.items()},
    CT_TGEN: {v: k for k, v in _GEN_COLS.items()}, CT_TAREAGEN: {v: k for k, v in _GEN_COLS.items()},
    CT_TBRCH: {v: k for k, v in _BRANCH_COLS.items()}, CT_TAREABRCH: {v: k for k, v in _BRANCH_COLS.items()},
    CT_TLOAD: _LOAD_NAMES, CT_TAREALOAD: _LOAD_NAMES,
}

_OPEN = re.compile(r"^\s*[A-Za-z]\w*(?:\.\w+)*\s*=\s*\[")


# ----------------------------------------------------------------------- the table
@dataclass
class ChangeTable:
    """The rows of a change table as numpy arrays, grouped by label.

    ``label``, ``table``, ``row``, ``col``, ``chgtype`` are int64 and ``prob``, ``newval``
    float64, one entry per row; ``line`` is each row's line number in ``path``.
    ``labels`` lists the labels in order of first appearance; the rows of ``labels[j]`` are
    ``start[j]:stop[j]`` (a label's rows are contiguous, checked on reading).
    """

    path: str
    label: np.ndarray
    prob: np.ndarray
    table: np.ndarray
    row: np.ndarray
    col: np.ndarray
    chgtype: np.ndarray
    newval: np.ndarray
    line: np.ndarray
    labels: np.ndarray
    start: np.ndarray
    stop: np.ndarray

    def __len__(self):
        return len(self.label)

    def rows(self, j):
        """Row range (a slice) of the j-th label."""
        return slice(int(self.start[j]), int(self.stop[j]))

    def where(self, i):
        """'path:line' of row i, for messages."""
        return f"{self.path}:{int(self.line[i])}"

    def describe(self, i):
        """Row i written with MATPOWER's names, e.g. 'CT_TBRCH 12 BR_STATUS CT_REP 0'."""
        tbl, col, typ = int(self.table[i]), int(self.col[i]), int(self.chgtype[i])
        col_name = _COL_NAMES.get(tbl, {}).get(abs(col))
        if col_name is not None and col < 0:
            col_name = "-" + col_name
        return (f"{_TABLE_NAMES.get(tbl, str(tbl))} {int(self.row[i])} {col_name or col} "
                f"{_CHG_NAMES.get(typ, str(typ))} {self.newval[i]:g}")


def _read_text(path):
    from gat_hpc.util.textfile import read_text

    return read_text(path, "a MATPOWER change table (.m)")


def read_change_table(path):
    """Read a MATPOWER change-table file (``chgtab = [ ... ];``) into a :class:`ChangeTable`."""
    path = os.fspath(path)
    return parse_change_table(_read_text(path), path)


def _split_rows(lines, first, path, open_line):
    """Tokens of the matrix body starting at line index ``first`` (its text after '[').

    Returns (tokens, tokens per row, line number per row). Rows end at ';' or at the end of
    a line unless the line ends with MATLAB's '...' continuation.
    """
    tokens, counts, row_lines = [], [], []
    pending, pending_line = 0, 0
    for no in range(first, len(lines)):
        code = lines[no]
        if no == first:
            code = code[code.index("[") + 1:]
        if "%" in code:
            code = code[: code.index("%")]
        closed = "]" in code
        if closed:
            code = code[: code.index("]")]
        code = code.rstrip()
        cont = code.endswith("...")
        if cont:
            code = code[:-3]
        if "," in code:
            code = code.replace(",", " ")
        parts = code.split(";")
        last = len(parts) - 1
        for j, part in enumerate(parts):
            tok = part.split()
            if tok:
                if not pending:
                    pending_line = no + 1
                tokens.extend(tok)
                pending += len(tok)
            if pending and (j < last or not cont):
                counts.append(pending)
                row_lines.append(pending_line)
                pending = 0
        if closed:
            return tokens, counts, row_lines
    raise InputError(f"{path}:{open_line}: the change table opened here is not closed with '];' "
                     "before the end of the file (truncated?)")


def parse_change_table(text, path="<string>"):
    """Parse change-table text (see :func:`read_change_table`)."""
    lines = text.splitlines()
    first = None
    for no, line in enumerate(lines):
        code = line.split("%", 1)[0]
        if _OPEN.match(code):
            first = no
            break
    if first is None:
        raise InputError(f"{path}: no change table found (expected a matrix such as 'chgtab = [ ... ];')")
    tokens, counts, row_lines = _split_rows(lines, first, path, first + 1)
    if not counts:
        raise InputError(f"{path}:{first + 1}: the change table has no rows")
    counts = np.asarray(counts)
    line = np.asarray(row_lines, dtype=np.int64)
    bad = np.flatnonzero(counts != N_COLUMNS)
    if len(bad):
        k = bad[0]
        raise InputError(f"{path}:{line[k]}: change-table row has {counts[k]} entries, expected {N_COLUMNS} "
                         "(label prob table row col chgtype newval)")
    try:
        values = np.array([_NAMES.get(t, t) for t in tokens], dtype=np.float64)
    except ValueError:
        for k, t in enumerate(tokens):
            if t in _NAMES:
                continue
            try:
                float(t)
            except ValueError:
                raise InputError(f"{path}:{line[k // N_COLUMNS]}: '{t}' is neither a number nor a MATPOWER constant "
                                 "(such as CT_TAREALOAD, CT_LOAD_ALL_P, CT_REP, PD, GEN_STATUS, BR_STATUS)") from None
        raise
    m = values.reshape(-1, N_COLUMNS)
    bad = np.flatnonzero(~np.all(np.isfinite(m), axis=1))
    if len(bad):
        raise InputError(f"{path}:{line[bad[0]]}: change-table row holds a value that is not a finite number")
    codes = m[:, [LABEL, TABLE, ROW, COL, CHGTYPE]]
    bad = np.flatnonzero(np.any(codes != np.round(codes), axis=1))
    if len(bad):
        raise InputError(f"{path}:{line[bad[0]]}: label, table, row, column and change type must be integers")
    ints = codes.astype(np.int64)
    label = ints[:, 0]
    # Blocks of consecutive equal labels; a label must form one block.
    edges = np.flatnonzero(label[1:] != label[:-1]) + 1
    start = np.concatenate(([0], edges))
    stop = np.concatenate((edges, [len(label)]))
    labels = label[start]
    uniq, inverse, n_blocks = np.unique(labels, return_inverse=True, return_counts=True)
    if np.any(n_blocks > 1):
        lab = uniq[n_blocks > 1][0]
        blocks = np.flatnonzero(labels == lab)
        raise InputError(f"{path}:{line[start[blocks[1]]]}: label {lab} appears again after other labels "
                         f"(first on line {line[start[blocks[0]]]}); keep each label's rows together")
    return ChangeTable(path=path, label=label, prob=m[:, PROB].copy(), table=ints[:, 1], row=ints[:, 2],
                       col=ints[:, 3], chgtype=ints[:, 4], newval=m[:, NEWVAL].copy(), line=line,
                       labels=labels, start=start, stop=stop)


# ----------------------------------------------------------------------- scenarios
@dataclass
class GenChanges:
    """Generator data after a scenario's changes (all generators, p.u. on base MVA)."""

    pg: np.ndarray
    pmax: np.ndarray
    pmin: np.ndarray
    status: np.ndarray  # bool


_LOAD_TABLES = (CT_TLOAD, CT_TAREALOAD)
_BUS_TABLES = (CT_TBUS, CT_TAREABUS)
_GEN_TABLES = (CT_TGEN, CT_TAREAGEN)
_SCENARIO_BUS_COLS = (PD, QD)
_SCENARIO_GEN_COLS = (PG, GEN_STATUS, PMAX, PMIN)


class ScenarioProfile:
    """Hourly loads (and generator changes) from a MATPOWER scenario change table.

    Each label is an hour. ``bus_load(k)`` applies the k-th hour's rows to the case, in
    table order, as MATPOWER's ``apply_changes`` does:

    - ``CT_TAREALOAD`` (area ``row``) and ``CT_TLOAD`` (bus row ``row``, 1-based; 0 = all
      buses) scale the loads there: ``CT_REP`` to a new total MW, ``CT_REL`` by a factor,
      ``CT_ADD`` to the total plus a MW amount. ``*_P`` codes scale real power only,
      ``*_PQ`` reactive power by the same factor. A gat-hpc network has no dispatchable
      loads, so ``ALL`` and ``FIX`` codes are the same and ``DIS`` codes are refused.
    - ``CT_TBUS``/``CT_TAREABUS`` change the PD or QD column of one bus (0 = all) or of an
      area's buses; ``CT_TGEN``/``CT_TAREAGEN`` change PG, PMAX, PMIN or GEN_STATUS.

    ``areas`` are the per-bus area numbers area-wide rows refer to (default ``net.area``;
    ``scenarios_ACTIVSg200`` refers to zones: pass ``net.zone``). Hours are sorted; ``k`` is
    an index into ``hours``. Rows the study cannot apply are reported when the profile is
    built; a change that cannot be made (a zero load given a non-zero total) when its hour
    is run.
    """

    kind = "scenarios"

    def __init__(self, table, net, areas=None):
        if not isinstance(table, ChangeTable):
            table = read_change_table(table)
        self.table = table
        self.path = table.path
        self.net = net
        labels = table.labels
        bad = np.flatnonzero(labels <= 0)
        if len(bad):
            j = bad[0]
            raise InputError(f"{table.where(table.start[j])}: label {labels[j]} cannot be an hour: "
                             "scenario labels must be positive integers")
        self._order = np.argsort(labels, kind="stable")
        self.hours = labels[self._order]
        self.case_load = net.bus_load()
        self._areas_given = areas is not None
        self._area = np.asarray(net.area if areas is None else areas, dtype=np.int64)
        if self._area.shape != (net.n_bus,):
            raise InputError(f"{self.path}: areas must give one number per bus ({net.n_bus})")
        self._isolated = net.bus_type == NONE
        self._zones = {}
        self._check_rows()
        self._label_has_gen = np.add.reduceat(np.isin(table.table, _GEN_TABLES).astype(np.int64), table.start) > 0

    # -- structure, checked once for every row
    def _check_rows(self):
        t, net = self.table, self.net
        tbl, row, col, typ = t.table, t.row, t.col, t.chgtype

        load = np.isin(tbl, _LOAD_TABLES)
        bus = np.isin(tbl, _BUS_TABLES)
        gen = np.isin(tbl, _GEN_TABLES)
        code = np.abs(col)
        one_bus = (tbl == CT_TLOAD) | (tbl == CT_TBUS)
        area_rows = np.isin(tbl, (CT_TAREALOAD, CT_TAREABUS, CT_TAREAGEN))
        areas = np.unique(self._area)
        missing = area_rows & ~np.isin(row, areas)
        hint = ""
        if not self._areas_given and np.all(np.isin(row[area_rows], net.zone)):
            # scenarios_ACTIVSg200 numbers zones, not areas (its header says so)
            hint = "; the table's numbers are all zones of the case, so it may refer to zones (use the zones as areas)"
        checks = [
            (~(load | bus | gen), "a scenario may change loads (CT_TLOAD, CT_TAREALOAD), bus PD/QD (CT_TBUS, "
                                  "CT_TAREABUS) and generators (CT_TGEN, CT_TAREAGEN); branch outages belong in a "
                                  "contingency table"),
            (~np.isin(typ, (CT_REP, CT_REL, CT_ADD)), "the change type must be CT_REP (1), CT_REL (2) or CT_ADD (3)"),
            (load & ~np.isin(code, tuple(_LOAD_NAMES)),
             "the column of a load change must be a load code CT_LOAD_ALL_PQ (1) ... CT_LOAD_DIS_P (6)"),
            (load & np.isin(code, (CT_LOAD_DIS_PQ, CT_LOAD_DIS_P)),
             "dispatchable loads (CT_LOAD_DIS_*) are not modelled in gat-hpc networks; use CT_LOAD_ALL_* or CT_LOAD_FIX_*"),
            (bus & ~np.isin(col, _SCENARIO_BUS_COLS), "a scenario may change the PD and QD columns of the bus table only"),
            (gen & ~np.isin(col, _SCENARIO_GEN_COLS),
             "a scenario may change the PG, PMAX, PMIN and GEN_STATUS columns of the gen table only"),
            (one_bus & ((row < 0) | (row > net.n_bus)),
             f"bus row out of range: the case has {net.n_bus} buses (rows 1..n, 0 = all)"),
            ((tbl == CT_TGEN) & ((row < 0) | (row > net.n_gen)),
             f"generator row out of range: the case has {net.n_gen} generators (rows 1..n, 0 = all)"),
            (missing, f"no bus of the case is in that area (areas: {', '.join(map(str, areas))}){hint}"),
        ]
        for bad, why in checks:
            if np.any(bad):
                i = int(np.flatnonzero(bad)[0])
                raise InputError(f"{t.where(i)}: hour {t.label[i]}: '{t.describe(i)}': {why}")

    # -- where a row applies
    def _buses(self, tbl, row):
        """Bus indices a load or bus row applies to (cached)."""
        key = (tbl in (CT_TAREALOAD, CT_TAREABUS), row)
        idx = self._zones.get(key)
        if idx is None:
            if key[0]:
                idx = np.flatnonzero(self._area == row)
            elif row == 0:
                idx = np.arange(self.net.n_bus)
            else:
                idx = np.array([row - 1])
            self._zones[key] = idx
        return idx

    def _gens(self, tbl, row):
        net = self.net
        if tbl == CT_TAREAGEN:
            return np.flatnonzero(self._area[net.gen_bus] == row)
        return np.arange(net.n_gen) if row == 0 else np.array([row - 1])

    @staticmethod
    def _change(values, idx, typ, val):
        if typ == CT_REP:
            values[idx] = val
        elif typ == CT_REL:
            values[idx] *= val
        else:
            values[idx] += val

    def _apply(self, k, gens):
        """Per-bus P, Q (p.u.) of the k-th hour and, with ``gens``, the changed gen columns (p.u.).

        Table values are MW/MVAr; they are divided by base MVA here so that buses a change
        does not touch keep the case's values bit for bit.
        """
        t, net = self.table, self.net
        base = net.base_mva
        j = self._order[k]
        p, q = self.case_load.real.copy(), self.case_load.imag.copy()
        g = None
        if gens:
            g = {PG: net.pg.copy(), PMAX: net.pmax.copy(), PMIN: net.pmin.copy(),
                 GEN_STATUS: net.gen_status.astype(np.float64)}
        for i in range(t.start[j], t.stop[j]):
            tbl, row, col, typ, val = int(t.table[i]), int(t.row[i]), int(t.col[i]), int(t.chgtype[i]), float(t.newval[i])
            if typ != CT_REL and not (tbl in _GEN_TABLES and col == GEN_STATUS):
                val /= base
            if tbl in _LOAD_TABLES:
                idx = self._buses(tbl, row)
                if typ == CT_REL:
                    factor = val
                else:
                    total = p[idx].sum()
                    if typ == CT_REP:
                        target = val
                    else:
                        # MATPOWER takes the old total for CT_ADD from total_load, which leaves
                        # out isolated buses, but scales against the sum over all of them.
                        target = p[idx[~self._isolated[idx]]].sum() + val
                    if total != 0:
                        factor = target / total
                    elif target == 0:
                        factor = 1.0
                    else:
                        where = f"area {row}" if tbl == CT_TAREALOAD else ("all buses" if row == 0 else
                                                                           f"bus {self.net.bus_id[row - 1]}")
                        raise InputError(f"{t.where(i)}: hour {t.label[i]}: {where} has no real load to scale, "
                                         f"so its total cannot become {target * base:g} MW")
                p[idx] *= factor
                if abs(col) in (CT_LOAD_ALL_PQ, CT_LOAD_FIX_PQ):
                    q[idx] *= factor
            elif tbl in _BUS_TABLES:
                self._change(p if col == PD else q, self._buses(tbl, row), typ, val)
            elif g is not None:
                self._change(g[col], self._gens(tbl, row), typ, val)
        return p, q, g

    # -- the Profile interface
    def bus_load(self, k):
        """Complex load per bus (p.u.) in the k-th hour (0-based index into ``hours``)."""
        p, q, _ = self._apply(k, gens=False)
        return p + 1j * q

    def gen_changes(self, k):
        """Generator data after the k-th hour's changes (:class:`GenChanges`), or None if it changes none."""
        if not self._label_has_gen[self._order[k]]:
            return None
        _, _, g = self._apply(k, gens=True)
        return GenChanges(pg=g[PG], pmax=g[PMAX], pmin=g[PMIN], status=g[GEN_STATUS] > 0)

    def select(self, hours):
        """Indices of the profile hours within [a, b) (``hours`` = (a, b) or None for all)."""
        if hours is None:
            return np.arange(len(self.hours))
        a, b = hours
        return np.flatnonzero((self.hours >= a) & (self.hours < b))


# ----------------------------------------------------------------------- contingencies
@dataclass
class Contingencies:
    """Outage sets: per contingency the outaged branches and generators (0-based indices).

    ``labels`` are the user's contingency labels (int64); ``kind`` is 'branch' or 'gen' for
    a single outage and 'multi' for several elements; ``already_out`` flags contingencies
    naming an element that is out of service in the case (kept, so tables line up).
    """

    labels: np.ndarray
    branches: list
    gens: list
    kind: np.ndarray
    already_out: np.ndarray
    source: str = ""

    def __len__(self):
        return len(self.labels)

    def single_branch(self):
        """(positions, branch indices) of the contingencies that outage exactly one branch."""
        pos = np.flatnonzero(self.kind == "branch")
        idx = np.array([self.branches[i][0] for i in pos], dtype=np.int64)
        return pos, idx


def _group(n, owner, values):
    """Split ``values`` by ``owner`` (0..n-1, rows already in owner order) into n sorted unique arrays."""
    ptr = np.concatenate(([0], np.cumsum(np.bincount(owner, minlength=n))))
    out = []
    for c in range(n):
        v = values[ptr[c]:ptr[c + 1]]
        out.append(np.unique(v) if len(v) > 1 else v)
    return out


def already_out(net, branches, gens):
    """Per contingency (its branch and generator indices): does it name an element that is
    out of service in the case?"""
    live_br = net.branch_in_service()
    return np.array([bool(np.any(~live_br[np.asarray(b, dtype=np.int64)])
                          or np.any(~net.gen_status[np.asarray(g, dtype=np.int64)])) for b, g in zip(branches, gens)],
                    dtype=bool)


def _make(labels, branches, gens, net, source):
    nb = np.array([len(b) for b in branches], dtype=np.int64)
    ng = np.array([len(g) for g in gens], dtype=np.int64)
    kind = np.where(nb + ng > 1, "multi", np.where(nb == 1, "branch", "gen")).astype(object)
    return Contingencies(labels=np.asarray(labels, dtype=np.int64), branches=branches, gens=gens,
                         kind=kind, already_out=already_out(net, branches, gens), source=source)


def contingencies_from_table(table, net):
    """Contingencies from a MATPOWER contingency table (``contab_*.m``).

    Accepts rows ``CT_TBRCH r BR_STATUS CT_REP 0`` (branch row r out) and
    ``CT_TGEN r GEN_STATUS CT_REP 0`` (generator row r out); several rows under one label
    make a multi-element contingency. ``table`` is a :class:`ChangeTable` or a path.
    """
    if not isinstance(table, ChangeTable):
        table = read_change_table(table)
    t = table
    is_br = (t.table == CT_TBRCH) & (t.col == BR_STATUS)
    is_gen = (t.table == CT_TGEN) & (t.col == GEN_STATUS)
    ok = (is_br | is_gen) & (t.chgtype == CT_REP) & (t.newval == 0)
    if not np.all(ok):
        i = int(np.flatnonzero(~ok)[0])
        raise InputError(f"{t.where(i)}: contingency label {t.label[i]}: '{t.describe(i)}' is not an outage; a "
                         "contingency table holds rows 'CT_TBRCH r BR_STATUS CT_REP 0' and 'CT_TGEN r GEN_STATUS CT_REP 0'")
    for mask, n, what in ((is_br, net.n_branch, "branch"), (is_gen, net.n_gen, "generator")):
        bad = mask & ((t.row < 1) | (t.row > n))
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            plural = "branches" if what == "branch" else "generators"
            raise InputError(f"{t.where(i)}: contingency label {t.label[i]} names {what} {t.row[i]}, "
                             f"the case has {n} {plural}" + (" (row 0, 'all', is not an outage)" if t.row[i] == 0 else ""))
    bad = np.flatnonzero(t.labels <= 0)
    if len(bad):
        raise InputError(f"{t.where(t.start[bad[0]])}: contingency label {t.labels[bad[0]]} must be a positive integer")
    n = len(t.labels)
    owner = np.repeat(np.arange(n), t.stop - t.start)
    branches = _group(n, owner[is_br], t.row[is_br] - 1)
    gens = _group(n, owner[is_gen], t.row[is_gen] - 1)
    return _make(t.labels, branches, gens, net, t.path)


def contingencies_all_branches(net):
    """One contingency per in-service branch, labelled with its ``branch_id``."""
    idx = np.flatnonzero(net.branch_in_service())
    empty = np.zeros(0, dtype=np.int64)
    return Contingencies(labels=net.branch_id[idx].astype(np.int64), branches=[idx[i:i + 1] for i in range(len(idx))],
                         gens=[empty] * len(idx), kind=np.full(len(idx), "branch", dtype=object),
                         already_out=np.zeros(len(idx), dtype=bool), source="all")


def _int_column(t, name, path, allow_null):
    """Integer column of a pyarrow table as (int64 values, null mask); rows are reported 1-based after the header."""
    raw = t[name].to_numpy(zero_copy_only=False)
    try:
        vals = raw.astype(np.float64) if raw.dtype != object else np.array(
            [np.nan if v is None or v == "" else v for v in raw], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{path}: column '{name}' must hold integers") from None
    null = np.isnan(vals)
    if np.any(null) and not allow_null:
        raise InputError(f"{path}:{int(np.flatnonzero(null)[0]) + 2}: column '{name}' is empty")
    bad = ~null & (vals != np.round(vals))
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}:{k + 2}: column '{name}' must hold integers, got {raw[k]}")
    return np.where(null, 0, vals).astype(np.int64), null


def contingencies_from_csv(path, net):
    """Contingencies from a CSV with columns ``label`` and ``branch_id`` and/or ``gen_id``.

    Each row names one element (with both columns, exactly one of them is filled); rows
    sharing a label make one multi-element contingency. Labels keep their order of first
    appearance.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        t = pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot read the contingency table ({exc})") from None
    cols = t.column_names
    if "label" not in cols or not ({"branch_id", "gen_id"} & set(cols)):
        raise InputError(f"{path}: a contingency CSV needs columns 'label' and 'branch_id' and/or 'gen_id' "
                         f"(has: {', '.join(cols)})")
    if t.num_rows == 0:
        raise InputError(f"{path}: the contingency table has no rows")
    both = "branch_id" in cols and "gen_id" in cols
    label, _ = _int_column(t, "label", path, allow_null=False)
    if np.any(label <= 0):
        k = int(np.flatnonzero(label <= 0)[0])
        raise InputError(f"{path}:{k + 2}: contingency label {label[k]} must be a positive integer")
    n_rows = len(label)
    br, br_null = (_int_column(t, "branch_id", path, both) if "branch_id" in cols
                   else (np.zeros(n_rows, np.int64), np.ones(n_rows, bool)))
    gn, gn_null = (_int_column(t, "gen_id", path, both) if "gen_id" in cols
                   else (np.zeros(n_rows, np.int64), np.ones(n_rows, bool)))
    if both and np.any(br_null == gn_null):
        k = int(np.flatnonzero(br_null == gn_null)[0])
        raise InputError(f"{path}:{k + 2}: give exactly one of branch_id and gen_id in each row")
    is_br, is_gen = ~br_null, ~gn_null

    def to_index(ids, mask, known, what, plural):
        idx = np.zeros(len(ids), dtype=np.int64)
        found = np.zeros(len(ids), dtype=bool)
        if len(known):
            order = np.argsort(known)
            pos = np.minimum(np.searchsorted(known[order], ids), len(known) - 1)
            idx, found = order[pos], known[order][pos] == ids
        bad = mask & ~found
        if np.any(bad):
            k = int(np.flatnonzero(bad)[0])
            raise InputError(f"{path}:{k + 2}: contingency label {label[k]} names {what} {ids[k]}, "
                             f"the case has {len(known)} {plural}")
        return idx

    bidx = to_index(br, is_br, net.branch_id, "branch", "branches")
    gidx = to_index(gn, is_gen, net.gen_id, "generator", "generators")
    uniq, first, inverse = np.unique(label, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))  # label -> position by first appearance
    owner = rank[inverse]
    srt = np.argsort(owner, kind="stable")
    n = len(uniq)
    branches = _group(n, owner[srt][is_br[srt]], bidx[srt][is_br[srt]])
    gens = _group(n, owner[srt][is_gen[srt]], gidx[srt][is_gen[srt]])
    labels = uniq[np.argsort(first)]
    return _make(labels, branches, gens, net, path)


def read_contingencies(spec, net):
    """Contingencies from ``--contingencies``: 'all', a MATPOWER ``.m`` table or a ``.csv``."""
    spec = os.fspath(spec)
    if spec == "all":
        return contingencies_all_branches(net)
    if spec.lower().endswith(".csv"):
        return contingencies_from_csv(spec, net)
    return contingencies_from_table(read_change_table(spec), net)
