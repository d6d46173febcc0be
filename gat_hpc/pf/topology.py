"""Topology: energised buses, islands, and the REF/PV/PQ split used by the solvers.

MATPOWER's rules: a bus is REF or PV only while at least one of its generators is
in service (otherwise it is solved as PQ); isolated buses (type 4) and
out-of-service branches are left out. Several slack buses are allowed. Each
island of energised buses needs a slack bus with an in-service generator; an
island with neither load nor generation is de-energised (its voltages are 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from gat_hpc.errors import InputError
from gat_hpc.network.model import NONE, PV, REF


@dataclass
class BusTypes:
    """Internal bus indices by role in the power flow.

    ``ref``, ``pv``, ``pq``: energised buses solved as slack, PV and PQ;
    ``dead``: buses left out (isolated, or in an island with no load or generation);
    ``island``: island label per bus (-1 for dead buses).
    """

    ref: np.ndarray
    pv: np.ndarray
    pq: np.ndarray
    dead: np.ndarray
    island: np.ndarray

    @property
    def n_islands(self):
        return int(self.island.max()) + 1 if self.island.size and self.island.max() >= 0 else 0


def islands(net, branch_mask=None):
    """Connected components of the non-isolated buses over in-service branches.

    Returns an int array of island labels per bus; isolated buses (type 4) get -1.
    ``branch_mask`` (bool per branch) overrides which branches are in service.
    """
    mask = net.branch_in_service() if branch_mask is None else branch_mask & net.branch_in_service()
    n = net.n_bus
    f, t = net.f_bus[mask], net.t_bus[mask]
    adj = sp.coo_matrix((np.ones(len(f)), (f, t)), shape=(n, n))
    _, labels = connected_components(adj, directed=False)
    labels = labels.astype(np.int64)
    labels[net.bus_type == NONE] = -1
    # renumber 0..k-1 in order of first appearance for stable output
    live = labels >= 0
    _, first, inv = np.unique(labels[live], return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    labels[live] = rank[inv]
    return labels


def _describe_buses(net, idx, limit=8):
    ids = ", ".join(str(b) for b in net.bus_id[idx[:limit]])
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return ids + more


def bus_types(net, where=None):
    """Split the buses into REF/PV/PQ (and dead) following MATPOWER's rules.

    Raises InputError for an island that has load or generation but no slack
    bus with an in-service generator, naming the island's buses.
    """
    where = where or net.source or net.name or "case"
    label = islands(net)
    has_gen = net.bus_has_gen()
    if not np.any(net.gen_status):
        raise InputError(f"{where}: every generator is out of service; nothing can supply the load")
    is_ref = (net.bus_type == REF) & has_gen & (label >= 0)
    is_pv = (net.bus_type == PV) & has_gen & (label >= 0)
    nisl = int(label.max()) + 1 if np.any(label >= 0) else 0
    if nisl == 0:
        raise InputError(f"{where}: every bus is isolated (type 4)")
    ref_count = np.bincount(label[is_ref], minlength=nisl)
    load = np.abs(net.bus_load())
    active = np.bincount(label[label >= 0], (load + has_gen)[label >= 0], minlength=nisl) > 0
    dead_island = (ref_count == 0) & ~active
    bad = np.flatnonzero((ref_count == 0) & active)
    if bad.size:
        k = int(bad[0])
        members = np.flatnonzero(label == k)
        if nisl == 1:
            raise InputError(f"{where}: no slack bus: no bus of type 3 has an in-service generator; "
                             "mark a generator bus as type 3")
        raise InputError(
            f"{where}: the network has {nisl} islands and island {k + 1} ({len(members)} buses: "
            f"{_describe_buses(net, members)}) has no slack bus (type 3 with an in-service generator); "
            "connect it or give it a slack bus")
    dead = (label < 0) | np.isin(label, np.flatnonzero(dead_island))
    label = np.where(dead, -1, label)
    live = label >= 0
    label[live] = np.unique(label[live], return_inverse=True)[1]  # 0..k-1 without the dead islands' gaps
    ref = np.flatnonzero(is_ref & ~dead)
    pv = np.flatnonzero(is_pv & ~dead)
    pq = np.flatnonzero(~dead & ~is_ref & ~is_pv)
    return BusTypes(ref=ref, pv=pv, pq=pq, dead=np.flatnonzero(dead), island=label)
