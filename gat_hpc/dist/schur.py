"""Exact Newton steps by Schur complement on the rank interfaces, every rank factoring with KLU.

gat-hpc's default linear solver for the distributed power flow, used as a PETSc Python PC
(with ``-ksp_type preonly`` it is the whole linear solve). Each rank's unknowns split into
**interior** ones (buses whose neighbours are all on the rank) and **interface** ones (the
θ and |V| of buses with a neighbour on another rank). In that order the Jacobian is

    [A_II      A_IΓ ]      A_II, A_IΓ, A_ΓI: block diagonal, one block per rank
    [A_ΓI      A_ΓΓ ]      A_ΓΓ: interface rows; couples ranks through the cut lines

and the interface values solve the small system S x_Γ = g with the Schur complement

    S = A_ΓΓ - A_ΓI A_II^-1 A_IΓ,     g = b_Γ - A_ΓI A_II^-1 b_I,

whose diagonal blocks S_r = A_ΓrΓr - A_ΓrIr A_Ir^-1 A_IrΓr are rank-local.

Rank r factors its local block M_r = [A_Ir, A_IrΓr; A_ΓrIr, A_ΓrΓr] with KLU in a fixed order
(interior unknowns in AMD order, then its interface unknowns) without BTF: the last g_r
columns of that LU hold S_r (L_ΓΓ U_ΓΓ = P_Γ R_Γ^-1 S_r). KLU's sparse left-looking
factorisation touches only the nonzeros it needs, so S_r costs little more than the
factorisation. The S_r blocks and the cut-line entries are gathered on every rank and S is
factored densely (it has a few hundred rows for a bisection of a 70,000-bus network).
Applying the inverse then takes two KLU solves per rank:

    y = M_r^-1 [b_I; b_Γr]   ->  g_r = S_r y_Γ          (= b_Γr - A_ΓrIr A_Ir^-1 b_Ir)
    x_Γ = S^-1 g             (every rank, after gathering g)
    [x_I; x_Γr] = M_r^-1 [b_I; b_Γr - A_Γr,other x_Γ,other].

The factorisation is exact, so Newton takes the serial solver's iterations. On one rank
(no interface) this is plain KLU with refactorisation, as ``gat_hpc.pf.klu``.
KLU pivots by rows within a column; the order stays valid only if no interface row is
pivoted into an interior column. That is checked after every fresh factorisation; if it
happens (never seen on the MATPOWER cases) the factorisation is repeated with a smaller
pivot tolerance, and failing that the solve stops with a message naming MUMPS as the way out.
"""

from __future__ import annotations

import ctypes
import functools
import time

import numpy as np
import scipy.linalg as la
import scipy.linalg.blas as blas
import scipy.sparse as sp

from gat_hpc.errors import ConvergenceError
from gat_hpc.pf import klu as _klu


class _Numeric(ctypes.Structure):
    # klu_numeric of KLU 1.x and 2.x (int version), up to the fields read here
    _ip = ctypes.POINTER(ctypes.c_int)
    _fields_ = [("n", ctypes.c_int), ("nblocks", ctypes.c_int), ("lnz", ctypes.c_int), ("unz", ctypes.c_int),
                ("max_lnz_block", ctypes.c_int), ("max_unz_block", ctypes.c_int),
                ("Pnum", _ip), ("Pinv", _ip), ("Lip", _ip), ("Uip", _ip), ("Llen", _ip), ("Ulen", _ip),
                ("LUbx", ctypes.POINTER(ctypes.c_void_p)), ("LUsize", ctypes.POINTER(ctypes.c_size_t)),
                ("Udiag", ctypes.POINTER(ctypes.c_double)), ("Rs", ctypes.POINTER(ctypes.c_double))]


def _lib():
    lib = _klu._load()
    if lib is None:
        raise ConvergenceError("the KLU library (libklu) is not installed: the default distributed linear "
                               "solver needs it; use -pc_type lu -pc_factor_mat_solver_type mumps")
    if not hasattr(lib, "_gat_schur"):
        vp, ip, dp = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_double)
        cp = ctypes.POINTER(_klu._Common)
        lib.klu_analyze_given.argtypes = [ctypes.c_int, ip, ip, ip, ip, cp]
        lib.klu_analyze_given.restype = vp
        lib.klu_solve.argtypes = [vp, vp, ctypes.c_int, ctypes.c_int, dp, cp]
        lib.klu_extract.argtypes = [vp, vp, ip, ip, dp, ip, ip, dp, ip, ip, dp, ip, ip, dp, ip, cp]
        try:  # KLU's own triangular solves of one block (exported by libklu, not in klu.h)
            lib.klu_lsolve.argtypes = [ctypes.c_int, ip, ip, vp, ctypes.c_int, dp]
            lib.klu_lsolve.restype = None
            lib.klu_usolve.argtypes = [ctypes.c_int, ip, ip, vp, dp, ctypes.c_int, dp]
            lib.klu_usolve.restype = None
            lib._gat_split = True
        except AttributeError:
            lib._gat_split = False
        lib._gat_schur = True
    return lib


