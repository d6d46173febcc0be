"""Branch flows for many injection scenarios at once: F = P @ PTDF^T, on the GPU or in numpy.

``P``: S x N bus injections (one scenario per row, e.g. one hour each, p.u. or MW);
``PTDF``: M x N (from :func:`gat_hpc.pf.sensitivity.make_ptdf`); ``F``: S x M branch flows in
the unit of P. The GPU path is a tiled shared-memory GEMM kernel (``ptdf.cu``), or cuBLAS
loaded with ctypes (``method="cublas"``, :mod:`gat_hpc.cuda.cublas`): PyCUDA itself has no
BLAS, so the kernel is the path that needs nothing beyond PyCUDA.

float32 error bound (summation over N buses with FMA, inputs rounded from float64)::

    |F32[s, m] - F[s, m]| <= (N + 3) * eps32 * sum_n |P[s, n]| |PTDF[m, n]|

the classical gamma_N bound of a dot product plus the rounding of both inputs; in practice
the error is far smaller (sqrt(N) growth). float64 agrees with numpy to ~1e-15 relative.
"""

from __future__ import annotations

import math
import time

import numpy as np

from gat_hpc.cuda import runtime
from gat_hpc.errors import InputError



def float32_bound(injections, ptdf):
    """The float32 bound above, elementwise (S x M)."""
    p = np.abs(np.atleast_2d(np.asarray(injections, dtype=np.float64)))
    h = np.abs(np.asarray(ptdf, dtype=np.float64))
    return (h.shape[1] + 3) * float(np.finfo(np.float32).eps) * (p @ h.T)


def _check(injections, n_bus):
    p = np.asarray(injections)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != n_bus:
        raise InputError(f"injections must be scenarios x {n_bus} buses, got shape {p.shape}")
    return p


def _dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise InputError(f"PTDF flows dtype must be float32 or float64, got {dt}")
    return dt


class PtdfFlows:
    """A PTDF (M x N) held on the device (or in host memory for ``device="cpu"``).

    ``flows(P, method)`` returns S x M flows; ``timings`` holds the last call's seconds
    (``upload``, ``kernel`` from device events, ``download``, ``total``).
    ``method``: "kernel" (the tiled kernel) or "cublas" (GPU); ignored on the CPU.
    """

    def __init__(self, ptdf, dtype=np.float32, device="gpu"):
        self.device = runtime.check_device(device)
        ptdf = np.asarray(ptdf)
        if ptdf.ndim != 2:
            raise InputError(f"PTDF must be branches x buses, got shape {ptdf.shape}")
        self.n_branch, self.n_bus = ptdf.shape
        self.dtype = _dtype(dtype)
        self.timings = {}
        if self.device == "cpu":
            self._h = np.ascontiguousarray(ptdf, dtype=self.dtype)
        else:
            self._d_h = runtime.to_device(ptdf.astype(self.dtype))

    def kernel_variant(self, n_scen):
        """(kernel name, tile rows, tile columns) for ``n_scen`` scenarios: 32 x 32 tiles of F
        when there are few scenarios (more blocks), else 128 x 128 (more reuse)."""
        tile = 32 if n_scen <= 64 else 128
        return f"ptdf_gemm_{'f32' if self.dtype == np.float32 else 'f64'}_{tile}x{tile}", tile, tile

    def launch(self, d_p, d_f, n_scen, method="kernel"):
        """F = P @ PTDF^T on device arrays (``d_p``: S x N, ``d_f``: S x M), asynchronously."""
        if method == "cublas":
            from gat_hpc.cuda import cublas
            cublas.gemm_nt(d_p.gpudata, self._d_h.gpudata, d_f.gpudata, n_scen, self.n_branch,
                           self.n_bus, self.dtype)
            return
        if method != "kernel":
            raise InputError(f"method must be 'kernel' or 'cublas', got {method!r}")
        name, rows, cols = self.kernel_variant(n_scen)
        fn = runtime.module("ptdf.cu").get_function(name)
        fn.prepare("PPPiii")
        fn.prepared_call((math.ceil(self.n_branch / cols), math.ceil(n_scen / rows), 1), (256, 1, 1),
                         d_p.gpudata, self._d_h.gpudata, d_f.gpudata, n_scen, self.n_branch,
                         self.n_bus)

    def flows(self, injections, method="kernel"):
        """S x M flows for S x N ``injections`` (1-d: one scenario, still returned 2-d)."""
        p = _check(injections, self.n_bus)
        t0 = time.perf_counter()
        if self.device == "cpu":
            out = p.astype(self.dtype) @ self._h.T
            self.timings = {"total": time.perf_counter() - t0}
            return out
        drv = runtime.ensure_context()
        d_p = runtime.to_device(p.astype(self.dtype))
        d_f = runtime.empty_device((p.shape[0], self.n_branch), self.dtype)
        drv.Context.synchronize()
        t1 = time.perf_counter()
        start, stop = drv.Event(), drv.Event()
        start.record()
        self.launch(d_p, d_f, p.shape[0], method)
        stop.record()
        stop.synchronize()
        t2 = time.perf_counter()
        out = d_f.get()
        t3 = time.perf_counter()
        self.timings = {"upload": t1 - t0, "kernel": stop.time_since(start) * 1e-3,
                        "download": t3 - t2, "total": t3 - t0}
        return out


def ptdf_flows(injections, ptdf, dtype=np.float32, device="gpu", method="kernel"):
    """F = P @ PTDF^T (S x M) for S x N injections; see :class:`PtdfFlows`."""
    return PtdfFlows(ptdf, dtype, device).flows(injections, method)


def ptdf_flows_numpy(injections, ptdf, dtype=np.float32):
    """The numpy twin of :func:`ptdf_flows`: ``P @ PTDF.T`` in ``dtype``."""
    return ptdf_flows(injections, ptdf, dtype, "cpu")
