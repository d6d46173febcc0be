"""SuiteSparse KLU called directly through ctypes: factor once, then refactor.

PETSc's KLU interface re-runs the full pivoting factorisation at every Newton step;
KLU's own ``klu_refactor`` reuses the pivot sequence of the first factorisation and is
several times cheaper (see benchmarks/README.md). This module loads the system's
``libklu`` (Debian ships it with PETSc: ``libklu1``); where it is missing,
:func:`available` is False and callers use another solver.

Matrices are given in CSR (scipy's default). CSR arrays of J are the CSC arrays of J^T, so
KLU factors J^T and ``klu_tsolve`` solves J x = b with no copy or transpose of the matrix.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

_LIB = None
_TRIED = False


class _Common(ctypes.Structure):
    # klu_common of KLU 1.x / 2.x (SuiteSparse 5 and 7), 32-bit integer version
    _fields_ = [
        ("tol", ctypes.c_double), ("memgrow", ctypes.c_double), ("initmem_amd", ctypes.c_double),
        ("initmem", ctypes.c_double), ("maxwork", ctypes.c_double),
        ("btf", ctypes.c_int), ("ordering", ctypes.c_int), ("scale", ctypes.c_int),
        ("user_order", ctypes.c_void_p), ("user_data", ctypes.c_void_p),
        ("halt_if_singular", ctypes.c_int), ("status", ctypes.c_int), ("nrealloc", ctypes.c_int),
        ("structural_rank", ctypes.c_int), ("numerical_rank", ctypes.c_int), ("singular_col", ctypes.c_int),
        ("noffdiag", ctypes.c_int),
        ("flops", ctypes.c_double), ("rcond", ctypes.c_double), ("condest", ctypes.c_double),
        ("rgrowth", ctypes.c_double), ("work", ctypes.c_double),
        ("memusage", ctypes.c_size_t), ("mempeak", ctypes.c_size_t),
        ("_spare", ctypes.c_char * 256),  # room in case a newer KLU adds fields at the end
    ]


def _load():
    global _LIB, _TRIED
    if _TRIED:
        return _LIB
    _TRIED = True
    names = [ctypes.util.find_library("klu"), "libklu.so.2", "libklu.so.1", "libklu.so"]
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        vp, ip, dp = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_double)
        cp = ctypes.POINTER(_Common)
        lib.klu_defaults.argtypes = [cp]
        lib.klu_analyze.argtypes = [ctypes.c_int, ip, ip, cp]
        lib.klu_analyze.restype = vp
        lib.klu_factor.argtypes = [ip, ip, dp, vp, cp]
        lib.klu_factor.restype = vp
        lib.klu_refactor.argtypes = [ip, ip, dp, vp, vp, cp]
        lib.klu_tsolve.argtypes = [vp, vp, ctypes.c_int, ctypes.c_int, dp, cp]
        lib.klu_free_symbolic.argtypes = [ctypes.POINTER(vp), cp]
        lib.klu_free_numeric.argtypes = [ctypes.POINTER(vp), cp]
        lib.klu_rcond.argtypes = [vp, vp, cp]
        common = _Common()
        lib.klu_defaults(ctypes.byref(common))
        # the documented defaults: a different layout would not read back like this
        if abs(common.tol - 0.001) > 1e-15 or common.btf != 1 or common.ordering != 0 or common.scale != 2:
            continue
        _LIB = lib
        return lib
    return None


def available():
    return _load() is not None


def _iptr(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_int))


def _dptr(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


class KLU:
    """Sparse LU of a square CSR matrix with KLU; ``factor`` refactors when the pattern is the same."""

    name = "klu"

    def __init__(self):
        self.lib = _load()
        if self.lib is None:
            raise RuntimeError("libklu is not available")
        self.common = _Common()
        self.lib.klu_defaults(ctypes.byref(self.common))
        self._sym = ctypes.c_void_p()
        self._num = ctypes.c_void_p()
        self._pattern = None

    def factor(self, J):
        from gat_hpc.errors import ConvergenceError

        J = J.tocsr()
        n = J.shape[0]
        same = self._pattern is not None and self._pattern[0] is J.indptr and self._pattern[1] is J.indices
        if not same:
            self.close()
            self._indptr = np.ascontiguousarray(J.indptr, dtype=np.int32)
            self._indices = np.ascontiguousarray(J.indices, dtype=np.int32)
            self._n = n
            sym = self.lib.klu_analyze(n, _iptr(self._indptr), _iptr(self._indices), ctypes.byref(self.common))
            if not sym:
                raise ConvergenceError(f"KLU could not analyse the Jacobian (status {self.common.status})")
            self._sym = ctypes.c_void_p(sym)
            self._pattern = (J.indptr, J.indices)
        data = np.ascontiguousarray(J.data, dtype=np.float64)
        self._data = data
        if self._num.value:
            ok = self.lib.klu_refactor(_iptr(self._indptr), _iptr(self._indices), _dptr(data), self._sym,
                                       self._num, ctypes.byref(self.common))
            if ok == 1:
                # a refactorisation keeps the old pivots; if they went bad, factor afresh
                self.lib.klu_rcond(self._sym, self._num, ctypes.byref(self.common))
                if self.common.rcond > 1e-12:
                    return
            self.lib.klu_free_numeric(ctypes.byref(self._num), ctypes.byref(self.common))
            self._num = ctypes.c_void_p()
        num = self.lib.klu_factor(_iptr(self._indptr), _iptr(self._indices), _dptr(data), self._sym,
                                  ctypes.byref(self.common))
        if not num:
            raise ConvergenceError(f"the Newton Jacobian is singular (KLU status {self.common.status})")
        self._num = ctypes.c_void_p(num)

    def solve(self, rhs):
        """x with J x = rhs; rhs of shape (n,) or (n, k)."""
        from gat_hpc.errors import ConvergenceError

        b = np.array(rhs, dtype=np.float64, order="F", copy=True)
        nrhs = 1 if b.ndim == 1 else b.shape[1]
        ok = self.lib.klu_tsolve(self._sym, self._num, self._n, nrhs, _dptr(b), ctypes.byref(self.common))
        if ok != 1:
            raise ConvergenceError(f"KLU solve failed (status {self.common.status})")
        return b

    def close(self):
        if self._num.value:
            self.lib.klu_free_numeric(ctypes.byref(self._num), ctypes.byref(self.common))
            self._num = ctypes.c_void_p()
        if self._sym.value:
            self.lib.klu_free_symbolic(ctypes.byref(self._sym), ctypes.byref(self.common))
            self._sym = ctypes.c_void_p()
        self._pattern = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class KLUFactor:
    """A one-off factorisation with a ``solve`` like scipy's splu (used for the DC model)."""

    def __init__(self, A):
        import scipy.sparse as sp

        self._klu = KLU()
        self._A = sp.csr_matrix(A)
        self._A.sort_indices()
        self._klu.factor(self._A)

    def solve(self, rhs):
        return self._klu.solve(rhs)
