"""AC power flow by Newton-Raphson in polar coordinates.

Unknowns x = [Va(pv, pq); Vm(pq)], equations F = [P mismatch(pv, pq); Q mismatch(pq)],
Jacobian from dS/dVa and dS/dVm. The Jacobian's pattern is built once per
(pv, pq) split; each iteration only fills its values from the Ybus nonzeros
with one gather (``JacobianMap``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from gat_hpc.pf.linsolve import make_solver


def dsbus_dv(ybus, V):
    """Return (dS_dVm, dS_dVa), sparse with Ybus's pattern (MATPOWER's dSbus_dV, polar).

    dS/dVm = diag(V) conj(Ybus diag(V/|V|)) + conj(diag(Ibus)) diag(V/|V|)
    dS/dVa = j diag(V) conj(diag(Ibus) - Ybus diag(V))
    """
    ibus = ybus @ V
    vn = V / np.abs(V)
    dvm = sp.diags(V) @ np.conj(ybus @ sp.diags(vn)) + sp.diags(np.conj(ibus) * vn)
    dva = 1j * sp.diags(V) @ np.conj(sp.diags(ibus) - ybus @ sp.diags(V))
    return dvm.tocsr(), dva.tocsr()


class JacobianMap:
    """Fills the polar Newton Jacobian from values on Ybus's nonzeros.

    ``ybus`` must be CSR with sorted indices and an explicit diagonal entry for every bus.
    """

    def __init__(self, ybus, pv, pq):
        n = ybus.shape[0]
        self.ybus = ybus
        self.nnz = nnz = ybus.nnz
        self.rows = np.repeat(np.arange(n), np.diff(ybus.indptr))
        self.cols = ybus.indices.astype(np.int64)
        self.diag_pos = np.flatnonzero(self.rows == self.cols)
        if len(self.diag_pos) != n:
            raise ValueError("Ybus needs an explicit diagonal entry for every bus")
        self.pvpq = np.concatenate([pv, pq]).astype(np.int64)
        self.pq = np.asarray(pq, dtype=np.int64)
        # Encode (block, source nonzero) as a float, let scipy build the block matrix, decode.
        code = sp.csr_matrix((np.arange(1, nnz + 1, dtype=np.float64), ybus.indices, ybus.indptr), shape=(n, n))
        a = code[self.pvpq][:, self.pvpq]
        b = code[self.pvpq][:, self.pq]
        c = code[self.pq][:, self.pvpq]
        d = code[self.pq][:, self.pq]
        b.data += nnz
        c.data += 2 * nnz
        d.data += 3 * nnz
        J = sp.bmat([[a, b], [c, d]], format="csr")
        J.sort_indices()
        self.src = J.data.astype(np.int64) - 1
        J.data = np.zeros(J.nnz)
        self.J = J
        self._w = np.empty(4 * nnz)

    def with_ybus(self, ybus):
        """The same map for a Ybus with identical sparsity pattern (e.g. a branch switched out,
        whose entries stay as explicit zeros): shares the Jacobian, so a factorisation's
        symbolic analysis carries over."""
        shared = ybus.indices is self.ybus.indices and ybus.indptr is self.ybus.indptr
        if not shared and (ybus.nnz != self.nnz or not np.array_equal(ybus.indices, self.ybus.indices)
                           or not np.array_equal(ybus.indptr, self.ybus.indptr)):
            raise ValueError("with_ybus needs the same sparsity pattern")
        other = object.__new__(JacobianMap)
        other.__dict__.update(self.__dict__)
        other.ybus = ybus
        return other

    def fill(self, V, ibus):
        """Write the Jacobian at V into ``self.J`` (same object every call) and return it."""
        vr, vc = V[self.rows], V[self.cols]
        y = self.ybus.data
        vn = V / np.abs(V)
        dva = -1j * vr * np.conj(y * vc)
        dvm = vr * np.conj(y * vn[self.cols])
        dp = self.diag_pos
        dva[dp] += 1j * V * np.conj(ibus)
        dvm[dp] += np.conj(ibus) * vn
        nnz, w = self.nnz, self._w
        w[:nnz] = dva.real
        w[nnz:2 * nnz] = dvm.real
        w[2 * nnz:3 * nnz] = dva.imag
        w[3 * nnz:] = dvm.imag
        np.take(w, self.src, out=self.J.data)
        return self.J


@dataclass
class NewtonResult:
    V: np.ndarray
    converged: bool
    iterations: int
    norm_f: float  # max |mismatch| over the equations, p.u.
    timings: dict = field(default_factory=dict)


def mismatch(ybus, V, sbus, pvpq, pq):
    ibus = ybus @ V
    mis = V * np.conj(ibus) - sbus
    return np.concatenate([mis[pvpq].real, mis[pq].imag]), ibus


def newton(ybus, sbus, V0, pv, pq, tol=1e-8, max_iter=30, solver="auto", jmap=None, callback=None):
    """Solve the power flow equations; returns a :class:`NewtonResult`.

    ``tol`` is on the max-norm of the mismatch in p.u. ``solver`` is a linear
    solver name (see ``gat_hpc.pf.linsolve``) or an object with factor/solve.
    ``jmap`` may pass a :class:`JacobianMap` built earlier for the same pv/pq.
    ``callback(iteration, norm_f)`` is called after each mismatch evaluation.
    """
    t_start = time.perf_counter()
    pv = np.asarray(pv, dtype=np.int64)
    pq = np.asarray(pq, dtype=np.int64)
    pvpq = np.concatenate([pv, pq])
    npvpq = len(pvpq)
    V = np.array(V0, dtype=complex)
    va, vm = np.angle(V), np.abs(V)
    lu = make_solver(solver) if isinstance(solver, str) else solver
    t_jac = t_fac = t_sol = 0.0
    if jmap is None:
        t0 = time.perf_counter()
        jmap = JacobianMap(ybus, pv, pq)
        t_jac += time.perf_counter() - t0
    F, ibus = mismatch(ybus, V, sbus, pvpq, pq)
    norm_f = float(np.max(np.abs(F))) if F.size else 0.0
    it = 0
    if callback:
        callback(it, norm_f)
    converged = norm_f < tol
    try:
        while not converged and it < max_iter:
            it += 1
            t0 = time.perf_counter()
            J = jmap.fill(V, ibus)
            t1 = time.perf_counter()
            lu.factor(J)
            t2 = time.perf_counter()
            dx = lu.solve(-F)
            t3 = time.perf_counter()
            t_jac += t1 - t0
            t_fac += t2 - t1
            t_sol += t3 - t2
            va[pvpq] += dx[:npvpq]
            vm[pq] += dx[npvpq:]
            V = vm * np.exp(1j * va)
            F, ibus = mismatch(ybus, V, sbus, pvpq, pq)
            norm_f = float(np.max(np.abs(F))) if F.size else 0.0
            if callback:
                callback(it, norm_f)
            if not np.isfinite(norm_f) or norm_f > 1e10:
                break  # diverged: further iterations only overflow
            converged = norm_f < tol
    finally:
        if isinstance(solver, str):
            lu.close()
    timings = dict(jacobian=t_jac, factor=t_fac, solve=t_sol, total=time.perf_counter() - t_start)
    return NewtonResult(V=V, converged=bool(converged), iterations=it, norm_f=norm_f, timings=timings)
