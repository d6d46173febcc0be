"""PSS/E RAW revision 33 case files (``.raw``): read and write.

Reading
-------
The case identification record must say ``IC = 0`` (a base case) and
``REV = 33``; other revisions are refused with a message saying so, since their
record layouts differ. SBASE becomes ``base_mva``; the two title lines are not
kept (``name`` is the file's stem). Sections are read in the order of the
revision 33 layout, each ended by a record starting with ``0``; ``Q`` ends the
data. Fields may be separated by commas or blanks; an empty field between two
commas takes the PSS/E default; text after ``/`` is a comment; quoted strings
(names, ids) may hold blanks, commas and slashes. Reading stops after the
switched shunt section, so the sections after it (GNE devices, induction
machines) are not looked at.

What becomes of each section:

* Buses: ``bus_id`` = I (the PSS/E bus number), NAME, BASKV, IDE as the bus type
  (1 PQ, 2 PV, 3 slack, 4 isolated, as in MATPOWER), AREA, ZONE, VM, VA
  (degrees -> radians), NVHI/NVLO as ``vmax``/``vmin``.
* Loads: one load per record with ``p = PL + IP`` and ``q = QL + IQ``: the
  constant-current part is taken at 1 p.u. voltage and added to the
  constant-power part. The constant-admittance part YP + jYQ (MW/MVAr at 1 p.u.,
  YQ positive for capacitive) becomes a shunt at the load's bus with the load's
  status. Status is STATUS > 0.
* Fixed shunts: GL + jBL (MW/MVAr at 1 p.u.) as a shunt.
* Generators: PG, QG, QT/QB as ``qmax``/``qmin``, VS as ``vg``, MBASE, STAT,
  PT/PB as ``pmax``/``pmin``. The regulated remote bus IREG and the step-up
  transformer data (ZR, ZX, RT, XT, GTAP) are not used: a generator regulates
  its own bus.
* Non-transformer branches: R, X, B (p.u. on system base), RATEA/B/C (MVA), ST.
  J < 0 (metered end marker) is read as |J|. The line-end shunts GI + jBI and
  GJ + jBJ become bus shunts at I and J with the branch's status (so they do
  not follow the branch when a study later switches it out).
* Two-winding transformers (all four records): from bus = winding 1 (I), to
  bus = winding 2 (J). The winding ratios t1, t2 in p.u. of the bus base
  voltages are WINDVk for CW = 1, WINDVk / BASKV for CW = 2 (kV), and
  WINDVk * NOMVk / BASKV for CW = 3 (NOMVk = 0 means the bus base voltage);
  ``tap = t1 / t2`` and ``shift = ANG1`` (MATPOWER's convention, the
  impedance is not rescaled by t2**2, as in MATPOWER's ``psse2mpc``). R1-2,
  X1-2 are taken as given for CZ = 1 (p.u. on system base); for CZ = 2 they are
  p.u. on SBASE1-2 and the winding voltage base NOMV1 (or the bus base when
  NOMV1 = 0) and are converted with ``(SBASE / SBASE1-2) * (NOMV1 / BASKV_I)**2``;
  for CZ = 3 R1-2 is the load loss in W and X1-2 the impedance magnitude on that
  base (R = loss / 1e6 / SBASE1-2, X = sqrt(|Z|**2 - R**2)), then as CZ = 2.
  The magnetizing admittance MAG1 + jMAG2 (CM = 1: p.u. on system base; CM = 2:
  no-load loss in W and exciting current in p.u. on SBASE1-2 / NOMV1, the
  susceptance taken as inductive) becomes a shunt at winding 1's bus with the
  transformer's status. RATA1/B1/C1 are the ratings. Tap and phase-shift
  controls (COD1 and the limits) are not used: the ratio in the file is fixed.
* Three-winding transformers use the star (T) model: each gets a new star bus
  numbered after the largest bus number in the file (max + 1, max + 2, ... in
  file order), with VMSTAR/ANSTAR as its voltage, winding 1's base kV, area and
  zone, and type 4 (isolated) when the transformer is off. The three pair
  impedances, each converted with its own winding's CZ base (Z12 with SBASE1-2
  and winding 1, Z23 with SBASE2-3 and winding 2, Z31 with SBASE3-1 and
  winding 3), give the star impedances Z1 = (Z12 + Z31 - Z23) / 2 and so on;
  each winding k is a branch from its bus to the star bus with ``tap = tk``,
  ``shift = ANGk`` and ratings RATAk/B/C. STAT 0 takes all three out, 2, 3 and
  4 take out winding 2, 3 and 1 respectively.
* Switched shunts: the initial susceptance BINIT (MVAr at 1 p.u.) is taken as a
  fixed shunt at bus I with status STAT; the switching steps and voltage
  control are not used.
* Areas, two-terminal and VSC DC lines, impedance correction tables,
  multi-terminal DC, multi-section line groupings, zones, inter-area
  transfers, owners and FACTS devices are skipped. DC lines and FACTS devices
  carry power in a PSS/E solution, so a case that has them will not solve to
  the same flows here.

Ids and order: ``bus_id`` is the PSS/E bus number. ``gen_id`` and ``load_id``
are 1-based record numbers. The branch table is the non-transformer branches in
file order followed by the transformers in file order, a three-winding
transformer giving three consecutive branches (windings 1, 2, 3); ``branch_id``
is the 1-based row in that table. The shunt table holds, in this order: fixed
shunts, switched shunts, load admittances, line-end shunts, transformer
magnetizing admittances; ``shunt_id`` is the 1-based row.

Writing
-------
:func:`write_raw` writes buses, loads (PL/QL only), fixed shunts, generators,
branches with ``tap == 0`` and ``shift == 0`` as non-transformer branches and
the others as two-winding transformers with CW = CZ = CM = 1 (WINDV1 = tap,
WINDV2 = 1, ANG1 = shift), then empty sections and ``Q``. RAW has no place for
line charging on a transformer, so a transformer's ``b`` is written in the
form that gives the same admittance matrix: MAG2 = b / (2 tap**2) at winding 1
and a fixed shunt of b / 2 at winding 2 (id ``'T'`` + a number), both with the
transformer's status (a transformer switched in but ending at an isolated bus
carries no current and its charging is left out). Reading such a file back gives
the same Ybus, with that charging moved from the branch to bus shunts. Branch order after a round trip
is lines first, then transformers. Infinite Q or P limits are written as PSS/E's
default 9999 MW/MVAr (-9999 below). Names are written in full (PSS/E itself
keeps 12 characters); a quote inside a name is written as a double quote.
"""

