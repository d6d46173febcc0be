"""The power-flow equations on one rank: unknowns, residual and Jacobian rows, vectorised.

Unknowns are numbered bus by bus in the distributed bus order (``BusLayout``): a PQ bus
has θ then |V|, a PV bus θ, a slack bus none. A rank's buses are consecutive, so its
unknowns are one contiguous block, and θ and |V| of a bus (its P and Q equations) are
never split across ranks. The equations are numbered like the unknowns: row θ_i is the
P mismatch of bus i, row |V|_i its Q mismatch, as in the serial solver
(``gat_hpc.pf.newton``), only in another order.

Per Newton iteration each rank writes its unknowns into the ghosted bus-state vector,
scatters the ghost values in, forms I = Y_local V_local and the mismatch of its buses,
and fills the values of its Jacobian rows from dS/dθ and dS/d|V| on its Ybus nonzeros
with one gather (the pattern and the gather map are built once per set of bus roles).
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import scipy.sparse as sp

PQ_ROLE, PV_ROLE, REF_ROLE = 0, 1, 2


class PowerFlowEquations:
    """Residual and Jacobian of the owned equations for given bus roles.

    ``layout``: the :class:`~gat_hpc.dist.layout.BusLayout`; ``types``: BusTypes (ref/pv/pq);
    ``sbus_owned``: specified complex injection of the owned buses, p.u.; ``V``: complex
    voltage of every bus (original order): the start, and the fixed values (slack θ and |V|,
    PV |V|). Creates the PETSc objects (unknown vectors, MPIAIJ Jacobian); call
    :meth:`destroy` when done.
    """

    def __init__(self, layout, types, sbus_owned, V):
        from petsc4py import PETSc

        self.layout = L = layout
        comm = L.comm
        self._mpi = comm.tompi4py()
        role = np.full(L.n_live, PQ_ROLE, dtype=np.int8)
        role[L.pos[types.pv]] = PV_ROLE
        role[L.pos[types.ref]] = REF_ROLE
        n_unk = np.choose(role, [2, 1, 0]).astype(np.int64)  # unknowns per position
        first = np.concatenate([[0], np.cumsum(n_unk)])
        self.n_global = int(first[-1])
        self.unk_starts = first[L.starts]
        self.ulo, self.uhi = int(self.unk_starts[L.rank]), int(self.unk_starts[L.rank + 1])
        self.n_local = self.uhi - self.ulo
        theta = np.where(role != REF_ROLE, first[:-1], -1)  # global unknown index of θ per position
        vmag = np.where(role == PQ_ROLE, first[:-1] + 1, -1)  # ... and of |V|

        # owned buses (local index 0..n_owned-1) with a θ or |V| unknown, and where it sits locally
        own_pos = np.arange(L.lo, L.hi)
        self.th_bus = np.flatnonzero(theta[own_pos] >= 0)
        self.vm_bus = np.flatnonzero(vmag[own_pos] >= 0)
        self.th_x = theta[own_pos][self.th_bus] - self.ulo
        self.vm_x = vmag[own_pos][self.vm_bus] - self.ulo
        self.sbus = np.asarray(sbus_owned, dtype=complex)

        # fixed and starting bus states of owned buses
        v_own = np.asarray(V)[L.owned]
        self.state = L.ghosted_state()
        st = self.state.getArray().reshape(-1, 2)
        st[:, 0] = np.angle(v_own)
        st[:, 1] = np.abs(v_own)

        # Jacobian pattern: local columns of Ybus -> global unknowns
        col_pos = np.concatenate([own_pos, L.ghost_pos])
        self._pattern(L.ybus, theta[col_pos], vmag[col_pos], theta[own_pos], vmag[own_pos])

        self.x = PETSc.Vec().createMPI((self.n_local, self.n_global), comm=comm)
        xa = self.x.getArray()
        xa[self.th_x] = st[self.th_bus, 0]
        xa[self.vm_x] = st[self.vm_bus, 1]
        self.f = self.x.duplicate()
        self.J = PETSc.Mat().createAIJ(size=((self.n_local, self.n_global), (self.n_local, self.n_global)), comm=comm)
        # distinct values at first, so the direct writer can check it sees the entries in our order
        self.J.setPreallocationCSR((self.indptr, self.indices, np.arange(1.0, len(self.src) + 1)))
        self.J.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, True)
        self.J.setOption(PETSc.Mat.Option.NO_OFF_PROC_ENTRIES, True)
        self.J.assemble()
        self.values = MatValues(self.J, self.indices, self.ulo, self.uhi)
        self._v = self._i = None
        self._x_at = None
        self.timings = {"residual": 0.0, "jacobian": 0.0}

    # ------------------------------------------------------------------ pattern
    def _pattern(self, ybus, th_col, vm_col, th_row, vm_row):
        """CSR pattern (global columns) of the owned Jacobian rows and the gather map
        ``src`` from [dθ.real, d|V|.real, dθ.imag, d|V|.imag] on Ybus nonzeros to its values."""
        from petsc4py import PETSc

        nnz = ybus.nnz
        r = np.repeat(np.arange(ybus.shape[0]), np.diff(ybus.indptr))
        c = ybus.indices.astype(np.int64)
        self.y_rows, self.y_cols = r, c
        self.y_diag = np.flatnonzero(r == c)
        e = np.arange(nnz, dtype=np.int64)
        blocks = [(th_row[r], th_col[c], e), (th_row[r], vm_col[c], e + nnz),
                  (vm_row[r], th_col[c], e + 2 * nnz), (vm_row[r], vm_col[c], e + 3 * nnz)]
        rows = np.concatenate([b[0] for b in blocks])
        cols = np.concatenate([b[1] for b in blocks])
        src = np.concatenate([b[2] for b in blocks])
        keep = (rows >= 0) & (cols >= 0)
        # scipy's COO -> CSR is a counting sort by row; the source index travels as the value
        code = sp.csr_matrix((src[keep] + 1.0, (rows[keep] - self.ulo, cols[keep])), shape=(self.n_local, self.n_global))
        code.sort_indices()
        self.src = code.data.astype(np.int64) - 1
        self.indices = code.indices.astype(PETSc.IntType)
        self.indptr = code.indptr.astype(PETSc.IntType)
        self.data = np.zeros(len(self.src))
        self._w = np.empty(4 * nnz)

    # ------------------------------------------------------------------ evaluation
    def _voltages(self, x):
        """Owned + ghost complex voltages at the unknowns ``x`` (a PETSc Vec); cached per x."""
        from petsc4py import PETSc

        from mpi4py import MPI

        xa = x.getArray(readonly=True)
        same = self._x_at is not None and np.array_equal(xa, self._x_at)
        # decided together: a rank whose part did not move must still join the ghost scatter
        if self._mpi.allreduce(same, op=MPI.LAND):
            return self._v, self._i
        st = self.state.getArray().reshape(-1, 2)
        st[self.th_bus, 0] = xa[self.th_x]
        st[self.vm_bus, 1] = xa[self.vm_x]
        self.state.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        with self.state.localForm() as loc:
            sl = loc.getArray(readonly=True).reshape(-1, 2)
            v = sl[:, 1] * np.exp(1j * sl[:, 0])
        i = self.layout.ybus @ v
        self._x_at = xa.copy()
        self._v, self._i = v, i
        return v, i

    def residual(self, snes, x, f):
        """SNES function: P mismatch (θ rows) and Q mismatch (|V| rows) of the owned buses, p.u."""
        t0 = time.perf_counter()
        v, i = self._voltages(x)
        n = self.layout.n_owned
        mis = v[:n] * np.conj(i) - self.sbus
        fa = f.getArray()
        fa[self.th_x] = mis.real[self.th_bus]
        fa[self.vm_x] = mis.imag[self.vm_bus]
        self.timings["residual"] += time.perf_counter() - t0

    def jacobian(self, snes, x, J, P):
        """SNES Jacobian: fills the values of the owned rows (pattern fixed) and assembles."""
        t0 = time.perf_counter()
        v, i = self._voltages(x)
        self.fill(v, i)
        # SNES hands the callback new Python wrappers of our matrix: compare the PETSc objects
        if P.handle != self.J.handle or not self.values.write(self.data):
            P.setValuesCSR(self.indptr, self.indices, self.data)
        P.assemble()
        if J != P:
            J.assemble()
        self.timings["jacobian"] += time.perf_counter() - t0

    def fill(self, v, i):
        """Jacobian values of the owned rows at local voltages ``v`` (owned + ghosts) and owned
        bus currents ``i`` (MATPOWER's dSbus_dV, polar), written into ``self.data``."""
        r, c = self.y_rows, self.y_cols
        y = self.layout.ybus.data
        vn = v / np.abs(v)
        vr = v[r]
        dva = -1j * vr * np.conj(y * v[c])
        dvm = vr * np.conj(y * vn[c])
        d = self.y_diag
        n = self.layout.n_owned
        dva[d] += 1j * v[:n] * np.conj(i)
        dvm[d] += np.conj(i) * vn[:n]
        nnz, w = len(y), self._w
        w[:nnz] = dva.real
        w[nnz:2 * nnz] = dvm.real
        w[2 * nnz:3 * nnz] = dva.imag
        w[3 * nnz:] = dvm.imag
        np.take(w, self.src, out=self.data)
        return self.data

    def owned_voltage(self):
        """Complex voltage of the owned buses at the current unknowns ``self.x``."""
        v, _ = self._voltages(self.x)
        return v[:self.layout.n_owned]

    def owned_current(self):
        """Ybus V of the owned buses at the current solution, p.u."""
        _, i = self._voltages(self.x)
        return i

    def destroy(self):
        for obj in (self.J, self.f, self.x, self.state):
            obj.destroy()


class MatValues:
    """Writes new values into an AIJ matrix whose pattern is ours (CSR rows with sorted global
    columns) straight into PETSc's arrays: the diagonal block holds our values of owned
    columns and the off-diagonal block those of other ranks' columns, both in row order.
    That saves ``MatSetValues``'s per-row column search (15 ms per Newton iteration on
    case_ACTIVSg70k). The layout is checked once against the values the matrix was
    preallocated with (1, 2, 3, ... in our order); where it differs, or the PETSc library
    cannot be reached through ctypes, :meth:`write` returns False and the caller uses
    ``setValuesCSR``.
    """

    def __init__(self, mat, indices, lo, hi):
        cols = np.asarray(indices, dtype=np.int64)
        own = (cols >= lo) & (cols < hi)
        try:
            self.blocks = self._blocks(mat, np.flatnonzero(own), np.flatnonzero(~own))
        except (OSError, AttributeError, ValueError):
            self.blocks = None

    @staticmethod
    def _library():
        import ctypes
        import re

        with open("/proc/self/maps") as fh:
            paths = set(re.findall(r"/\S*libpetsc\S*\.so[.0-9]*", fh.read()))
        if len(paths) != 1:
            raise OSError("the PETSc library is not among the loaded objects")
        lib = ctypes.CDLL(paths.pop())
        vp, dpp = ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_double))
        lib.MatMPIAIJGetSeqAIJ.argtypes = [vp, ctypes.POINTER(vp), ctypes.POINTER(vp), ctypes.POINTER(vp)]
        lib.MatSeqAIJGetArray.argtypes = [vp, dpp]
        lib.MatSeqAIJRestoreArray.argtypes = [vp, dpp]
        return lib

    def _blocks(self, mat, own, other):
        """[(block handle, positions of its values in ours)], after checking the layout."""
        import ctypes

        self.lib = self._library()
        if mat.getType() == "seqaij":
            if len(other):
                raise ValueError("off-rank columns in a sequential matrix")
            pairs = [(ctypes.c_void_p(mat.handle), own)]
        else:
            ad, ao, colmap = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
            if self.lib.MatMPIAIJGetSeqAIJ(ctypes.c_void_p(mat.handle), ctypes.byref(ad), ctypes.byref(ao),
                                           ctypes.byref(colmap)):
                raise ValueError("MatMPIAIJGetSeqAIJ failed")
            pairs = [(ad, own), (ao, other)]
        from petsc4py import PETSc

        if int(mat.getInfo(PETSc.Mat.InfoType.LOCAL)["nz_used"]) != len(own) + len(other):
            raise ValueError("the matrix holds other entries than ours")
        blocks = []
        for handle, sel in pairs:
            if len(sel):
                with self._array(handle, len(sel)) as arr:
                    if not np.array_equal(arr, sel + 1.0):
                        raise ValueError("PETSc keeps the values in another order")
                blocks.append((handle, sel))
        return blocks

    @contextlib.contextmanager
    def _array(self, handle, n):
        """The value array of a SeqAIJ block; restoring it marks the block changed."""
        import ctypes

        ptr = ctypes.POINTER(ctypes.c_double)()
        if self.lib.MatSeqAIJGetArray(handle, ctypes.byref(ptr)):
            raise ValueError("MatSeqAIJGetArray failed")
        try:
            yield np.ctypeslib.as_array(ptr, shape=(n,))
        finally:
            self.lib.MatSeqAIJRestoreArray(handle, ctypes.byref(ptr))

    def write(self, data):
        """Put ``data`` (our CSR order) into the matrix (the caller assembles); False if not possible."""
        if self.blocks is None:
            return False
        for handle, sel in self.blocks:
            with self._array(handle, len(sel)) as arr:
                np.take(data, sel, out=arr)
        return True