@functools.lru_cache(maxsize=None)
def _suitesparse(name):
    import ctypes.util

    lib = ctypes.CDLL(ctypes.util.find_library(name) or f"lib{name}.so.2")
    ip = ctypes.POINTER(ctypes.c_int)
    if name == "amd":
        lib.amd_order.argtypes = [ctypes.c_int, ip, ip, ip, ctypes.c_void_p, ctypes.c_void_p]
    else:
        lib.camd_order.argtypes = [ctypes.c_int, ip, ip, ip, ctypes.c_void_p, ctypes.c_void_p, ip]
    return lib


def interface_last_order(a, last):
    """Fill-reducing order of the square CSC/CSR pattern ``a`` with the nodes marked ``last`` at
    the end: SuiteSparse's constrained AMD (CAMD), which orders the other nodes knowing which
    ones come last; without libcamd, AMD on the other nodes followed by the ``last`` ones."""
    n = a.shape[0]
    ap = np.ascontiguousarray(a.indptr, dtype=np.int32)
    ai = np.ascontiguousarray(a.indices, dtype=np.int32)
    p = np.empty(n, dtype=np.int32)
    try:
        camd = _suitesparse("camd")
    except OSError:
        camd = None
    if camd is not None:
        group = np.ascontiguousarray(last, dtype=np.int32)
        status = camd.camd_order(n, _klu._iptr(ap), _klu._iptr(ai), _klu._iptr(p), None, None, _klu._iptr(group))
        if status >= 0 and np.all(last[p[n - int(np.sum(last)):]]):
            return p.astype(np.int64)
    first = np.flatnonzero(~last)
    inner = a[first][:, first]
    inner.sort_indices()
    ap = np.ascontiguousarray(inner.indptr, dtype=np.int32)
    ai = np.ascontiguousarray(inner.indices, dtype=np.int32)
    q = np.empty(len(first), dtype=np.int32)
    status = _suitesparse("amd").amd_order(len(first), _klu._iptr(ap), _klu._iptr(ai), _klu._iptr(q), None, None)
    if status < 0:
        raise RuntimeError(f"AMD ordering failed (status {status})")
    return np.concatenate([first[q], np.flatnonzero(last)])


_IN_PLACE_READING_CHECKED = False  # OrderedKLU.schur's reading of KLU's factors passed its check in this process