from __future__ import annotations

import os
import re

import numpy as np

from gat_hpc.errors import InputError
from gat_hpc.network.model import NONE, PQ, Network

SUPPORTED_REV = 33

# Section order of revision 33, up to the last section that is read.
_SECTIONS = ("bus", "load", "fixed shunt", "generator", "branch", "transformer", "area",
             "two-terminal dc", "voltage source converter", "impedance correction",
             "multi-terminal dc", "multi-section line", "zone", "inter-area transfer", "owner",
             "facts control device", "switched shunt")
_READ = {"bus", "load", "fixed shunt", "generator", "branch", "transformer", "switched shunt"}
# Sections written after switched shunts by write_raw (all empty).
_TRAILING = ("gne device", "induction machine")

_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_BIG = 9999.0  # PSS/E's default for "no limit" on generator P and Q


# ----------------------------------------------------------------- tokenising
def _fields(line):
    """Split one RAW record into fields: quoted strings unquoted, '' for a skipped field.

    Quoted strings are swapped for placeholders first so that the blanks, commas
    and slashes inside them neither split fields nor start a comment.
    """
    strings = None
    if "'" in line or '"' in line:
        strings = []

        def keep(m):
            strings.append(m.group(1) if m.group(1) is not None else m.group(2))
            return f"\x00{len(strings) - 1}\x00"

        line = _QUOTED.sub(keep, line)
    body = line.split("/", 1)[0]
    if "," in body:
        out = []
        for part in body.split(","):
            words = part.split()
            if words:
                out.extend(words)
            else:
                out.append("")
    else:
        out = body.split()
    if strings:
        out = [strings[int(t[1:-1])] if t.startswith("\x00") and t.endswith("\x00") else t for t in out]
    return out


def _is_terminator(s):
    """A stripped line that ends a section: '0' alone or followed by a separator or comment."""
    return s[0] == "0" and (len(s) == 1 or s[1] in " \t,/")


def _is_end(s):
    """A stripped line that ends the data: 'Q' alone or followed by a comment."""
    return s[0] in "Qq" and (len(s) == 1 or s[1] in " \t/")


class _Records:
    """The records of one section (or one record kind of a multi-line record), with their line numbers."""

    def __init__(self, path, what, rows, line_nos):
        self.path = path
        self.what = what
        self.rows = rows
        self.line_nos = np.asarray(line_nos, dtype=np.int64)

    def __len__(self):
        return len(self.rows)

    def fail(self, i, message):
        raise InputError(f"{self.path}:{self.line_nos[i]}: {self.what} record: {message}")

    def num(self, k, name, default=None):
        """Field ``k`` (0-based) of every record as float64; ``default`` where it is absent or empty."""
        col = [r[k] if len(r) > k and r[k] != "" else default for r in self.rows]
        try:
            return np.array(col, dtype=np.float64).reshape(len(col))
        except (TypeError, ValueError):
            pass
        for i, tok in enumerate(col):
            if tok is None:
                self.fail(i, f"field {k + 1} ({name}) is missing; expected a number")
            try:
                float(tok)
            except ValueError:
                self.fail(i, f"field {k + 1} ({name}) is {tok!r}; expected a number")
        return np.array([float(tok) for tok in col], dtype=np.float64)

    def int(self, k, name, default=None):
        """Field ``k`` as int64; a value with a fractional part is an error."""
        vals = self.num(k, name, default)
        whole = np.floor(vals)
        bad = (whole != vals) | ~np.isfinite(vals)
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            self.fail(i, f"field {k + 1} ({name}) is {vals[i]!r}; expected an integer")
        return whole.astype(np.int64)

    def text(self, k, default=""):
        """Field ``k`` as stripped strings."""
        return [r[k].strip() if len(r) > k else default for r in self.rows]

    def take(self, mask):
        idx = np.flatnonzero(mask)
        return _Records(self.path, self.what, [self.rows[i] for i in idx], self.line_nos[idx])


