"""The network model: numpy arrays, per-unit inside, external ids kept.

Every element table is a set of equal-length numpy arrays. Buses are indexed
0..n-1 internally in the order of the case file; ``bus_id`` keeps the case's
bus numbers. Loads, shunts, generators and branches refer to buses by their
internal index (``*_bus``, ``f_bus``, ``t_bus``).

Units: powers, admittances and impedances are per-unit on ``base_mva``;
angles are radians; voltages per-unit; branch ratings are MVA (``rate_*_mva``)
because they are only ever compared with flows in MW/MVA on output.

Ids: ``bus_id`` is the case's bus number; ``gen_id`` and ``branch_id`` are the
1-based row numbers of the case's gen and branch tables; ``load_id`` and
``shunt_id`` are 1-based row numbers of the load and shunt tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from gat_hpc.errors import InputError

PQ, PV, REF, NONE = 1, 2, 3, 4  # MATPOWER bus types (NONE = isolated)


def sum_per_bus(bus_index, values, n_bus):
    """Complex ``values`` summed per bus (``bus_index`` internal indices) into an n_bus vector."""
    values = np.asarray(values)
    return (np.bincount(bus_index, values.real, n_bus)
            + 1j * np.bincount(bus_index, values.imag if np.iscomplexobj(values) else np.zeros(len(values)), n_bus))


def _f(x):
    return np.asarray(x, dtype=np.float64)


def _i(x):
    return np.asarray(x, dtype=np.int64)


def _b(x):
    return np.asarray(x, dtype=bool)


@dataclass
class Network:
    """A power network in per-unit. Build one with :func:`Network.create`."""

    base_mva: float
    name: str
    # buses
    bus_id: np.ndarray
    bus_name: np.ndarray
    bus_type: np.ndarray
    vm: np.ndarray
    va: np.ndarray
    base_kv: np.ndarray
    vmax: np.ndarray
    vmin: np.ndarray
    area: np.ndarray
    zone: np.ndarray
    # loads
    load_id: np.ndarray
    load_bus: np.ndarray
    load_p: np.ndarray
    load_q: np.ndarray
    load_status: np.ndarray
    # fixed shunts (admittance at 1 p.u. voltage)
    shunt_id: np.ndarray
    shunt_bus: np.ndarray
    shunt_g: np.ndarray
    shunt_b: np.ndarray
    shunt_status: np.ndarray
    # generators
    gen_id: np.ndarray
    gen_bus: np.ndarray
    pg: np.ndarray
    qg: np.ndarray
    qmax: np.ndarray
    qmin: np.ndarray
    vg: np.ndarray
    mbase: np.ndarray
    gen_status: np.ndarray
    pmax: np.ndarray
    pmin: np.ndarray
    # branches (lines and transformers)
    branch_id: np.ndarray
    f_bus: np.ndarray
    t_bus: np.ndarray
    r: np.ndarray
    x: np.ndarray
    b: np.ndarray
    rate_a_mva: np.ndarray
    rate_b_mva: np.ndarray
    rate_c_mva: np.ndarray
    tap: np.ndarray  # off-nominal ratio at the from side; 0 means a line (ratio 1)
    shift: np.ndarray  # phase shift, radians
    branch_status: np.ndarray
    angmin: np.ndarray
    angmax: np.ndarray
    # optional generator cost table as in the case file (MATPOWER gencost rows)
    gencost: np.ndarray | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ build
    @classmethod
    def create(cls, *, base_mva, name="", buses, loads, shunts, gens, branches,
               gencost=None, source=""):
        """Build and validate a network from dicts of columns.

        ``buses`` needs ``bus_id`` and may give the other bus fields; elements
        refer to buses by **bus id** in ``bus`` / ``f_bus`` / ``t_bus``, which
        are mapped to internal indices here (unknown ids are an InputError).
        """
        bus_id = _i(buses["bus_id"])
        n = len(bus_id)
        where = source or name or "case"
        if n == 0:
            raise InputError(f"{where}: the case has no buses")
        uniq, counts = np.unique(bus_id, return_counts=True)
        if np.any(counts > 1):
            raise InputError(f"{where}: bus {uniq[counts > 1][0]} appears more than once in the bus table")
        order = np.argsort(bus_id)
        sorted_ids = bus_id[order]

        def to_index(ids, what):
            ids = _i(ids)
            pos = np.searchsorted(sorted_ids, ids)
            pos = np.minimum(pos, n - 1)
            bad = sorted_ids[pos] != ids
            if np.any(bad):
                k = int(np.flatnonzero(bad)[0])
                raise InputError(f"{where}: {what} row {k + 1} refers to unknown bus {ids[k]}")
            return order[pos]

        def col(d, key, default, conv=_f, length=None):
            m = length if length is not None else n
            if key in d and d[key] is not None:
                return conv(d[key])
            return conv(np.full(m, default))

        nl = len(loads.get("bus", []))
        ns = len(shunts.get("bus", []))
        ng = len(gens.get("bus", []))
        nb = len(branches.get("f_bus", []))
        net = cls(
            base_mva=float(base_mva),
            name=name,
            bus_id=bus_id,
            bus_name=np.asarray(buses.get("bus_name", [str(b) for b in bus_id]), dtype=object),
            bus_type=col(buses, "bus_type", PQ, _i),
            vm=col(buses, "vm", 1.0),
            va=col(buses, "va", 0.0),
            base_kv=col(buses, "base_kv", 0.0),
            vmax=col(buses, "vmax", 1.1),
            vmin=col(buses, "vmin", 0.9),
            area=col(buses, "area", 1, _i),
            zone=col(buses, "zone", 1, _i),
            load_id=col(loads, "load_id", 0, _i, nl) if "load_id" in loads else np.arange(1, nl + 1),
            load_bus=to_index(loads["bus"], "load") if nl else _i([]),
            load_p=col(loads, "p", 0.0, _f, nl),
            load_q=col(loads, "q", 0.0, _f, nl),
            load_status=col(loads, "status", True, _b, nl),
            shunt_id=col(shunts, "shunt_id", 0, _i, ns) if "shunt_id" in shunts else np.arange(1, ns + 1),
            shunt_bus=to_index(shunts["bus"], "shunt") if ns else _i([]),
            shunt_g=col(shunts, "g", 0.0, _f, ns),
            shunt_b=col(shunts, "b", 0.0, _f, ns),
            shunt_status=col(shunts, "status", True, _b, ns),
            gen_id=np.arange(1, ng + 1),
            gen_bus=to_index(gens["bus"], "generator") if ng else _i([]),
            pg=col(gens, "pg", 0.0, _f, ng),
            qg=col(gens, "qg", 0.0, _f, ng),
            qmax=col(gens, "qmax", np.inf, _f, ng),
            qmin=col(gens, "qmin", -np.inf, _f, ng),
            vg=col(gens, "vg", 1.0, _f, ng),
            mbase=col(gens, "mbase", base_mva, _f, ng),
            gen_status=col(gens, "status", True, _b, ng),
            pmax=col(gens, "pmax", np.inf, _f, ng),
            pmin=col(gens, "pmin", 0.0, _f, ng),
            branch_id=np.arange(1, nb + 1),
            f_bus=to_index(branches["f_bus"], "branch") if nb else _i([]),
            t_bus=to_index(branches["t_bus"], "branch") if nb else _i([]),
            r=col(branches, "r", 0.0, _f, nb),
            x=col(branches, "x", 0.0, _f, nb),
            b=col(branches, "b", 0.0, _f, nb),
            rate_a_mva=col(branches, "rate_a_mva", 0.0, _f, nb),
            rate_b_mva=col(branches, "rate_b_mva", 0.0, _f, nb),
            rate_c_mva=col(branches, "rate_c_mva", 0.0, _f, nb),
            tap=col(branches, "tap", 0.0, _f, nb),
            shift=col(branches, "shift", 0.0, _f, nb),
            branch_status=col(branches, "status", True, _b, nb),
            angmin=col(branches, "angmin", -2 * np.pi, _f, nb),
            angmax=col(branches, "angmax", 2 * np.pi, _f, nb),
            gencost=None if gencost is None else _f(gencost),
            source=source,
        )
        net.validate()
        return net

    def validate(self):
        """Check element data that no solver could use; raise InputError naming the element."""
        where = self.source or self.name or "case"
        if not np.isfinite(self.base_mva) or self.base_mva <= 0:
            raise InputError(f"{where}: baseMVA must be positive, got {self.base_mva}")
        bad = ~np.isin(self.bus_type, (PQ, PV, REF, NONE))
        if np.any(bad):
            k = int(np.flatnonzero(bad)[0])
            raise InputError(f"{where}: bus {self.bus_id[k]} has type {self.bus_type[k]}; expected 1 (PQ), 2 (PV), 3 (slack) or 4 (isolated)")
        for name in ("vm", "va", "load_p", "load_q", "shunt_g", "shunt_b", "pg", "qg", "vg", "r", "x", "b", "tap", "shift"):
            arr = getattr(self, name)
            if not np.all(np.isfinite(arr)):
                k = int(np.flatnonzero(~np.isfinite(arr))[0])
                raise InputError(f"{where}: non-finite value in {name} at row {k + 1}")
        zero = self.branch_status & (self.r == 0) & (self.x == 0)
        if np.any(zero):
            k = int(np.flatnonzero(zero)[0])
            raise InputError(f"{where}: branch {self.branch_id[k]} ({self.bus_id[self.f_bus[k]]}-{self.bus_id[self.t_bus[k]]}) has zero impedance (r = x = 0)")

    # ------------------------------------------------------------- sizes
    @property
    def n_bus(self):
        return len(self.bus_id)

    @property
    def n_gen(self):
        return len(self.gen_id)

    @property
    def n_branch(self):
        return len(self.branch_id)

    def copy(self):
        """A deep copy: arrays are copied so the copy can be changed freely."""
        kw = {}
        for fd in fields(self):
            v = getattr(self, fd.name)
            kw[fd.name] = v.copy() if isinstance(v, (np.ndarray, dict)) else v
        return replace(self, **kw)

    # ------------------------------------------------------- bus aggregates
    def bus_load(self):
        """Complex load per bus, p.u. (in-service loads summed)."""
        return sum_per_bus(self.load_bus, np.where(self.load_status, self.load_p + 1j * self.load_q, 0), self.n_bus)

    def bus_shunt(self):
        """Complex shunt admittance per bus at 1 p.u., p.u. (in-service shunts summed)."""
        return sum_per_bus(self.shunt_bus, np.where(self.shunt_status, self.shunt_g + 1j * self.shunt_b, 0), self.n_bus)

    def bus_gen(self):
        """Complex generation per bus, p.u. (in-service generators summed)."""
        return sum_per_bus(self.gen_bus, np.where(self.gen_status, self.pg + 1j * self.qg, 0), self.n_bus)

    def bus_has_gen(self):
        """True for buses with at least one in-service generator."""
        return np.bincount(self.gen_bus[self.gen_status], minlength=self.n_bus) > 0

    def branch_in_service(self):
        """In-service branches whose two end buses are not isolated (type 4)."""
        live = self.bus_type != NONE
        return self.branch_status & live[self.f_bus] & live[self.t_bus]

    def effective_tap(self):
        """Complex tap ratio a*exp(j*shift) of every branch (a = 1 for lines)."""
        a = np.where(self.tap == 0, 1.0, self.tap)
        return a * np.exp(1j * self.shift)