class OrderedKLU:
    """KLU of a CSC matrix factored in its given column order (no BTF, no fill-reducing
    reordering), whose last ``g`` rows and columns are the interface: :meth:`schur` returns
    their Schur complement. Refactors with the first factorisation's pivots while they stay good."""

    def __init__(self, indptr, indices, g):
        self.lib = _lib()
        self.n = len(indptr) - 1
        self.g = g
        self.ap = np.ascontiguousarray(indptr, dtype=np.int32)
        self.ai = np.ascontiguousarray(indices, dtype=np.int32)
        self.common = _klu._Common()
        self.lib.klu_defaults(ctypes.byref(self.common))
        self.common.btf = 0
        ident = np.arange(self.n, dtype=np.int32)
        sym = self.lib.klu_analyze_given(self.n, _klu._iptr(self.ap), _klu._iptr(self.ai), _klu._iptr(ident),
                                         _klu._iptr(ident), ctypes.byref(self.common))
        if not sym:
            raise ConvergenceError(f"KLU could not analyse this rank's Jacobian block (status {self.common.status})")
        self._sym = ctypes.c_void_p(sym)
        self._num = ctypes.c_void_p()
        self.row_perm = None
        self._fast = None  # reading S in place from KLU's factors: untried / checked good / not usable
        self._cols = None

    def factor(self, data):
        """Factor (or refactor) with values ``data`` (CSC order); raises ConvergenceError if singular."""
        lib, c = self.lib, ctypes.byref(self.common)
        self._data = np.ascontiguousarray(data, dtype=np.float64)
        ax = _klu._dptr(self._data)
        if self._num.value:
            if lib.klu_refactor(_klu._iptr(self.ap), _klu._iptr(self.ai), ax, self._sym, self._num, c) == 1:
                lib.klu_rcond(self._sym, self._num, c)
                if self.common.rcond > 1e-12:
                    return
            lib.klu_free_numeric(ctypes.byref(self._num), c)
            self._num = ctypes.c_void_p()
        for tol in (self.common.tol, 1e-8):
            self.common.tol = tol
            num = lib.klu_factor(_klu._iptr(self.ap), _klu._iptr(self.ai), ax, self._sym, c)
            if not num:
                raise ConvergenceError(f"the Newton Jacobian is singular (KLU status {self.common.status})")
            self._num = ctypes.c_void_p(num)
            self._cols = None  # a new numeric object: its LU layout differs, even at a reused address,
            # so the positions are found again (they stay put across refactorisations)
            if self._interface_kept():
                return
            lib.klu_free_numeric(ctypes.byref(self._num), c)
            self._num = ctypes.c_void_p()
        raise ConvergenceError("KLU had to pivot an interface row into the interior of a rank's block, so the "
                               "Schur complement cannot be read from its factors; use "
                               "-pc_type lu -pc_factor_mat_solver_type mumps")

    def _interface_kept(self):
        """True when the pivoting left the interface rows in the last g places."""
        n, g = self.n, self.g
        p = np.empty(n, dtype=np.int32)
        rs = np.empty(n)
        self.lib.klu_extract(self._num, self._sym, None, None, None, None, None, None, None, None, None,
                             _klu._iptr(p), None, _klu._dptr(rs), None, ctypes.byref(self.common))
        self.row_perm = p.astype(np.int64)
        return bool(np.all(p[n - g:] >= n - g))

    def schur(self):
        """The g x g Schur complement of the interface block, dense.

        Read from KLU's factors: L_ΓΓ U_ΓΓ = P_Γ R_Γ^-1 S. The trailing columns are read in
        place from KLU's numeric object (its column pointers stay put across refactorisations).
        The first time in a process, that reading is checked by one solve through KLU's own
        ``klu_solve``: the last g entries of M^-1 [0; w] are S^-1 w, so S times them must give w
        back (the reading depends on the library's layout of its factors, not on the matrix, so
        once it passed, later factorisations in the process skip the solve). If it does not,
        every later S of this factorisation comes from ``klu_extract``, which copies all of L and U.
        """
        global _IN_PLACE_READING_CHECKED
        if self.g == 0:
            return np.zeros((0, 0))
        if self._fast is None:
            try:
                s = self._schur_in_place()
                self._fast = _IN_PLACE_READING_CHECKED or self._solves_back(s)
            except (ValueError, IndexError):
                self._fast = False
            _IN_PLACE_READING_CHECKED = _IN_PLACE_READING_CHECKED or self._fast
            return s if self._fast else self._schur_by_extract()
        return self._schur_in_place() if self._fast else self._schur_by_extract()

    def _solves_back(self, s):
        """True when ``s`` is the Schur complement of the factored matrix: S (M^-1 [0; w])_Γ = w."""
        g, k = self.g, self.n - self.g
        w = 1.0 + np.arange(g) / g
        rhs = np.zeros(self.n)
        rhs[k:] = w
        y = self.solve(rhs)[k:]
        scale = np.max(np.abs(s)) * np.max(np.abs(y)) + np.max(w)
        return bool(np.all(np.isfinite(y)) and np.max(np.abs(s @ y - w)) <= 1e-9 * scale)

    def _columns(self):
        """Positions of the trailing g columns' L and U entries in KLU's LU block (as int32 and
        float64 views of it), computed once per numeric object."""
        num = ctypes.cast(self._num, ctypes.POINTER(_Numeric)).contents
        if num.nblocks != 1 or num.n != self.n:
            raise ValueError("KLU numeric object with BTF blocks")
        n, k = self.n, self.n - self.g
        lip, llen = (np.ctypeslib.as_array(p, shape=(n,)).astype(np.int64) for p in (num.Lip, num.Llen))
        uip, ulen = (np.ctypeslib.as_array(p, shape=(n,)).astype(np.int64) for p in (num.Uip, num.Ulen))
        units = int(num.LUsize[0])
        lu = (ctypes.c_double * units).from_address(num.LUbx[0])
        as_f = np.frombuffer(lu, dtype=np.float64)
        as_i = np.frombuffer(lu, dtype=np.int32)

        def entries(ip, ln):  # (index positions in as_i, value positions in as_f, column) of columns k..n-1
            cols = np.repeat(np.arange(k, n), ln[k:])
            within = np.arange(len(cols)) - np.repeat(np.cumsum(ln[k:]) - ln[k:], ln[k:])
            start = ip[k:][cols - k]
            return 2 * start + within, start + (ln[k:][cols - k] + 1) // 2 + within, cols - k

        self._cols = dict(as_f=as_f, as_i=as_i, L=entries(lip, llen), U=entries(uip, ulen),
                          udiag=np.ctypeslib.as_array(num.Udiag, shape=(n,)), pnum=np.ctypeslib.as_array(num.Pnum, shape=(n,)),
                          rs=np.ctypeslib.as_array(num.Rs, shape=(n,)) if num.Rs else None)

    def _schur_in_place(self):
        if self._cols is None:  # dropped with every fresh factorisation (a new numeric object)
            self._columns()
        c = self._cols
        n, g, k = self.n, self.g, self.n - self.g
        lower = np.eye(g)
        pi, pf, col = c["L"]
        lower[c["as_i"][pi] - k, col] = c["as_f"][pf]
        upper = np.zeros((g, g))
        pi, pf, col = c["U"]
        rows = c["as_i"][pi]
        mine = rows >= k
        upper[rows[mine] - k, col[mine]] = c["as_f"][pf[mine]]
        upper[np.arange(g), np.arange(g)] = c["udiag"][k:]
        prows = c["pnum"][k:].astype(np.int64)
        scale = c["rs"][prows] if c["rs"] is not None else np.ones(g)
        lu = blas.dtrmm(1.0, lower, upper, side=0, lower=1, diag=1)  # L U, L unit lower triangular
        s = np.empty((g, g))
        s[prows - k] = lu * scale[:, None]  # undo KLU's row pivoting and row scaling
        self.tail = (lower, upper, prows - k, scale)  # for the one-sweep solve (split_solve)
        return s

    def split_ready(self):
        """True when :meth:`lsolve` / :meth:`usolve` can be used: the factors were read in place
        (``schur`` set ``tail``) and libklu exports its triangular solves."""
        return bool(self._fast) and getattr(self.lib, "_gat_split", False) and self.g > 0

    def lsolve(self, b):
        """c = L^-1 P R^-1 b (KLU's row permutation and scaling, then the forward solve)."""
        c = self._cols
        pnum = c["pnum"]
        x = np.array(b, dtype=np.float64)[pnum]
        if c["rs"] is not None:
            x /= c["rs"][pnum]
        num = ctypes.cast(self._num, ctypes.POINTER(_Numeric)).contents
        self.lib.klu_lsolve(self.n, num.Lip, num.Llen, num.LUbx[0], 1, _klu._dptr(x))
        return x

    def usolve(self, c):
        """z = U^-1 c (in a new array)."""
        z = np.array(c, dtype=np.float64)
        num = ctypes.cast(self._num, ctypes.POINTER(_Numeric)).contents
        self.lib.klu_usolve(self.n, num.Uip, num.Ulen, num.LUbx[0], num.Udiag, 1, _klu._dptr(z))
        return z

    def _schur_by_extract(self):
        n, g = self.n, self.g
        head = ctypes.cast(self._num, ctypes.POINTER(_Numeric)).contents
        lnz, unz = head.lnz, head.unz
        lp, up = np.empty(n + 1, np.int32), np.empty(n + 1, np.int32)
        li, ui = np.empty(lnz, np.int32), np.empty(unz, np.int32)
        lx, ux = np.empty(lnz), np.empty(unz)
        rs = np.empty(n)
        ip, dp = _klu._iptr, _klu._dptr
        self.lib.klu_extract(self._num, self._sym, ip(lp), ip(li), dp(lx), ip(up), ip(ui), dp(ux), None, None, None,
                             None, None, dp(rs), None, ctypes.byref(self.common))
        k = n - g
        lower = sp.csc_matrix((lx[lp[k]:], li[lp[k]:] - k, lp[k:] - lp[k]), shape=(g, g))
        tail = sp.csc_matrix((ux[up[k]:], ui[up[k]:], up[k:] - up[k]), shape=(n, g))
        lu = (lower @ tail[k:]).toarray()
        rows = self.row_perm[k:]
        s = np.empty((g, g))
        s[rows - k] = lu * rs[rows][:, None]  # undo KLU's row pivoting and row scaling
        return s

    def solve(self, rhs):
        b = np.array(rhs, dtype=np.float64, copy=True)
        if self.n and self.lib.klu_solve(self._sym, self._num, self.n, 1, _klu._dptr(b), ctypes.byref(self.common)) != 1:
            raise ConvergenceError(f"KLU solve failed (status {self.common.status})")
        return b

    def close(self):
        c = ctypes.byref(self.common)
        if self._num.value:
            self.lib.klu_free_numeric(ctypes.byref(self._num), c)
            self._num = ctypes.c_void_p()
        if self._sym.value:
            self.lib.klu_free_symbolic(ctypes.byref(self._sym), c)
            self._sym = ctypes.c_void_p()