def _read_lines(path):
    from gat_hpc.util.textfile import read_text

    return read_text(path, "a PSS/E .raw file").splitlines()


def _parse_header(lines, path):
    """Case identification record -> (SBASE, first data line index)."""
    if not lines or not any(s.strip() for s in lines[:3]):
        raise InputError(f"{path}: the file is empty; expected a PSS/E RAW case")
    head = _fields(lines[0])
    if len(lines) < 3:
        raise InputError(f"{path}: the file ends inside the case identification (3 lines expected); truncated?")
    rec = _Records(path, "case identification", [head], [1])
    ic = int(rec.int(0, "IC", "0")[0])
    sbase = float(rec.num(1, "SBASE", "100")[0])
    if len(head) < 3 or head[2] == "":
        raise InputError(f"{path}:1: the case identification gives no revision (REV); "
                         f"expected {SUPPORTED_REV}. Save the case from PSS/E as revision {SUPPORTED_REV}")
    rev = int(rec.int(2, "REV")[0])
    if rev != SUPPORTED_REV:
        raise InputError(f"{path}:1: PSS/E RAW revision {rev} is not supported; expected revision "
                         f"{SUPPORTED_REV}. Save the case from PSS/E as revision {SUPPORTED_REV}")
    if ic != 0:
        raise InputError(f"{path}:1: IC = {ic} marks a change case, which only makes sense on top of a base "
                         "case; expected IC = 0 (a complete base case)")
    if not np.isfinite(sbase) or sbase <= 0:
        raise InputError(f"{path}:1: SBASE must be a positive number of MVA, got {sbase}")
    return sbase, 3


def _split_sections(lines, start, path):
    """Group data lines into sections -> {section: _Records}; transformers -> list of record lists."""
    rows = {name: [] for name in _READ}
    line_nos = {name: [] for name in _READ}
    xf_parts = []  # one list of (line_no, fields) per transformer
    sec = 0
    sec_start = start + 1
    i, n = start, len(lines)
    finished = False
    while i < n:
        s = lines[i].strip()
        i += 1
        if not s or s.startswith("@!"):
            continue
        if _is_end(s):
            finished = True
            break
        if _is_terminator(s):
            sec += 1
            sec_start = i + 1
            if sec == len(_SECTIONS):
                finished = True
                break
            continue
        name = _SECTIONS[sec]
        if name not in _READ:
            continue
        fields = _fields(s)
        if name == "transformer":
            # Two-winding records take 4 lines, three-winding 5; the continuation lines are
            # read as they are, since a line such as "0, 0.05, 100" is data here, not an end.
            k3 = len(fields) > 2 and fields[2] not in ("", "0")
            need = 4 if k3 else 3
            if i + need > n:
                raise InputError(f"{path}:{i}: the transformer record starting here needs {need + 1} lines "
                                 "but the file ends first (truncated?)")
            parts = [(i, fields)] + [(i + 1 + j, _fields(lines[i + j])) for j in range(need)]
            for ln, f in parts[1:]:
                s = lines[ln - 1].strip()
                if not f or f == ["0"] or _is_end(s):
                    raise InputError(f"{path}:{ln}: the transformer record starting on line {i} ends early: line "
                                     f"{ln - i + 1} of its {need + 1} lines is {s!r}; expected transformer data")
            xf_parts.append(parts)
            i += need
            continue
        rows[name].append(fields)
        line_nos[name].append(i)
    if not finished and sec < len(_SECTIONS):
        raise InputError(f"{path}: the {_SECTIONS[sec]} data section starting on line {sec_start} is not ended by a "
                         f"'0' record before the end of the file (truncated?); expected '0 / END OF "
                         f"{_SECTIONS[sec].upper()} DATA' and the remaining sections, or 'Q'")
    recs = {name: _Records(path, name, rows[name], line_nos[name]) for name in _READ}
    return recs, xf_parts


# ------------------------------------------------------------- conversions
def _bus_index(bus_ids):
    """A lookup from bus numbers to positions: (sorted ids, order)."""
    order = np.argsort(bus_ids, kind="stable")
    return bus_ids[order], order


def _check_buses(index, ids, recs, field):
    """InputError naming the first record whose bus number is not in the bus data."""
    sorted_ids, _ = index
    if len(ids) == 0:
        return
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    bad = sorted_ids[pos] != ids
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        recs.fail(i, f"{field} = {ids[i]} is not in the bus data")


def _lookup(index, ids):
    sorted_ids, order = index
    return order[np.searchsorted(sorted_ids, ids)]


