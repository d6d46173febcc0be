"""Batched AC power mismatch ``S = V (Ybus V)* - Sbus`` for many voltage vectors at once.

``ybus``: n x n sparse (scipy, from :func:`gat_hpc.pf.ybus.make_ybus`); ``voltages``: B x n
complex bus voltages (p.u.), one operating point per row; ``sbus``: n (shared by every row)
or B x n specified injections (p.u., :func:`gat_hpc.pf.ybus.make_sbus`). Returns the B x n
complex mismatch (p.u.): zero at a power-flow solution. complex128 by default; complex64
halves the bytes for screening many operating points. The GPU kernel (``mismatch.cu``) runs
one CSR row per thread and vector; the twin is one scipy sparse product.

complex64 error bound, per bus i (inputs rounded from complex128, nnz_i entries in row i)::

    |mis64[b, i] - mis[b, i]| <= 2 (nnz_i + 3) eps32 (|V_i| sum_j |Y_ij| |V_j| + |Sbus_i|)
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from gat_hpc.cuda import runtime
from gat_hpc.errors import InputError


def complex64_bound(ybus, voltages, sbus):
    """The complex64 bound above (B x n)."""
    y = sp.csr_matrix(ybus)
    v = np.atleast_2d(np.asarray(voltages))
    s = np.broadcast_to(np.asarray(sbus), v.shape)
    nnz = np.diff(y.indptr)
    scale = np.abs(v) * (abs(y) @ np.abs(v).T).T + np.abs(s)
    return 2 * (nnz[None, :] + 3) * float(np.finfo(np.float32).eps) * scale


def _inputs(ybus, voltages, sbus, dtype):
    dt = np.dtype(dtype)
    if dt not in (np.complex64, np.complex128):
        raise InputError(f"mismatch dtype must be complex64 or complex128, got {dt}")
    y = sp.csr_matrix(ybus)
    n = y.shape[0]
    if y.shape != (n, n):
        raise InputError(f"Ybus must be square, got shape {y.shape}")
    v = np.asarray(voltages)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != n:
        raise InputError(f"voltages must be vectors x {n} buses, got shape {v.shape}")
    s = np.asarray(sbus)
    if s.shape not in ((n,), v.shape):
        raise InputError(f"Sbus must have shape ({n},) or {v.shape}, got {s.shape}")
    return y, v.astype(dt), s.astype(dt), dt


def power_mismatch(ybus, voltages, sbus, dtype=np.complex128, device="gpu", timings=None):
    """B x n mismatch ``V * conj(Ybus @ V) - Sbus``; see the module docstring.

    ``timings``: a dict to receive seconds (``upload``, ``kernel``, ``download``, ``total``).
    """
    device = runtime.check_device(device)
    y, v, s, dt = _inputs(ybus, voltages, sbus, dtype)
    t0 = time.perf_counter()
    if device == "cpu":
        y = y.astype(dt)
        out = v * np.conj((y @ v.T).T) - s
        if timings is not None:
            timings["total"] = time.perf_counter() - t0
        return out.astype(dt)
    drv = runtime.ensure_context()
    fn = runtime.module("mismatch.cu").get_function(
        "mismatch_c64" if dt == np.complex64 else "mismatch_c128")
    fn.prepare("PPPPPiiiP")
    n, b = y.shape[0], v.shape[0]
    d_ip = runtime.to_device(y.indptr.astype(np.int32))
    d_ix = runtime.to_device(y.indices.astype(np.int32))
    d_y = runtime.to_device(y.data.astype(dt))
    d_v = runtime.to_device(v)
    d_s = runtime.to_device(s)
    d_o = runtime.empty_device(v.shape, dt)
    drv.Context.synchronize()
    t1 = time.perf_counter()
    start, stop = drv.Event(), drv.Event()
    start.record()
    fn.prepared_call((math.ceil(n / 128), min(b, 65535), 1), (128, 1, 1), d_ip.gpudata,
                     d_ix.gpudata, d_y.gpudata, d_v.gpudata, d_s.gpudata, n, b,
                     int(s.ndim == 2), d_o.gpudata)
    stop.record()
    stop.synchronize()
    t2 = time.perf_counter()
    out = d_o.get()
    if timings is not None:
        timings.update(upload=t1 - t0, kernel=stop.time_since(start) * 1e-3,
                       download=time.perf_counter() - t2, total=time.perf_counter() - t0)
    return out


def power_mismatch_numpy(ybus, voltages, sbus, dtype=np.complex128, timings=None):
    """The numpy twin of :func:`power_mismatch` (``device="cpu"``)."""
    return power_mismatch(ybus, voltages, sbus, dtype, "cpu", timings)
