"""Sparse LU for Newton steps: factor once per pattern, refactor values each iteration.

Backends:
- ``klu``: SuiteSparse KLU called directly (:mod:`gat_hpc.pf.klu`): the fastest
  factorisation measured on power-flow Jacobians here (PLATFORM.md part D), and the
  only one that refactors with the first factorisation's pivots (``klu_refactor``);
- ``petsc-klu`` / ``umfpack``: KLU or UMFPACK through petsc4py (KSPPREONLY + PCLU), with
  the symbolic analysis kept while the pattern stays the same;
- ``superlu``: scipy's SuperLU (``splu``); always available.
``auto`` picks ``klu`` when libklu loads, else ``petsc-klu`` when petsc4py imports, else
``superlu`` (e.g. on the GPU machine's numpy 2 Python).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gat_hpc.errors import ConvergenceError


def petsc_available():
    try:
        from petsc4py import PETSc  # noqa: F401
    except Exception:  # ImportError, or a broken MPI/PETSc install
        return False
    return True


SOLVERS = ("auto", "klu", "petsc-klu", "umfpack", "superlu")


def make_solver(kind="auto"):
    from gat_hpc.pf import klu

    if kind == "auto":
        kind = "klu" if klu.available() else "petsc-klu" if petsc_available() else "superlu"
    if kind == "klu":
        if not klu.available():
            from gat_hpc.errors import InputError
            raise InputError("the KLU library (libklu) is not installed; choose another --linear-solver")
        return klu.KLU()
    if kind == "petsc-klu":
        return PetscLU("klu")
    if kind == "umfpack":
        return PetscLU("umfpack")
    if kind == "superlu":
        return ScipyLU()
    raise ValueError(f"unknown linear solver '{kind}' (expected one of {', '.join(SOLVERS)})")


class ScipyLU:
    """scipy SuperLU; factors each matrix from scratch (COLAMD ordering)."""

    name = "superlu"

    def factor(self, J):
        try:
            self._lu = spla.splu(J.tocsc(), permc_spec="COLAMD")
        except RuntimeError as exc:  # "Factor is exactly singular"
            raise ConvergenceError(f"the Newton Jacobian is singular ({exc})") from None

    def solve(self, rhs):
        return self._lu.solve(rhs)

    def close(self):
        self._lu = None


class PetscLU:
    """A sequential PETSc AIJ matrix + KSPPREONLY/PCLU with an external factor package.

    The matrix is created on the first ``factor`` call; later calls with the
    same pattern only copy new values in, and PETSc refactors numerically
    (symbolic analysis reused).
    """

    def __init__(self, package):
        from petsc4py import PETSc

        self.PETSc = PETSc
        self.name = package
        self.package = package
        self._A = None
        self._ksp = None
        self._pattern = None

    def factor(self, J):
        PETSc = self.PETSc
        J = J.tocsr()
        indptr = J.indptr.astype(PETSc.IntType, copy=False)
        indices = J.indices.astype(PETSc.IntType, copy=False)
        if self._A is None or self._pattern is None or self._pattern[0] is not J.indptr or J.shape != self._shape:
            self.close()
            self._shape = J.shape
            self._A = PETSc.Mat().createAIJ(size=J.shape, csr=(indptr, indices, J.data), comm=PETSc.COMM_SELF)
            ksp = PETSc.KSP().create(comm=PETSc.COMM_SELF)
            ksp.setOperators(self._A)
            ksp.setType("preonly")
            pc = ksp.getPC()
            pc.setType("lu")
            pc.setFactorSolverType(self.package)
            self._ksp = ksp
            self._x = PETSc.Vec().createSeq(J.shape[0], comm=PETSc.COMM_SELF)
            self._b = PETSc.Vec().createSeq(J.shape[0], comm=PETSc.COMM_SELF)
            self._pattern = (J.indptr,)
        else:
            self._A.setValuesCSR(indptr, indices, J.data)
            self._A.assemble()
        try:
            # PCSetUp (not KSPSetUp) notices the new matrix values and refactors now, so the
            # factorisation is timed here rather than inside the next solve
            self._ksp.getPC().setUp()
        except self.PETSc.Error as exc:
            raise ConvergenceError(f"the Newton Jacobian could not be factored ({exc})") from None

    def solve(self, rhs):
        self._b.getArray()[:] = rhs
        self._ksp.solve(self._b, self._x)
        if self._ksp.getConvergedReason() < 0:  # e.g. a zero pivot in the factorisation
            raise ConvergenceError("the Newton Jacobian is singular (the linear solve failed)")
        return self._x.getArray().copy()

    def close(self):
        for obj in (self._ksp, self._A, getattr(self, "_x", None), getattr(self, "_b", None)):
            if obj is not None:
                obj.destroy()
        self._ksp = self._A = None
        self._pattern = None


def reference_solve(J, rhs):
    """Plain scipy solve, the readable twin the tests compare the fast paths with."""
    return spla.spsolve(sp.csc_matrix(J), np.asarray(rhs))
