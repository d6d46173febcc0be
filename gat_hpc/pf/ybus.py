"""Bus and branch admittance matrices (MATPOWER's branch model).

Each in-service branch is a pi model with series admittance ys = 1/(r + jx),
total line charging b, and an ideal transformer of complex ratio
t = tap*exp(j*shift) on the from side:

    [If]   [ (ys + jb/2)/|t|^2   -ys/conj(t) ] [Vf]
    [It] = [ -ys/t               ys + jb/2   ] [Vt]
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def branch_admittances(net, mask=None):
    """Per-branch (Yff, Yft, Ytf, Ytt), complex p.u.; zero for branches out of service or masked off."""
    live = net.branch_in_service() if mask is None else mask & net.branch_in_service()
    z = net.r + 1j * net.x
    ys = np.zeros(net.n_branch, dtype=complex)
    ys[live] = 1.0 / z[live]
    bc = np.where(live, net.b, 0.0)
    t = net.effective_tap()
    ytt = ys + 0.5j * bc
    yff = ytt / (t * np.conj(t))
    yft = -ys / np.conj(t)
    ytf = -ys / t
    return yff, yft, ytf, ytt


def make_ybus(net, mask=None):
    """Return (Ybus, Yf, Yt) as CSR matrices, p.u.

    Ybus is n x n with an explicit (possibly zero) diagonal entry for every bus,
    so its sparsity pattern holds every entry a Newton Jacobian can need.
    Yf and Yt are n_branch x n: If = Yf @ V and It = Yt @ V (rows of
    out-of-service branches are zero).
    """
    n, nb = net.n_bus, net.n_branch
    yff, yft, ytf, ytt = branch_admittances(net, mask)
    f, t = net.f_bus, net.t_bus
    ysh = net.bus_shunt()
    rows = np.concatenate([f, f, t, t, np.arange(n)])
    cols = np.concatenate([f, t, f, t, np.arange(n)])
    vals = np.concatenate([yff, yft, ytf, ytt, ysh])
    ybus = sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
    ybus.sum_duplicates()
    ybus.sort_indices()
    br = np.arange(nb)
    yf = sp.csr_matrix((np.concatenate([yff, yft]), (np.concatenate([br, br]), np.concatenate([f, t]))), shape=(nb, n))
    yt = sp.csr_matrix((np.concatenate([ytf, ytt]), (np.concatenate([br, br]), np.concatenate([f, t]))), shape=(nb, n))
    return ybus, yf, yt


def make_sbus(net):
    """Specified complex injection per bus, p.u.: in-service generation minus constant-power load."""
    return net.bus_gen() - net.bus_load()


def branch_entry_positions(ybus, net):
    """Positions in ``ybus.data`` of each branch's (f,f), (f,t), (t,f), (t,t) entries: 4 x n_branch.

    With them a branch outage updates Ybus in place of a rebuild:
    ``data[pos[0, k]] -= Yff[k]`` and so on (see :func:`outage_ybus`).
    """
    ybus = ybus.tocsr()
    n = ybus.shape[0]
    key = np.repeat(np.arange(n, dtype=np.int64), np.diff(ybus.indptr)) * n + ybus.indices
    order = np.argsort(key)  # CSR with sorted indices is already sorted; this keeps it general
    f, t = net.f_bus.astype(np.int64), net.t_bus.astype(np.int64)
    out = []
    for r, c in ((f, f), (f, t), (t, f), (t, t)):
        want = r * n + c
        idx = np.searchsorted(key[order], want)
        out.append(order[np.minimum(idx, len(key) - 1)])
    pos = np.vstack(out)
    return pos


def outage_ybus(ybus, pos, admittances, branches):
    """Ybus with ``branches`` switched out: same sparsity pattern (entries become explicit zeros
    where nothing else connects), new data array; the base matrix is not changed."""
    import scipy.sparse as sp

    data = ybus.data.copy()
    for p, y in zip(pos, admittances):
        np.subtract.at(data, p[branches], y[branches])
    return sp.csr_matrix((data, ybus.indices, ybus.indptr), shape=ybus.shape)
