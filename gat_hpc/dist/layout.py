"""Which rank owns which bus, and each rank's rows of Ybus.

Given the partition (``part[b]`` = owning rank of bus ``b``), buses are renumbered so that
rank 0 owns positions 0..n0-1, rank 1 the next n1, and so on (in case-file order within a
rank). Positions are the numbering of the distributed bus-state vector (θ and |V| of a bus
side by side, block size 2), so a rank's buses are one contiguous block of it.

A rank's **owned** buses are its block; its **ghost** buses are the buses of other ranks
joined to an owned bus by an in-service branch: the residual of an owned bus needs their
voltages, which arrive by a PETSc scatter of the ghosted bus-state vector.

Every rank holds the whole (replicated) network and builds only its own rows of Ybus.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from gat_hpc.pf.ybus import branch_admittances


class BusLayout:
    """Bus ownership, renumbering, ghosts and this rank's Ybus rows.

    Attributes (positions are indices into the distributed bus numbering):
    ``order``: bus index at each position (energised buses only); ``pos``: position of each
    bus (-1 for buses left out); ``starts``: first position of each rank (length size+1);
    ``lo``, ``hi``: this rank's positions; ``owned``: bus indices of this rank, in position
    order; ``ghost_pos``: positions of the ghost buses (ascending); ``ybus``: this rank's rows
    of Ybus, CSR of shape (n_owned, n_owned + n_ghost), columns numbered owned first (in
    position order) then ghosts (in ``ghost_pos`` order), with an explicit diagonal entry.
    """

    def __init__(self, net, part, comm):
        self.comm = comm
        self.rank, self.size = comm.getRank(), comm.getSize()
        n = net.n_bus
        live = np.flatnonzero(part >= 0)
        self.order = live[np.argsort(part[live], kind="stable")]
        self.pos = np.full(n, -1, dtype=np.int64)
        self.pos[self.order] = np.arange(len(self.order))
        counts = np.bincount(part[live], minlength=self.size)
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.lo, self.hi = int(self.starts[self.rank]), int(self.starts[self.rank + 1])
        self.owned = self.order[self.lo:self.hi]
        self.n_owned = self.hi - self.lo
        self.ybus, self.ghost_pos = self._local_ybus(net)
        self.n_ghost = len(self.ghost_pos)
        self.ghost = self.order[self.ghost_pos]
        # owned buses with a ghost neighbour: the only ones coupled to other ranks
        row = np.repeat(np.arange(self.n_owned), np.diff(self.ybus.indptr))
        self.boundary = np.unique(row[self.ybus.indices >= self.n_owned])

    @property
    def n_live(self):
        return len(self.order)

    def _local_ybus(self, net):
        """Rows of Ybus for the owned buses, from the branches with at least one owned end."""
        lo, hi = self.lo, self.hi
        on = net.branch_in_service()
        pf, pt = self.pos[net.f_bus], self.pos[net.t_bus]
        mine_f = on & (pf >= lo) & (pf < hi)
        mine_t = on & (pt >= lo) & (pt < hi)
        far = np.concatenate([pt[mine_f], pf[mine_t]])
        ghost_pos = np.unique(far[(far < lo) | (far >= hi)])
        yff, yft, ytf, ytt = branch_admittances(net)

        def col(p):  # local column of position p: owned first, then ghosts
            return np.where((p >= lo) & (p < hi), p - lo, (hi - lo) + np.searchsorted(ghost_pos, p))

        diag = np.arange(hi - lo)
        rows = np.concatenate([pf[mine_f] - lo, pf[mine_f] - lo, pt[mine_t] - lo, pt[mine_t] - lo, diag])
        cols = np.concatenate([col(pf[mine_f]), col(pt[mine_f]), col(pf[mine_t]), col(pt[mine_t]), diag])
        vals = np.concatenate([yff[mine_f], yft[mine_f], ytf[mine_t], ytt[mine_t], net.bus_shunt()[self.order[lo:hi]]])
        shape = (hi - lo, hi - lo + len(ghost_pos))
        ybus = sp.coo_matrix((vals, (rows, cols)), shape=shape).tocsr()
        ybus.sum_duplicates()
        ybus.sort_indices()
        return ybus, ghost_pos

    def ghosted_state(self):
        """A new ghosted PETSc Vec of bus states (θ, |V| per bus, block size 2): this rank's
        buses, then room for its ghosts, filled by ``ghostUpdate``."""
        from petsc4py import PETSc

        vec = PETSc.Vec().createGhost(self.ghost_pos.astype(PETSc.IntType), (2 * self.n_owned, 2 * self.n_live),
                                      bsize=2, comm=self.comm)
        vec.setBlockSize(2)
        return vec