def _winding_ratio(recs, windv, cw, nomv, bus_kv):
    """Winding ratio in p.u. of the bus base voltage from WINDV given with code CW."""
    t = windv.copy()
    kv = cw != 1
    if np.any(kv & (bus_kv <= 0)):
        i = int(np.flatnonzero(kv & (bus_kv <= 0))[0])
        recs.fail(i, "CW = 2 or 3 needs the winding's bus to have a positive base kV (BASKV)")
    t[cw == 2] = windv[cw == 2] / bus_kv[cw == 2]
    c3 = cw == 3
    nom = np.where(nomv > 0, nomv, bus_kv)
    t[c3] = windv[c3] * nom[c3] / bus_kv[c3]
    return t


def _pair_impedance(recs, r, x, cz, sbase_w, nomv, bus_kv, sbase):
    """R, X of one winding pair given with code CZ -> p.u. on the system base."""
    r, x = r.copy(), x.copy()
    on_w = cz != 1
    if np.any(on_w & (sbase_w <= 0)):
        i = int(np.flatnonzero(on_w & (sbase_w <= 0))[0])
        recs.fail(i, "CZ = 2 or 3 needs a positive winding MVA base (SBASE1-2, SBASE2-3 or SBASE3-1)")
    loss = cz == 3
    if np.any(loss):
        r[loss] = r[loss] * 1e-6 / sbase_w[loss]  # load loss in W -> p.u. on the winding MVA base
        short = loss & (np.abs(x) < r)
        if np.any(short):
            i = int(np.flatnonzero(short)[0])
            recs.fail(i, f"CZ = 3 impedance magnitude {abs(x[i])} is below the resistance {r[i]} from the load loss")
        x[loss] = np.sign(x[loss]) * np.sqrt(x[loss] ** 2 - r[loss] ** 2)
    vw = np.where(nomv > 0, nomv, bus_kv)
    ratio = np.where(bus_kv > 0, vw / np.where(bus_kv > 0, bus_kv, 1.0), 1.0)
    scale = np.where(on_w, sbase / np.where(on_w, sbase_w, 1.0) * ratio ** 2, 1.0)
    return r * scale, x * scale


def _magnetizing(recs, mag1, mag2, cm, sbase_w, nomv, bus_kv, sbase):
    """Magnetizing admittance (g, b) in p.u. on system base at winding 1's bus."""
    g, b = mag1.copy(), mag2.copy()
    phys = cm == 2
    if np.any(phys):
        if np.any(phys & (sbase_w <= 0)):
            i = int(np.flatnonzero(phys & (sbase_w <= 0))[0])
            recs.fail(i, "CM = 2 needs a positive SBASE1-2")
        gw = mag1[phys] * 1e-6 / sbase_w[phys]  # no-load loss in W -> p.u. on the winding base
        ymag = mag2[phys]
        if np.any(ymag < gw):
            i = int(np.flatnonzero(phys)[np.flatnonzero(ymag < gw)[0]])
            recs.fail(i, "CM = 2 exciting current is below the conductance from the no-load loss")
        bw = -np.sqrt(ymag ** 2 - gw ** 2)  # exciting current is inductive
        vw = np.where(nomv > 0, nomv, bus_kv)[phys]
        kv = bus_kv[phys]
        ratio = np.where(vw > 0, kv / np.where(vw > 0, vw, 1.0), 1.0)
        scale = sbase_w[phys] / sbase * ratio ** 2
        g[phys], b[phys] = gw * scale, bw * scale
    return g, b


