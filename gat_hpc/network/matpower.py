"""MATPOWER version 2 case files (``.m``): read and write.

Only the case data is read (``mpc.baseMVA``, ``mpc.bus``, ``mpc.gen``,
``mpc.branch``, optional ``mpc.gencost`` and ``mpc.bus_name``); the file is
never executed. Column meanings follow MATPOWER's ``caseformat``. A bus's Pd/Qd
becomes one load (``load_id`` = its bus number's row), its Gs/Bs one shunt.
"""

from __future__ import annotations

import os
import re

import numpy as np

from gat_hpc.errors import InputError
from gat_hpc.network.model import Network

_ASSIGN = re.compile(r"^\s*mpc\.(\w+)\s*=\s*(.*)$")
_STRING = re.compile(r"'((?:[^']|'')*)'|\"([^\"]*)\"")

# minimum column counts of the tables (MATPOWER caseformat)
_MIN_COLS = {"bus": 13, "gen": 10, "branch": 11}


def _strip_comment(line):
    """Drop a MATLAB ``%`` comment that is not inside a quoted string."""
    if "%" not in line:
        return line
    out, quote = [], None
    for ch in line:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "%":
            break
        out.append(ch)
    return "".join(out)


def _parse_matrix(name, rows, path):
    """rows: list of (line_no, text) of a ``[ ... ]`` block -> 2-D float array."""
    values, ncol, first_line = [], None, None
    for line_no, text in rows:
        for chunk in text.split(";"):
            tok = chunk.replace(",", " ").split()
            if not tok:
                continue
            if ncol is None:
                ncol, first_line = len(tok), line_no
            elif len(tok) != ncol:
                raise InputError(
                    f"{path}:{line_no}: mpc.{name} row has {len(tok)} values, expected {ncol} as on line {first_line}")
            values.extend(tok)
    if ncol is None:
        return np.zeros((0, _MIN_COLS.get(name, 0)))
    try:
        arr = np.array(values, dtype=np.float64)
    except ValueError:
        for line_no, text in rows:
            for t in text.replace(";", " ").replace(",", " ").split():
                try:
                    float(t)
                except ValueError:
                    raise InputError(f"{path}:{line_no}: mpc.{name} holds '{t}', which is not a number") from None
        raise
    return arr.reshape(-1, ncol)


def _parse_cell(rows):
    out = []
    for _, text in rows:
        for m in _STRING.finditer(text):
            out.append(m.group(1).replace("''", "'") if m.group(1) is not None else m.group(2))
    return out


def parse_matpower(text, path="<string>"):
    """Parse MATPOWER case text into a dict of ``mpc`` fields (arrays, scalars, lists of str)."""
    lines = text.splitlines()
    mpc, i, nlines = {}, 0, len(lines)
    while i < nlines:
        line = _strip_comment(lines[i])
        m = _ASSIGN.match(line)
        i += 1
        if not m:
            continue
        name, rhs = m.group(1), m.group(2).strip()
        if rhs.startswith("[") or rhs.startswith("{"):
            close = "]" if rhs[0] == "[" else "}"
            start = i
            body = [(i, rhs[1:])]
            while close not in body[-1][1]:
                if i >= nlines:
                    raise InputError(f"{path}:{start}: mpc.{name} is not closed with '{close}' before the end of the file (truncated?)")
                body.append((i + 1, _strip_comment(lines[i])))
                i += 1
            last_no, last = body[-1]
            body[-1] = (last_no, last[: last.index(close)])
            if close == "]":
                mpc[name] = _parse_matrix(name, body, path)
            else:
                mpc[name] = _parse_cell(body)
        else:
            val = rhs.rstrip(";").strip()
            s = _STRING.fullmatch(val)
            if s:
                mpc[name] = s.group(1) if s.group(1) is not None else s.group(2)
            else:
                try:
                    mpc[name] = float(val)
                except ValueError:
                    raise InputError(f"{path}:{i}: cannot read mpc.{name} = {val!r}") from None
    return mpc