class SchurKLU:
    """PETSc Python PC context: the exact inverse of the distributed Jacobian (see module doc).

    ``eq``: the :class:`~gat_hpc.dist.equations.PowerFlowEquations` whose Jacobian values
    (``eq.data``, CSR rows ``eq.indptr``/``eq.indices`` with global columns) the SNES Jacobian
    callback has just filled; ``comm``: mpi4py communicator of the solve.
    """

    def __init__(self, eq, comm):
        self.eq = eq
        self.comm = comm
        self.timings = {"factor": 0.0, "interface": 0.0, "solve": 0.0}
        n, lo, hi = eq.n_local, eq.ulo, eq.uhi
        cols = eq.indices.astype(np.int64)
        mine = (cols >= lo) & (cols < hi)
        rows = np.repeat(np.arange(n), np.diff(eq.indptr))
        on_boundary = np.zeros(eq.layout.n_owned, dtype=bool)
        on_boundary[eq.layout.boundary] = True
        gam = np.sort(np.concatenate([eq.th_x[on_boundary[eq.th_bus]], eq.vm_x[on_boundary[eq.vm_bus]]]))
        self.g = g = len(gam)
        self.g_counts = np.array(comm.allgather(g))
        self.g_starts = np.concatenate([[0], np.cumsum(self.g_counts)])
        self.G = int(self.g_starts[-1])
        self.my_g0 = int(self.g_starts[comm.Get_rank()])
        self.plain = self.G == 0
        if self.plain:  # no interface anywhere: KLU on this rank's rows (one rank, or separate islands)
            self.csr = sp.csr_matrix((eq.data, cols - lo, eq.indptr), shape=(n, n))
            self.klu = _klu.KLU()
            return
        is_gam = np.zeros(n, dtype=bool)
        is_gam[gam] = True
        if not np.all(is_gam[rows[~mine]]):
            raise AssertionError("an interior row couples to another rank")
        # this rank's diagonal block, interface last, CSC, its values as positions into eq.data
        code = sp.csr_matrix((np.flatnonzero(mine) + 1.0, cols[mine] - lo, np.concatenate(
            [[0], np.cumsum(np.bincount(rows[mine], minlength=n))])), shape=(n, n))
        perm = interface_last_order(code, is_gam)
        inverse = np.empty(n, dtype=np.int64)
        inverse[perm] = np.arange(n)
        rows_first = code[perm]  # rows permuted (cheap for CSR); columns relabelled, not gathered
        m = sp.csr_matrix((rows_first.data, inverse[rows_first.indices], rows_first.indptr), shape=(n, n)).tocsc()
        m.sort_indices()
        self.perm = perm
        self.n_interior = n - g
        self.m_src = m.data.astype(np.int64) - 1
        self.klu = OrderedKLU(m.indptr, m.indices, g)
        # The interface system's unknowns: every rank's interface in its factorisation order.
        # Cut-line entries: interface rows of this rank, interface columns of other ranks.
        everyone = np.concatenate(comm.allgather(perm[n - g:] + lo))  # global unknown of each S row
        by_unknown = np.argsort(everyone)
        off = np.flatnonzero(~mine)
        at = np.searchsorted(everyone, cols[off], sorter=by_unknown)
        where = by_unknown[np.minimum(at, len(everyone) - 1)]
        if np.any(everyone[where] != cols[off]):
            raise AssertionError("a cut-line column is not an interface unknown")
        local_row = np.full(n, -1, dtype=np.int64)
        local_row[perm[n - g:]] = np.arange(g)
        self.off_pos = off
        self.off_row = local_row[rows[off]]  # 0..g-1
        self.off_col = where  # 0..G-1
        self.off_counts = np.array(comm.allgather(len(off)))
        self.all_off_row = np.concatenate(comm.allgather(self.off_row + self.my_g0))
        self.all_off_col = np.concatenate(comm.allgather(self.off_col))

    # ---------------------------------------------------------------- PETSc PC interface
    def setUp(self, pc):
        t0 = time.perf_counter()
        error = None
        try:
            if self.plain:
                self.klu.factor(self.csr)
            else:
                self.klu.factor(self.eq.data[self.m_src])
        except ConvergenceError as exc:
            error = exc
        t1 = time.perf_counter()
        self.timings["factor"] += t1 - t0  # this rank's KLU alone
        # every rank learns of a failure anywhere (this is also where the ranks wait for each other)
        failed = [m for m in self.comm.allgather(None if error is None else str(error)) if m is not None]
        if failed:
            error = error or ConvergenceError(failed[0])
            try:
                raise error
            finally:
                error = None  # no cycle frame -> error -> traceback -> frame (which holds the PC)
        if not self.plain:
            self._factor_interface()
        self.timings["interface"] += time.perf_counter() - t1

    def _factor_interface(self):
        """Gather the S_r blocks and the cut-line values; factor S (same on every rank)."""
        s_r = self.klu.schur()
        mine = np.concatenate([s_r.ravel(), self.eq.data[self.off_pos]])
        sizes = self.g_counts ** 2 + self.off_counts
        buf = np.empty(int(sizes.sum()))
        self.comm.Allgatherv(mine, [buf, sizes])
        G = self.G
        S = np.zeros((G, G))
        at = 0
        for r, gr in enumerate(self.g_counts):
            a = self.g_starts[r]
            S[a:a + gr, a:a + gr] = buf[at:at + gr * gr].reshape(gr, gr)
            at += gr * gr + self.off_counts[r]
        off_vals = np.concatenate([buf[sum(sizes[:r]) + self.g_counts[r] ** 2: sum(sizes[:r + 1])]
                                   for r in range(len(sizes))])
        np.add.at(S, (self.all_off_row, self.all_off_col), off_vals)
        self.s_r = s_r
        self.s_lu = la.lu_factor(S, check_finite=False)
        if np.any(np.diag(self.s_lu[0]) == 0):
            raise ConvergenceError("the interface (Schur complement) system of the Newton step is singular")

    def apply(self, pc, b, x):
        t0 = time.perf_counter()
        ba = b.getArray(readonly=True)
        xa = x.getArray()
        if self.plain:
            xa[:] = self.klu.solve(ba)
        else:
            k = self.n_interior
            bm = ba[self.perm]
            mine = slice(self.my_g0, self.my_g0 + self.g)
            if self.klu.split_ready():
                # one forward and one backward sweep: with P R^-1 A = L U (interface last),
                # the reduced right-hand side is R_G P_G^-1 L_GG c_G for c = L^-1 P R^-1 b, and
                # U [x_I; x_G] = [c_I; U_GG x_G] gives the interior once x_G is known
                lower, upper, rows, scale = self.klu.tail
                c = self.klu.lsolve(bm)
                g_r = np.empty(self.g)
                g_r[rows] = (lower @ c[k:]) * scale
                g = np.empty(self.G)
                self.comm.Allgatherv(g_r, [g, self.g_counts])
                x_gam = la.lu_solve(self.s_lu, g, check_finite=False)
                c[k:] = upper @ x_gam[mine]
                z = self.klu.usolve(c)
            else:  # two full solves
                y = self.klu.solve(bm)
                g_r = self.s_r @ y[k:]
                g = np.empty(self.G)
                self.comm.Allgatherv(g_r, [g, self.g_counts])
                x_gam = la.lu_solve(self.s_lu, g, check_finite=False)
                w = bm[k:].copy()
                if len(self.off_pos):
                    w -= np.bincount(self.off_row, self.eq.data[self.off_pos] * x_gam[self.off_col], minlength=self.g)
                z = self.klu.solve(np.concatenate([bm[:k], w]))
            z[k:] = x_gam[mine]
            xa[self.perm] = z
        self.timings["solve"] += time.perf_counter() - t0

    def view(self, pc, viewer=None):
        from petsc4py import PETSc

        kind = "KLU on each rank" if self.plain else \
            f"Schur complement on {self.G} interface unknowns, KLU on each rank's block"
        PETSc.Sys.Print(f"  gat-hpc exact solve: {kind}", comm=pc.getComm())

    def destroy(self, pc=None):
        self.klu.close()