def _transformers(path, xf_parts, sbase, bus_index, base_kv, max_bus, bus_area, bus_zone):
    """All transformer records -> dict of branch columns, star buses and magnetizing shunts."""
    nt = len(xf_parts)
    three = np.array([len(p) == 5 for p in xf_parts], dtype=bool)

    def records(sel, k, what):
        idx = np.flatnonzero(sel)
        return _Records(path, what, [xf_parts[i][k][1] for i in idx], [xf_parts[i][k][0] for i in idx])

    out = []
    for is3 in (False, True):
        sel = three == is3
        if not np.any(sel):
            out.append(None)
            continue
        kind = "three-winding transformer" if is3 else "two-winding transformer"
        r1 = records(sel, 0, kind)
        r2 = records(sel, 1, kind + " (line 2)")
        wind = [records(sel, k, kind + f" (line {k + 1})") for k in range(2, 5 if is3 else 4)]
        nw = 3 if is3 else 2
        buses = [np.abs(r1.int(k, name)) for k, name in zip(range(nw), ("I", "J", "K"))]
        for ids, name in zip(buses, ("I", "J", "K")):
            _check_buses(bus_index, ids, r1, name)
        ckt = r1.text(3, "1")
        cw = r1.int(4, "CW", "1")
        cz = r1.int(5, "CZ", "1")
        cm = r1.int(6, "CM", "1")
        for code, name, allowed in ((cw, "CW", (1, 2, 3)), (cz, "CZ", (1, 2, 3)), (cm, "CM", (1, 2))):
            bad = ~np.isin(code, allowed)
            if np.any(bad):
                i = int(np.flatnonzero(bad)[0])
                r1.fail(i, f"{name} = {code[i]}; expected one of {', '.join(map(str, allowed))}")
        mag1 = r1.num(7, "MAG1", "0")
        mag2 = r1.num(8, "MAG2", "0")
        stat = r1.int(11, "STAT", "1")
        pos = [_lookup(bus_index, ids) for ids in buses]
        kv = [base_kv[p] for p in pos]
        # winding ratios and angles
        t, ang, rates, nomv = [], [], [], []
        for k in range(nw):
            w = wind[k]
            windv = w.num(0, f"WINDV{k + 1}", "nan")
            windv = np.where(np.isnan(windv), np.where(cw == 2, kv[k], 1.0), windv)
            nv = w.num(1, f"NOMV{k + 1}", "0")
            nomv.append(nv)
            t.append(_winding_ratio(w, windv, cw, nv, kv[k]))
            if is3 or k == 0:
                ang.append(np.deg2rad(w.num(2, f"ANG{k + 1}", "0")))
                rates.append([w.num(3 + j, f"RAT{c}{k + 1}", "0") for j, c in enumerate("ABC")])
        s12 = r2.num(2, "SBASE1-2", repr(sbase))
        r12, x12 = _pair_impedance(r2, r2.num(0, "R1-2", "0"), r2.num(1, "X1-2"), cz, s12, nomv[0], kv[0], sbase)
        g_m, b_m = _magnetizing(r1, mag1, mag2, cm, s12, nomv[0], kv[0], sbase)
        if not is3:
            zero = (r12 == 0) & (x12 == 0) & (stat != 0)
            if np.any(zero):
                r1.fail(int(np.flatnonzero(zero)[0]), "R1-2 = X1-2 = 0; a transformer needs a non-zero impedance")
            out.append(dict(
                f=buses[0], t=buses[1], r=r12, x=x12, tap=t[0] / t[1], shift=ang[0],
                rate_a=rates[0][0], rate_b=rates[0][1], rate_c=rates[0][2], status=stat != 0,
                mag=(buses[0], g_m, b_m, stat != 0), ckt=ckt, src=np.flatnonzero(sel)))
            continue
        s23 = r2.num(5, "SBASE2-3", repr(sbase))
        s31 = r2.num(8, "SBASE3-1", repr(sbase))
        r23, x23 = _pair_impedance(r2, r2.num(3, "R2-3", "0"), r2.num(4, "X2-3"), cz, s23, nomv[1], kv[1], sbase)
        r31, x31 = _pair_impedance(r2, r2.num(6, "R3-1", "0"), r2.num(7, "X3-1"), cz, s31, nomv[2], kv[2], sbase)
        vmstar = r2.num(9, "VMSTAR", "1")
        anstar = np.deg2rad(r2.num(10, "ANSTAR", "0"))
        # star (T) equivalent of the three pair impedances
        rs = [(r12 + r31 - r23) / 2, (r12 + r23 - r31) / 2, (r31 + r23 - r12) / 2]
        xs = [(x12 + x31 - x23) / 2, (x12 + x23 - x31) / 2, (x31 + x23 - x12) / 2]
        # STAT: 0 all out, 1 all in, 2/3/4 winding 2/3/1 out
        on = [~np.isin(stat, (0, 4)), ~np.isin(stat, (0, 2)), ~np.isin(stat, (0, 3))]
        star_ids = max_bus + 1 + np.arange(len(stat))  # in file order among three-winding transformers
        out.append(dict(
            f=np.stack(buses, axis=1), r=np.stack(rs, axis=1), x=np.stack(xs, axis=1),
            tap=np.stack(t, axis=1), shift=np.stack(ang, axis=1),
            rate_a=np.stack([rt[0] for rt in rates], axis=1), rate_b=np.stack([rt[1] for rt in rates], axis=1),
            rate_c=np.stack([rt[2] for rt in rates], axis=1), status=np.stack(on, axis=1),
            mag=(buses[0], g_m, b_m, on[0]), star_ids=star_ids, vmstar=vmstar, anstar=anstar,
            star_kv=kv[0], star_area=bus_area[pos[0]], star_zone=bus_zone[pos[0]],
            star_type=np.where(stat == 0, NONE, PQ),
            star_name=[f"STAR {a}-{b}-{c} {k}" for a, b, c, k in zip(*buses, ckt)],
            src=np.flatnonzero(sel), records=r1))
    two, thr = out
    # Place each transformer's branch rows in file order: 1 row for two-winding, 3 for three-winding.
    width = np.where(three, 3, 1)
    first = np.concatenate([[0], np.cumsum(width)[:-1]]) if nt else np.zeros(0, dtype=np.int64)
    nrow = int(width.sum())
    cols = {k: np.zeros(nrow) for k in ("r", "x", "tap", "shift", "rate_a", "rate_b", "rate_c")}
    cols["f"] = np.zeros(nrow, dtype=np.int64)
    cols["t"] = np.zeros(nrow, dtype=np.int64)
    cols["status"] = np.zeros(nrow, dtype=bool)
    star = None
    if two is not None:
        rows = first[two["src"]]
        for k in cols:
            cols[k][rows] = two[k]
    if thr is not None:
        star_ids = thr["star_ids"]
        rows = first[thr["src"]][:, None] + np.arange(3)[None, :]
        for k in ("r", "x", "tap", "shift", "rate_a", "rate_b", "rate_c", "status"):
            cols[k][rows] = thr[k]
        cols["f"][rows] = thr["f"]
        cols["t"][rows] = star_ids[:, None]
        live = thr["status"]
        zero = (thr["r"] == 0) & (thr["x"] == 0) & live
        if np.any(zero):
            i = int(np.flatnonzero(zero.any(axis=1))[0])
            thr["records"].fail(i, "a star impedance of this three-winding transformer is zero (R = X = 0); "
                                    "check R1-2, X1-2, R2-3, X2-3, R3-1, X3-1")
        n3 = len(star_ids)
        star = dict(bus_id=star_ids, bus_name=thr["star_name"], bus_type=thr["star_type"], vm=thr["vmstar"],
                    va=thr["anstar"], base_kv=thr["star_kv"], area=thr["star_area"], zone=thr["star_zone"],
                    vmax=np.full(n3, 1.1), vmin=np.full(n3, 0.9))
    mags = [part["mag"] for part in (two, thr) if part is not None]
    return cols, star, mags