def network_from_mpc(mpc, path="<string>", name=""):
    """Build a :class:`Network` from a parsed ``mpc`` dict (MATPOWER units: MW, MVAr, degrees)."""
    for key in ("baseMVA", "bus", "gen", "branch"):
        if key not in mpc:
            raise InputError(f"{path}: not a MATPOWER case: mpc.{key} is missing")
    version = str(mpc.get("version", "2"))
    if version.strip("'\" ") != "2":
        raise InputError(f"{path}: MATPOWER case format version {version} is not supported; save it as version 2 (MATPOWER's savecase)")
    base = float(mpc["baseMVA"])
    bus, gen, branch = mpc["bus"], mpc["gen"], mpc["branch"]
    for key, arr in (("bus", bus), ("gen", gen), ("branch", branch)):
        if arr.shape[0] and arr.shape[1] < _MIN_COLS[key]:
            raise InputError(f"{path}: mpc.{key} has {arr.shape[1]} columns, at least {_MIN_COLS[key]} expected")
    bus_id = bus[:, 0].astype(np.int64)
    if np.any(bus[:, 0] != bus_id):
        raise InputError(f"{path}: bus numbers must be integers")
    names = mpc.get("bus_name")
    if names is not None and len(names) != len(bus_id):
        raise InputError(f"{path}: mpc.bus_name has {len(names)} entries for {len(bus_id)} buses")
    has_load = (bus[:, 2] != 0) | (bus[:, 3] != 0)
    has_shunt = (bus[:, 4] != 0) | (bus[:, 5] != 0)
    nbr = branch.shape[0]
    if branch.shape[1] >= 13:
        angmin, angmax = np.deg2rad(branch[:, 11]), np.deg2rad(branch[:, 12])
    else:
        angmin, angmax = np.full(nbr, -2 * np.pi), np.full(nbr, 2 * np.pi)
    return Network.create(
        base_mva=base,
        name=name,
        source=path,
        buses=dict(bus_id=bus_id, bus_type=bus[:, 1], vm=bus[:, 7], va=np.deg2rad(bus[:, 8]),
                   base_kv=bus[:, 9], area=bus[:, 6], zone=bus[:, 10], vmax=bus[:, 11], vmin=bus[:, 12],
                   bus_name=names if names is not None else [str(b) for b in bus_id]),
        loads=dict(bus=bus_id[has_load], load_id=np.flatnonzero(has_load) + 1,
                   p=bus[has_load, 2] / base, q=bus[has_load, 3] / base),
        shunts=dict(bus=bus_id[has_shunt], shunt_id=np.flatnonzero(has_shunt) + 1,
                    g=bus[has_shunt, 4] / base, b=bus[has_shunt, 5] / base),
        gens=dict(bus=gen[:, 0].astype(np.int64), pg=gen[:, 1] / base, qg=gen[:, 2] / base,
                  qmax=gen[:, 3] / base, qmin=gen[:, 4] / base, vg=gen[:, 5], mbase=gen[:, 6],
                  status=gen[:, 7] > 0, pmax=gen[:, 8] / base, pmin=gen[:, 9] / base),
        branches=dict(f_bus=branch[:, 0].astype(np.int64), t_bus=branch[:, 1].astype(np.int64),
                      r=branch[:, 2], x=branch[:, 3], b=branch[:, 4],
                      rate_a_mva=branch[:, 5], rate_b_mva=branch[:, 6], rate_c_mva=branch[:, 7],
                      tap=branch[:, 8], shift=np.deg2rad(branch[:, 9]), status=branch[:, 10] > 0,
                      angmin=angmin, angmax=angmax),
        gencost=mpc.get("gencost"),
    )


def read_matpower(path):
    """Read a MATPOWER version 2 ``.m`` case file into a :class:`Network`."""
    from gat_hpc.util.textfile import read_text

    path = os.fspath(path)
    text = read_text(path, "a MATPOWER .m file")
    name = os.path.splitext(os.path.basename(path))[0]
    return network_from_mpc(parse_matpower(text, path), path, name)


def _fmt_rows(arr):
    return "\n".join("\t" + "\t".join(f"{v:.12g}" for v in row) + ";" for row in arr)


def write_matpower(net, path):
    """Write a :class:`Network` as a MATPOWER version 2 case file (loads and shunts summed per bus)."""
    from gat_hpc.util.atomic import atomic_write_text

    base = net.base_mva
    sl = net.bus_load() * base
    ys = net.bus_shunt() * base
    bus = np.column_stack([net.bus_id, net.bus_type, sl.real, sl.imag, ys.real, ys.imag, net.area,
                           net.vm, np.rad2deg(net.va), net.base_kv, net.zone, net.vmax, net.vmin])
    gen = np.column_stack([net.bus_id[net.gen_bus], net.pg * base, net.qg * base, net.qmax * base,
                           net.qmin * base, net.vg, net.mbase, net.gen_status.astype(float),
                           net.pmax * base, net.pmin * base])
    branch = np.column_stack([net.bus_id[net.f_bus], net.bus_id[net.t_bus], net.r, net.x, net.b,
                              net.rate_a_mva, net.rate_b_mva, net.rate_c_mva, net.tap,
                              np.rad2deg(net.shift), net.branch_status.astype(float),
                              np.rad2deg(net.angmin), np.rad2deg(net.angmax)])
    fname = re.sub(r"\W", "_", net.name or "case") or "case"
    parts = [
        f"function mpc = {fname}\n%% written by gat-hpc\nmpc.version = '2';\nmpc.baseMVA = {base:.12g};\n",
        f"%% bus data\nmpc.bus = [\n{_fmt_rows(bus)}\n];\n",
        f"%% generator data\nmpc.gen = [\n{_fmt_rows(gen)}\n];\n",
        f"%% branch data\nmpc.branch = [\n{_fmt_rows(branch)}\n];\n",
    ]
    if net.gencost is not None and len(net.gencost):
        parts.append(f"%% generator cost data\nmpc.gencost = [\n{_fmt_rows(net.gencost)}\n];\n")
    names = "\n".join("\t'" + str(s).replace("'", "''") + "';" for s in net.bus_name)
    parts.append(f"mpc.bus_name = {{\n{names}\n}};\n")
    atomic_write_text(path, "".join(parts))
