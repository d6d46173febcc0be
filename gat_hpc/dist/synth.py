"""Synthetic large networks for scaling studies: K copies of a real case joined by tie lines.

Construction of ``tile(net, copies=K, ties=T, seed=S)``:

1. Every copy gets the base case's data unchanged, its own slack bus(es) included: each
   copy balances its own load and losses, as the base case does (several slack buses in
   one island hold their angles, MATPOWER's rule).
2. The copies sit row by row on a grid of ``ceil(sqrt(K))`` columns; copies side by side
   and one above the other are neighbours (K = 2: one pair; K = 16: a 4 x 4 grid, 24 pairs).
3. Each pair of neighbours gets T tie lines. Tie t joins bus i_t of one copy to the
   same bus i_t of the other. The T buses of a pair come from ``numpy.random.default_rng(S)``
   (one draw per pair): ``tie_buses="random"`` (the default) draws them without replacement
   from the base case's energised buses, scattered over the whole network;
   ``tie_buses="cluster"`` draws one energised bus and takes the T energised buses nearest to
   it, in breadth-first order over the in-service branches (a fixed order, so seeded): a
   compact region, as the tie lines between neighbouring real areas run along their border.
   A tie is a plain series branch (r and x the medians of the base case's lines, no
   charging, no rating).

Because both ends of every tie are the same bus of identical copies, the replicated base
solution satisfies every equation of the tiled network with no current on the ties: the
tiled network's power flow is exactly K copies of the base one, reached in the base case's
Newton iterations (a check the tests use), while its Jacobian couples the copies through the
ties as a real interconnection would. (A single slack with the other copies' slack buses
turned PV at the solved slack power was tried first: from the case's starting voltages the
first Newton step pushes each copy's starting slack mismatch through the ties, and the tiled
case_ACTIVSg70k diverges.)

Ids: bus ``b`` of copy ``c`` gets id ``b + c * 10**d`` with ``10**d`` above every base bus id;
generators, loads, shunts and branches are numbered copy after copy, ties last.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from gat_hpc.errors import InputError

BUS_FIELDS = ("bus_type", "vm", "va", "base_kv", "vmax", "vmin", "area", "zone")
LOAD_FIELDS = ("load_p", "load_q", "load_status")
SHUNT_FIELDS = ("shunt_g", "shunt_b", "shunt_status")
GEN_FIELDS = ("pg", "qg", "qmax", "qmin", "vg", "mbase", "gen_status", "pmax", "pmin")
BRANCH_FIELDS = ("r", "x", "b", "rate_a_mva", "rate_b_mva", "rate_c_mva", "tap", "shift", "branch_status",
                 "angmin", "angmax")


def neighbour_pairs(copies):
    """(a, b) copy pairs that touch on a grid of ceil(sqrt(copies)) columns, a < b."""
    cols = max(1, math.ceil(math.sqrt(copies)))
    pairs = []
    for c in range(copies):
        if (c + 1) % cols and c + 1 < copies:
            pairs.append((c, c + 1))
        if c + cols < copies:
            pairs.append((c, c + cols))
    return pairs


TIE_BUSES = ("random", "cluster")


def tile(net, copies, ties, seed=0, tie_buses="random"):
    """A network of ``copies`` copies of ``net`` joined by ``ties`` tie lines per neighbouring pair
    (construction in the module docstring). Returns a new Network."""
    if copies < 1:
        raise InputError("--copies must be at least 1")
    if ties < 0:
        raise InputError("--ties must be 0 or more")
    if tie_buses not in TIE_BUSES:
        raise InputError(f"--tie-buses {tie_buses}: expected one of {', '.join(TIE_BUSES)}")
    from gat_hpc.pf.topology import bus_types

    live = np.setdiff1d(np.arange(net.n_bus), bus_types(net).dead)
    if ties > len(live):
        raise InputError(f"--ties {ties}: the case has only {len(live)} energised buses to tie")
    n, K = net.n_bus, copies
    stride = 10 ** len(str(int(np.max(net.bus_id))))
    copy_of = np.arange(K)

    def rep(a):
        return np.tile(np.asarray(a), K)

    def shifted(idx):  # element -> bus index arrays, copy c offset by c * n
        idx = np.asarray(idx, dtype=np.int64)
        return (idx[None, :] + (copy_of * n)[:, None]).ravel()

    kw = {f: rep(getattr(net, f)) for f in BUS_FIELDS + LOAD_FIELDS + SHUNT_FIELDS + GEN_FIELDS + BRANCH_FIELDS}
    kw["bus_id"] = (net.bus_id[None, :] + (copy_of * stride)[:, None]).ravel()
    kw["bus_name"] = np.array([f"{name}#{c}" if c else str(name) for c in range(K) for name in net.bus_name],
                              dtype=object)
    for f in ("load_bus", "shunt_bus", "gen_bus", "f_bus", "t_bus"):
        kw[f] = shifted(getattr(net, f))
    kw["load_id"] = np.arange(1, K * len(net.load_id) + 1)
    kw["shunt_id"] = np.arange(1, K * len(net.shunt_id) + 1)
    kw["gen_id"] = np.arange(1, K * net.n_gen + 1)

    # tie lines
    rng = np.random.default_rng(seed)
    pairs = neighbour_pairs(K)
    lines = net.branch_in_service() & (net.tap == 0)
    r_tie = float(np.median(net.r[lines])) if np.any(lines) else 0.0
    x_tie = float(np.median(net.x[lines])) if np.any(lines) else 0.01
    f_tie, t_tie = [], []
    near = _nearest(net, live) if tie_buses == "cluster" else None
    for a, b in pairs:
        buses = rng.choice(live, size=ties, replace=False) if near is None else near(int(rng.choice(live)), ties)
        f_tie.append(a * n + buses)
        t_tie.append(b * n + buses)
    nt = ties * len(pairs)
    f_tie = np.concatenate(f_tie) if f_tie else np.zeros(0, dtype=np.int64)
    t_tie = np.concatenate(t_tie) if t_tie else np.zeros(0, dtype=np.int64)
    tie = dict(r=r_tie, x=x_tie, b=0.0, rate_a_mva=0.0, rate_b_mva=0.0, rate_c_mva=0.0, tap=0.0, shift=0.0,
               branch_status=True, angmin=-2 * np.pi, angmax=2 * np.pi)
    for f in BRANCH_FIELDS:
        kw[f] = np.concatenate([kw[f], np.full(nt, tie[f], dtype=kw[f].dtype)])
    kw["f_bus"] = np.concatenate([kw["f_bus"], f_tie])
    kw["t_bus"] = np.concatenate([kw["t_bus"], t_tie])
    kw["branch_id"] = np.arange(1, len(kw["f_bus"]) + 1)
    gencost = net.gencost
    if gencost is not None:
        ng = net.n_gen
        blocks = [np.tile(gencost[:ng], (K, 1))]
        if gencost.shape[0] == 2 * ng:
            blocks.append(np.tile(gencost[ng:], (K, 1)))
        gencost = np.vstack(blocks)
    out = replace(net, name=f"{net.name}-x{K}", source="", extra={}, gencost=gencost, **kw)
    out.validate()
    return out


def _nearest(net, live):
    """``near(start, size)``: the ``size`` energised buses nearest to bus ``start``, breadth-first
    over the in-service branches (scipy's traversal order: the same every time)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import breadth_first_order

    on = net.branch_in_service()
    adj = sp.csr_matrix((np.ones(int(on.sum())), (net.f_bus[on], net.t_bus[on])), shape=(net.n_bus, net.n_bus))
    adj.sort_indices()
    alive = np.zeros(net.n_bus, dtype=bool)
    alive[live] = True

    def near(start, size):
        order = breadth_first_order(adj, start, directed=False, return_predecessors=False)
        order = order[alive[order]]
        if len(order) < size:
            raise InputError(f"--ties {size} --tie-buses cluster: the island of bus {net.bus_id[start]} has only "
                             f"{len(order)} energised buses; give fewer ties or --tie-buses random")
        return order[:size]
    return near