def read_raw(path):
    """Read a PSS/E RAW revision 33 file into a :class:`Network` (see the module docstring)."""
    path = os.fspath(path)
    lines = _read_lines(path)
    sbase, start = _parse_header(lines, path)
    recs, xf_parts = _split_sections(lines, start, path)

    # buses
    b = recs["bus"]
    if len(b) == 0:
        raise InputError(f"{path}: the bus data section is empty; a case needs buses")
    bus_id = b.int(0, "I")
    if np.any(bus_id <= 0):
        b.fail(int(np.flatnonzero(bus_id <= 0)[0]), "bus number I must be a positive integer")
    index = _bus_index(bus_id)
    dup = np.flatnonzero(index[0][1:] == index[0][:-1])
    if len(dup):
        second = int(max(index[1][dup[0]], index[1][dup[0] + 1]))
        b.fail(second, f"bus {bus_id[second]} appears more than once in the bus data")
    bus_type = b.int(3, "IDE", "1")
    bad = ~np.isin(bus_type, (1, 2, 3, 4))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        b.fail(i, f"bus {bus_id[i]} has IDE = {bus_type[i]}; expected 1 (PQ), 2 (PV), 3 (slack) or 4 (isolated)")
    base_kv = b.num(2, "BASKV", "0")
    area = b.int(4, "AREA", "1")
    zone = b.int(5, "ZONE", "1")
    buses = dict(bus_id=bus_id, bus_name=b.text(1), bus_type=bus_type, base_kv=base_kv, area=area, zone=zone,
                 vm=b.num(7, "VM", "1"), va=np.deg2rad(b.num(8, "VA", "0")),
                 vmax=b.num(9, "NVHI", "1.1"), vmin=b.num(10, "NVLO", "0.9"))

    shunt_bus, shunt_g, shunt_b, shunt_on = [], [], [], []

    def add_shunts(bus, g, bsh, on):
        shunt_bus.append(np.asarray(bus, dtype=np.int64))
        shunt_g.append(np.asarray(g, dtype=np.float64))
        shunt_b.append(np.asarray(bsh, dtype=np.float64))
        shunt_on.append(np.asarray(on, dtype=bool))

    # fixed shunts
    fs = recs["fixed shunt"]
    fs_bus = fs.int(0, "I")
    _check_buses(index, fs_bus, fs, "I")
    add_shunts(fs_bus, fs.num(3, "GL", "0") / sbase, fs.num(4, "BL", "0") / sbase, fs.int(2, "STATUS", "1") > 0)

    # switched shunts: initial susceptance only
    ss = recs["switched shunt"]
    ss_bus = ss.int(0, "I")
    _check_buses(index, ss_bus, ss, "I")
    add_shunts(ss_bus, np.zeros(len(ss)), ss.num(9, "BINIT", "0") / sbase, ss.int(3, "STAT", "1") > 0)

    # loads: constant power + constant current at 1 p.u.; constant admittance as a shunt
    ld = recs["load"]
    ld_bus = ld.int(0, "I")
    _check_buses(index, ld_bus, ld, "I")
    ld_on = ld.int(2, "STATUS", "1") > 0
    yp, yq = ld.num(9, "YP", "0"), ld.num(10, "YQ", "0")
    loads = dict(bus=ld_bus, status=ld_on,
                 p=(ld.num(5, "PL", "0") + ld.num(7, "IP", "0")) / sbase,
                 q=(ld.num(6, "QL", "0") + ld.num(8, "IQ", "0")) / sbase)
    has_y = (yp != 0) | (yq != 0)
    add_shunts(ld_bus[has_y], yp[has_y] / sbase, yq[has_y] / sbase, ld_on[has_y])

    # generators
    gn = recs["generator"]
    gn_bus = gn.int(0, "I")
    _check_buses(index, gn_bus, gn, "I")
    gens = dict(bus=gn_bus, pg=gn.num(2, "PG", "0") / sbase, qg=gn.num(3, "QG", "0") / sbase,
                qmax=gn.num(4, "QT", "9999") / sbase, qmin=gn.num(5, "QB", "-9999") / sbase,
                vg=gn.num(6, "VS", "1"), mbase=gn.num(8, "MBASE", repr(sbase)),
                status=gn.int(14, "STAT", "1") > 0,
                pmax=gn.num(16, "PT", "9999") / sbase, pmin=gn.num(17, "PB", "-9999") / sbase)

    # non-transformer branches
    br = recs["branch"]
    f_bus = br.int(0, "I")
    t_bus = np.abs(br.int(1, "J"))
    _check_buses(index, f_bus, br, "I")
    _check_buses(index, t_bus, br, "J")
    br_r, br_x = br.num(3, "R", "0"), br.num(4, "X")
    br_on = br.int(13, "ST", "1") > 0
    zero = (br_r == 0) & (br_x == 0) & br_on
    if np.any(zero):
        br.fail(int(np.flatnonzero(zero)[0]), "R = X = 0; a branch needs a non-zero impedance")
    gi, bi, gj, bj = (br.num(k, name, "0") for k, name in zip(range(9, 13), ("GI", "BI", "GJ", "BJ")))

    # transformers
    xf, star, mags = _transformers(path, xf_parts, sbase, index, base_kv, int(bus_id.max()), area, zone)

    end_i, end_j = (gi != 0) | (bi != 0), (gj != 0) | (bj != 0)
    add_shunts(f_bus[end_i], gi[end_i], bi[end_i], br_on[end_i])
    add_shunts(t_bus[end_j], gj[end_j], bj[end_j], br_on[end_j])
    for bus, g, bm, on in mags:
        has = (g != 0) | (bm != 0)
        add_shunts(bus[has], g[has], bm[has], on[has])

    if star is not None:
        for key in buses:
            if key == "bus_name":
                buses[key] = list(buses[key]) + list(star[key])
            else:
                buses[key] = np.concatenate([buses[key], star[key]])

    branches = dict(
        f_bus=np.concatenate([f_bus, xf["f"]]), t_bus=np.concatenate([t_bus, xf["t"]]),
        r=np.concatenate([br_r, xf["r"]]), x=np.concatenate([br_x, xf["x"]]),
        b=np.concatenate([br.num(5, "B", "0"), np.zeros(len(xf["r"]))]),
        rate_a_mva=np.concatenate([br.num(6, "RATEA", "0"), xf["rate_a"]]),
        rate_b_mva=np.concatenate([br.num(7, "RATEB", "0"), xf["rate_b"]]),
        rate_c_mva=np.concatenate([br.num(8, "RATEC", "0"), xf["rate_c"]]),
        tap=np.concatenate([np.zeros(len(br)), xf["tap"]]),
        shift=np.concatenate([np.zeros(len(br)), xf["shift"]]),
        status=np.concatenate([br_on, xf["status"]]))
    shunts = dict(bus=np.concatenate(shunt_bus), g=np.concatenate(shunt_g), b=np.concatenate(shunt_b),
                  status=np.concatenate(shunt_on))
    name = os.path.splitext(os.path.basename(path))[0]
    return Network.create(base_mva=sbase, name=name, source=path, buses=buses, loads=loads, shunts=shunts,
                          gens=gens, branches=branches)


