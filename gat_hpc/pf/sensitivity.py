"""DC sensitivities: PTDF, LODF, bridges and post-outage flows (MATPOWER's makePTDF/makeLODF).

All quantities are per-unit and dimensionless ratios on the DC model of
:mod:`gat_hpc.pf.dc`; branches and buses are in internal order (0..n-1).

- ``PTDF[m, j]``: change of the from-end flow on branch m per p.u. injected at bus j and
  withdrawn at the slack of j's island (or spread over a distributed slack).
- ``LODF[m, k]``: change of the flow on branch m per p.u. of pre-outage flow on branch k when
  k is opened; ``LODF[k, k] = -1`` so that ``f + LODF[:, k] * f[k]`` is the whole
  post-outage flow vector (zero on k itself).
- Out-of-service branches (and those touching isolated buses) have zero PTDF/LODF rows and
  zero LODF columns: they carry nothing and removing them changes nothing.
- A bridge (a branch whose opening splits its island) has no LODF: the outage strands part
  of the island, which the linear formula cannot describe. Its LODF column is 0 and the
  returned ``bridge_mask`` says so; callers treat those outages as islanding.

Size: ``make_ptdf`` and ``make_lodf`` build dense matrices (8 bytes x n_branch x n_bus and
8 bytes x n_branch^2: 50 MB and 80 MB for 2,000 buses / 3,206 branches). Use them for cases
up to about 10,000 branches; beyond that compute only the columns needed with
:func:`ptdf_columns` and :func:`lodf_columns`, which reuse one sparse factorisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, depth_first_order
from scipy.sparse.linalg import splu

from gat_hpc.errors import InputError
from gat_hpc.pf.dc import factor_reduced, incidence, make_bdc
from gat_hpc.pf.topology import bus_types


# ---------------------------------------------------------------- the factorised system
@dataclass
class _Reduced:
    """Factors of the DC model with one angle reference per energised island.

    ``keep``: the buses whose angles are unknowns (energised, not the island's slack);
    ``pos``: row of each bus in the reduced system, -1 for slack and dead buses;
    ``slack``: the slack bus of each island; ``island``: island label per bus (-1 dead);
    ``weights``: None, or the distributed-slack weights normalised to sum 1 per island.
    """

    bf: sp.csr_matrix
    keep: np.ndarray
    pos: np.ndarray
    lu: object
    slack: np.ndarray
    island: np.ndarray
    weights: np.ndarray | None
    in_service: np.ndarray


def _masked(net, branch_mask):
    """``net`` itself, or a copy whose branch status also honours ``branch_mask``."""
    if branch_mask is None:
        return net
    out = net.copy()
    out.branch_status = out.branch_status & np.asarray(branch_mask, dtype=bool)
    return out


def _prepare(net, slack=None, branch_mask=None):
    """Build and factorise the reduced DC system for sensitivities; see :func:`make_ptdf`."""
    where = net.source or net.name or "case"
    net = _masked(net, branch_mask)
    types = bus_types(net)
    # number the energised islands 0..k-1 (dead islands leave gaps in bus_types' labels)
    island = np.full(net.n_bus, -1, dtype=np.int64)
    live = types.island >= 0
    _, island[live] = np.unique(types.island[live], return_inverse=True)
    nisl = int(island.max()) + 1
    weights = None
    slack_arr = None if slack is None else np.asarray(slack)
    if slack_arr is not None and slack_arr.dtype.kind == "f" and slack_arr.ndim == 1 \
            and len(slack_arr) == net.n_bus:
        # distributed slack: weights per bus, normalised within each island
        w = np.where(island >= 0, slack_arr, 0.0)
        total = np.bincount(island[island >= 0], w[island >= 0], minlength=nisl)
        if np.any(total == 0):
            k = int(np.flatnonzero(total == 0)[0])
            raise InputError(f"{where}: the distributed slack weights sum to zero on island {k + 1}; "
                             "give every energised island a nonzero weight")
        weights = np.where(island >= 0, w / total[np.maximum(island, 0)], 0.0)
        slack_arr = None
    if slack_arr is None:
        # the first slack bus of each island is its angle reference
        ref = types.ref
        _, first = np.unique(island[ref], return_index=True)
        ref_bus = ref[first]
    else:
        ref_bus = np.atleast_1d(slack_arr).astype(np.int64)
        if np.any((ref_bus < 0) | (ref_bus >= net.n_bus)):
            raise InputError(f"{where}: slack bus index out of range 0..{net.n_bus - 1}: {ref_bus}")
        if np.any(island[ref_bus] < 0):
            b = ref_bus[island[ref_bus] < 0][0]
            raise InputError(f"{where}: slack bus {net.bus_id[b]} is not energised")
        isl_ref = np.sort(island[ref_bus])
        if len(ref_bus) != nisl or np.any(isl_ref != np.arange(nisl)):
            raise InputError(f"{where}: give exactly one slack bus per energised island "
                             f"({nisl} islands, {len(ref_bus)} slack buses given)")
        ref_bus = ref_bus[np.argsort(island[ref_bus])]
    bbus, bf, _, _ = make_bdc(net)
    unknown = island >= 0
    unknown[ref_bus] = False
    keep = np.flatnonzero(unknown)
    pos = np.full(net.n_bus, -1, dtype=np.int64)
    pos[keep] = np.arange(len(keep))
    lu = factor_reduced(bbus, keep, where)
    return _Reduced(bf=bf, keep=keep, pos=pos, lu=lu, slack=ref_bus, island=island,
                    weights=weights, in_service=net.branch_in_service())


def _flows(red, rhs):
    """Branch flow changes (n_branch x K) for reduced injection columns ``rhs`` (n_keep x K)."""
    if red.lu is None:
        return np.zeros((red.bf.shape[0], rhs.shape[1]))
    theta = red.lu.solve(np.asarray(rhs, dtype=np.float64))
    return np.asarray(red.bf[:, red.keep] @ theta)


# ---------------------------------------------------------------- PTDF
def make_ptdf(net, slack=None, branch_mask=None):
    """Dense PTDF (n_branch x n_bus), p.u. flow per p.u. injection; MATPOWER's ``makePTDF``.

    ``slack``: None -> the first slack bus of each island (from ``bus_types``); an int or
    int array -> the slack bus(es) by internal index, exactly one per energised island; a
    float array of length n_bus -> distributed-slack weights (normalised within each
    island): an injection at bus j is then withdrawn from j's island in proportion to them.
    ``branch_mask`` (bool per branch) takes further branches out of service.
    Columns of dead buses and rows of out-of-service branches are zero.
    """
    red = _prepare(net, slack, branch_mask)
    nbr, nb = red.bf.shape
    ptdf = np.zeros((nbr, nb))
    if red.lu is not None:
        # H[:, keep] = Bf[:, keep] @ inv(B_red): fewer right-hand sides than solving for Bf.T
        binv = red.lu.solve(np.eye(len(red.keep)))
        ptdf[:, red.keep] = red.bf[:, red.keep] @ binv
    if red.weights is not None:
        # withdraw at the weighted slack instead of the reference bus: H - (H w_island) 1'
        nisl = len(red.slack)
        live = np.flatnonzero(red.island >= 0)
        w = sp.csr_matrix((red.weights[live], (live, red.island[live])), shape=(nb, nisl))
        hw = np.asarray(w.T @ ptdf.T).T  # n_branch x n_islands
        ptdf[:, live] -= hw[:, red.island[live]]
    return ptdf


def ptdf_columns(net, buses, slack=None, branch_mask=None):
    """PTDF columns for the given buses (internal indices): n_branch x len(buses), p.u./p.u.

    Same meaning and options as :func:`make_ptdf`, computed with one sparse factorisation
    and len(buses) solves, for cases too large for the dense matrix.
    """
    red = _prepare(net, slack, branch_mask)
    buses = np.atleast_1d(np.asarray(buses, dtype=np.int64))
    k = len(buses)
    cols = np.arange(k)
    rhs = np.zeros((len(red.keep), k))
    hit = red.pos[buses] >= 0
    rhs[red.pos[buses[hit]], cols[hit]] = 1.0
    if red.weights is not None:
        # subtract the island's weights from each column of a live bus
        live = red.island[buses] >= 0
        w_keep = red.weights[red.keep]
        same = red.island[red.keep][:, None] == red.island[buses][None, :]
        rhs -= np.where(same & live[None, :], w_keep[:, None], 0.0)
    return _flows(red, rhs)


# ---------------------------------------------------------------- bridges
def find_bridges(net, branch_mask=None):
    """Bool per branch: in-service branches whose opening splits an island (bridges).

    Exact, with no recursion and no Python loop: a 70k-bus case takes tens of milliseconds.
    One depth-first search (scipy's compiled ``depth_first_order``, from a virtual root tied
    to every component) gives a spanning forest in which every other edge joins a vertex to
    one of its ancestors. A tree edge (parent(v), v) is a bridge when no such back edge
    leaves the subtree of v; the number that do is a subtree sum of (+1 at a back edge's
    lower end, -1 at its upper end), computed for all v at once by one sparse triangular
    solve in preorder (linear work; sorting the branch pairs is the only n log n step).
    Parallel branches are never bridges. ``branch_mask`` takes further branches out of
    service.
    """
    on = net.branch_in_service()
    if branch_mask is not None:
        on = on & np.asarray(branch_mask, dtype=bool)
    n = net.n_bus
    out = np.zeros(net.n_branch, dtype=bool)
    idx = np.flatnonzero(on & (net.f_bus != net.t_bus))  # a self-loop can never split anything
    if idx.size == 0:
        return out
    lo = np.minimum(net.f_bus[idx], net.t_bus[idx])
    hi = np.maximum(net.f_bus[idx], net.t_bus[idx])
    pair, inv, mult = np.unique(lo * n + hi, return_inverse=True, return_counts=True)
    pu, pv = pair // n, pair % n
    # virtual root n joined to one bus of each component, so one search covers the forest
    _, comp = connected_components(sp.csr_matrix((np.ones(len(pair)), (pu, pv)), shape=(n, n)),
                                   directed=False)
    _, rep = np.unique(comp, return_index=True)
    root = n
    eu = np.concatenate([pu, np.full(len(rep), root)])
    ev = np.concatenate([pv, rep])
    adj = sp.csr_matrix((np.ones(2 * len(eu)), (np.concatenate([eu, ev]), np.concatenate([ev, eu]))),
                        shape=(n + 1, n + 1))
    order, parent = depth_first_order(adj, root, directed=True, return_predecessors=True)
    pre = np.empty(n + 1, dtype=np.int64)
    pre[order] = np.arange(n + 1)
    is_tree = (parent[pv] == pu) | (parent[pu] == pv)
    child = np.where(parent[pv] == pu, pv, pu)
    # back edges: the end visited later is the descendant
    bu, bv = pu[~is_tree], pv[~is_tree]
    desc = np.where(pre[bu] > pre[bv], bu, bv)
    anc = np.where(pre[bu] > pre[bv], bv, bu)
    d = np.bincount(pre[desc], minlength=n + 1) - np.bincount(pre[anc], minlength=n + 1)
    # subtree sums s = d + sum of children's s: (I - C) s = d, upper triangular in preorder
    kids = np.arange(n)  # every vertex but the virtual root n
    u_mat = sp.csc_matrix(
        (np.concatenate([np.ones(n + 1), -np.ones(n)]),
         (np.concatenate([np.arange(n + 1), pre[parent[kids]]]), np.concatenate([np.arange(n + 1), pre[kids]]))),
        shape=(n + 1, n + 1))
    # natural order, no pivoting: the factors of a unit upper triangular matrix are itself
    rhs = np.column_stack([d, np.ones(n + 1)]).astype(np.float64)
    sums = splu(u_mat, permc_spec="NATURAL", diag_pivot_thresh=0.0).solve(rhs)
    cover, size = np.rint(sums[:, 0]), np.rint(sums[:, 1])
    # guard: the argument needs a true depth-first tree (each back edge joins an ancestor)
    if np.any(pre[desc] >= pre[anc] + size[pre[anc]]):
        raise RuntimeError("find_bridges: the search order is not depth-first; bridges would be wrong")
    pair_bridge = is_tree & (mult == 1) & (cover[pre[child]] == 0)
    out[idx] = pair_bridge[inv]
    return out


# ---------------------------------------------------------------- LODF
def _lodf_from_transfer(htr, outages, in_service, bridge):
    """Turn transfer columns into LODF columns in place.

    ``htr[:, c]``: flow change per p.u. sent from the from bus to the to bus of branch
    ``outages[c]``; LODF = htr / (1 - htr[k, k]) with -1 on the outaged branch; columns of
    bridges and out-of-service branches become 0.
    """
    cols = np.arange(len(outages))
    valid = in_service[outages] & ~bridge[outages]
    denom = np.where(valid, 1.0 - htr[outages, cols], 1.0)
    htr /= denom[None, :]
    htr[:, ~valid] = 0.0
    htr[outages[valid], cols[valid]] = -1.0
    return htr


def make_lodf(net, ptdf=None, branch_mask=None):
    """Dense LODF (n_branch x n_branch) and the bridge mask; MATPOWER's ``makeLODF``.

    ``LODF[m, k]``: change of the flow on m per p.u. of pre-outage flow on k when k opens,
    with ``LODF[k, k] = -1``. ``ptdf``: a PTDF of the same network and branch mask (any
    slack: the LODF does not depend on it), computed when not given. Returns ``(lodf,
    bridge_mask)``: columns of bridges (outages that island part of the network, see
    :func:`find_bridges`) and of out-of-service branches are 0, never inf or NaN; the mask
    tells the caller which outages need an islanding treatment.
    """
    if ptdf is None:
        ptdf = make_ptdf(net, branch_mask=branch_mask)
    m = _masked(net, branch_mask)
    in_service = m.branch_in_service()
    bridge = find_bridges(m)
    # transfer PTDF between each branch's ends: H[:, f_k] - H[:, t_k], as one sparse product
    htr = np.asarray(incidence(m) @ ptdf.T).T
    lodf = _lodf_from_transfer(htr, np.arange(m.n_branch), in_service, bridge)
    return lodf, bridge


def lodf_columns(net, outages, branch_mask=None):
    """LODF columns for the given outages (branch internal indices): n_branch x K, and bridges.

    Returns ``(cols, bridge)`` with ``cols[:, c] = LODF[:, outages[c]]`` and ``bridge[c]``
    True when that outage islands part of the network (its column is then 0). One sparse
    factorisation and K solves; use it for cases too large for :func:`make_lodf`.
    """
    red = _prepare(net, None, branch_mask)
    m = _masked(net, branch_mask)
    outages = np.atleast_1d(np.asarray(outages, dtype=np.int64))
    k = len(outages)
    cols = np.arange(k)
    rhs = np.zeros((len(red.keep), k))
    # send 1 p.u. from the from bus to the to bus (a slack end simply drops out)
    fpos, tpos = red.pos[m.f_bus[outages]], red.pos[m.t_bus[outages]]
    rhs[fpos[fpos >= 0], cols[fpos >= 0]] += 1.0
    rhs[tpos[tpos >= 0], cols[tpos >= 0]] -= 1.0
    htr = _flows(red, rhs)
    bridge = find_bridges(m)
    lodf = _lodf_from_transfer(htr, outages, red.in_service, bridge)
    return lodf, bridge[outages]


# ---------------------------------------------------------------- post-outage flows
def post_outage_flows(flows, lodf_cols, outages):
    """DC flows after each single outage: ``f + LODF[:, k] * f[k]``, p.u. (any consistent unit).

    ``flows``: pre-outage branch flows, shape (n_branch,) or (n_hours, n_branch);
    ``lodf_cols``: LODF columns of the outages, shape (n_branch, K), e.g. ``lodf[:, outages]``
    or the first result of :func:`lodf_columns`; ``outages``: K branch indices.
    Returns (K, n_branch) or (n_hours, K, n_branch). The result is dense: chunk hours or
    outages to bound memory. Bridge outages have zero LODF columns and come back as the
    pre-outage flows; check the bridge mask and treat them as islanding.
    """
    flows = np.asarray(flows, dtype=np.float64)
    outages = np.atleast_1d(np.asarray(outages, dtype=np.int64))
    lt = np.asarray(lodf_cols).T  # K x n_branch
    if flows.ndim == 1:
        return flows[None, :] + flows[outages][:, None] * lt
    if flows.ndim == 2:
        return flows[:, None, :] + flows[:, outages][:, :, None] * lt[None, :, :]
    raise ValueError(f"flows must have 1 or 2 dimensions, got shape {flows.shape}")