# ------------------------------------------------------------------ writing
def _ids(*keys):
    """1-based occurrence number of each row among rows with the same key (PSS/E ids/circuits)."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    _, group = np.unique(np.stack(keys, axis=1), axis=0, return_inverse=True)
    group = group.reshape(n)
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    out = np.empty(n, dtype=np.int64)
    out[order] = rank + 1
    return out


def _limit(v):
    """Finite MW/MVAr limits as they are; +-inf as PSS/E's 'no limit' default."""
    return np.where(np.isfinite(v), v, np.sign(v) * _BIG)


def _name(s):
    return "'" + str(s).replace("'", '"') + "'"


def _end(done, following):
    return f"0 / END OF {done.upper()} DATA, BEGIN {following.upper()} DATA"


def write_raw(net, path):
    """Write a :class:`Network` as a PSS/E RAW revision 33 file (see the module docstring)."""
    from gat_hpc import __version__
    from gat_hpc.util.atomic import atomic_write_text

    base = net.base_mva
    ids = net.bus_id
    out = [f"0, {base!r}, {SUPPORTED_REV}, 0, 1, 60.0     / PSS/E-{SUPPORTED_REV} RAW written by gat-hpc {__version__}",
           str(net.name or "case"),
           f"written by gat-hpc {__version__}"]
    r = repr  # shortest text that reads back to the same float

    va = np.rad2deg(net.va)
    for i, nm, kv, ide, ar, zn, vm, a, hi, lo in zip(
            ids.tolist(), net.bus_name, net.base_kv.tolist(), net.bus_type.tolist(), net.area.tolist(),
            net.zone.tolist(), net.vm.tolist(), va.tolist(), net.vmax.tolist(), net.vmin.tolist()):
        out.append(f"{i}, {_name(nm)}, {r(kv)}, {ide}, {ar}, {zn}, 1, {r(vm)}, {r(a)}, {r(hi)}, {r(lo)}, {r(hi)}, {r(lo)}")
    out.append(_end("bus", "load"))

    lb = net.load_bus
    lid = _ids(lb)
    for i, k, st, ar, zn, p, q in zip(ids[lb].tolist(), lid.tolist(), net.load_status.astype(int).tolist(),
                                     net.area[lb].tolist(), net.zone[lb].tolist(),
                                     (net.load_p * base).tolist(), (net.load_q * base).tolist()):
        out.append(f"{i}, '{k}', {st}, {ar}, {zn}, {r(p)}, {r(q)}, 0.0, 0.0, 0.0, 0.0, 1, 1, 0")
    out.append(_end("load", "fixed shunt"))

    # Transformer charging has no RAW field: its to-side half becomes a fixed shunt and its from-side
    # half MAG2 (see docstring). A transformer switched in but ending at an isolated bus carries no
    # current, so its charging is dropped rather than left on the live bus as a shunt.
    is_xf = (net.tap != 0) | (net.shift != 0)
    dead = net.branch_status & ~net.branch_in_service()
    charged = np.flatnonzero(is_xf & (net.b != 0) & ~dead)
    sb = np.concatenate([net.shunt_bus, net.t_bus[charged]])
    sg = np.concatenate([net.shunt_g, np.zeros(len(charged))]) * base
    sbv = np.concatenate([net.shunt_b, net.b[charged] / 2]) * base
    son = np.concatenate([net.shunt_status, net.branch_status[charged]]).astype(int)
    own = np.r_[np.ones(net.shunt_bus.shape[0], dtype=bool), np.zeros(len(charged), dtype=bool)]
    sid = _ids(sb, own.astype(np.int64))
    for i, k, o, st, g, bb in zip(ids[sb].tolist(), sid.tolist(), own.tolist(), son.tolist(), sg.tolist(), sbv.tolist()):
        out.append(f"{i}, '{k if o else 'T' + str(k)}', {st}, {r(g)}, {r(bb)}")
    out.append(_end("fixed shunt", "generator"))

    gb = net.gen_bus
    gid = _ids(gb)
    for i, k, pg, qg, qt, qb, vs, mb, st, pt, pb in zip(
            ids[gb].tolist(), gid.tolist(), (net.pg * base).tolist(), (net.qg * base).tolist(),
            _limit(net.qmax * base).tolist(), _limit(net.qmin * base).tolist(), net.vg.tolist(),
            net.mbase.tolist(), net.gen_status.astype(int).tolist(),
            _limit(net.pmax * base).tolist(), _limit(net.pmin * base).tolist()):
        out.append(f"{i}, '{k}', {r(pg)}, {r(qg)}, {r(qt)}, {r(qb)}, {r(vs)}, 0, {r(mb)}, 0.0, 1.0, 0.0, 0.0, 1.0, "
                   f"{st}, 100.0, {r(pt)}, {r(pb)}, 1, 1.0, 0, 1.0, 0, 1.0, 0, 1.0, 0, 1.0")
    out.append(_end("generator", "branch"))

    fb, tb = net.f_bus, net.t_bus
    ckt = _ids(np.minimum(fb, tb), np.maximum(fb, tb))
    st = net.branch_status.astype(int)
    for k in np.flatnonzero(~is_xf).tolist():
        out.append(f"{ids[fb[k]]}, {ids[tb[k]]}, '{ckt[k]}', {r(float(net.r[k]))}, {r(float(net.x[k]))}, "
                   f"{r(float(net.b[k]))}, {r(float(net.rate_a_mva[k]))}, {r(float(net.rate_b_mva[k]))}, "
                   f"{r(float(net.rate_c_mva[k]))}, 0.0, 0.0, 0.0, 0.0, {st[k]}, 1, 0.0, 1, 1.0")
    out.append(_end("branch", "transformer"))

    tap = np.where(net.tap == 0, 1.0, net.tap)
    mag2 = np.where(is_xf & ~dead, net.b / (2 * tap ** 2), 0.0)
    shift = np.rad2deg(net.shift)
    for k in np.flatnonzero(is_xf).tolist():
        out.append(f"{ids[fb[k]]}, {ids[tb[k]]}, 0, '{ckt[k]}', 1, 1, 1, 0.0, {r(float(mag2[k]))}, 2, "
                   f"'            ', {st[k]}, 1, 1.0, 0, 1.0, 0, 1.0, 0, 1.0, '            '")
        out.append(f"{r(float(net.r[k]))}, {r(float(net.x[k]))}, {r(base)}")
        out.append(f"{r(float(tap[k]))}, 0.0, {r(float(shift[k]))}, {r(float(net.rate_a_mva[k]))}, "
                   f"{r(float(net.rate_b_mva[k]))}, {r(float(net.rate_c_mva[k]))}, 0, 0, 1.1, 0.9, 1.1, 0.9, "
                   "33, 0, 0.0, 0.0, 0.0")
        out.append("1.0, 0.0")
    sections = _SECTIONS[5:] + _TRAILING
    for done, following in zip(sections[:-1], sections[1:]):
        out.append(_end(done, following))
    out.append(f"0 / END OF {sections[-1].upper()} DATA")
    out.append("Q")
    atomic_write_text(path, "\n".join(out) + "\n")
