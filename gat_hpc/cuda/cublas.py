"""cuBLAS GEMM through ctypes, on the PyCUDA context, for comparison with the PTDF kernel.

PyCUDA exposes no BLAS, and scikit-cuda is not used: this module loads the CUDA toolkit's
``libcublas`` with ctypes and passes it PyCUDA device pointers. cuBLAS runs on the CUDA
runtime, which adopts the context current on the calling thread; :mod:`gat_hpc.cuda.runtime`
makes the device's primary context current, the one the runtime would pick anyway.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os

import numpy as np

from gat_hpc.cuda import runtime
from gat_hpc.errors import InputError

CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
_state = {"lib": None, "handle": None, "path": None}


def _candidates():
    """Places libcublas is found: CUDA_HOME, /usr/local/cuda, the nvidia-cublas wheel."""
    paths = []
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            paths += sorted(glob.glob(os.path.join(root, "lib64", "libcublas.so*")))
            paths += sorted(glob.glob(os.path.join(root, "targets", "*", "lib", "libcublas.so*")))
    spec = importlib.util.find_spec("nvidia")
    for base in (spec.submodule_search_locations or []) if spec else []:
        paths += sorted(glob.glob(os.path.join(base, "cublas", "lib", "libcublas.so*")))
    paths.append("libcublas.so")  # whatever the dynamic loader finds
    return paths


def library():
    """The loaded libcublas (ctypes.CDLL); InputError when none can be loaded."""
    if _state["lib"] is not None:
        return _state["lib"]
    errors = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            continue
        _state["lib"], _state["path"] = lib, path
        return lib
    raise InputError("cuBLAS (libcublas.so) was not found; set CUDA_HOME or use method='kernel' "
                     f"({'; '.join(errors[-2:])})")


def _check(status, what):
    if status != 0:
        raise RuntimeError(f"cuBLAS {what} failed with status {status}")


def handle():
    """A cuBLAS handle on the current context (created once per process)."""
    if _state["handle"] is None:
        runtime.ensure_context()
        lib = library()
        h = ctypes.c_void_p()
        _check(lib.cublasCreate_v2(ctypes.byref(h)), "cublasCreate")
        _state["handle"] = h
    return _state["handle"]


def gemm_nt(d_a, d_b, d_c, rows_a, rows_b, inner, dtype):
    """C = A @ B^T on the device, all row-major: A rows_a x inner, B rows_b x inner, C rows_a x rows_b.

    cuBLAS is column-major: a row-major X is X^T to it, so C^T = B @ A^T is asked for as
    ``gemm(T, N, m=rows_b, n=rows_a, k=inner, B (ld inner), A (ld inner), C (ld rows_b))``.
    ``d_*``: device pointers (ints or PyCUDA allocations).
    """
    lib, h = library(), handle()
    dt = np.dtype(dtype)
    if dt == np.float32:
        fn, scalar = lib.cublasSgemm_v2, ctypes.c_float
    elif dt == np.float64:
        fn, scalar = lib.cublasDgemm_v2, ctypes.c_double
    else:
        raise InputError(f"cuBLAS GEMM dtype must be float32 or float64, got {dt}")
    alpha, beta = scalar(1.0), scalar(0.0)
    ptr = ctypes.c_void_p
    status = fn(h, ctypes.c_int(CUBLAS_OP_T), ctypes.c_int(CUBLAS_OP_N), ctypes.c_int(rows_b),
                ctypes.c_int(rows_a), ctypes.c_int(inner), ctypes.byref(alpha), ptr(int(d_b)),
                ctypes.c_int(inner), ptr(int(d_a)), ctypes.c_int(inner), ctypes.byref(beta),
                ptr(int(d_c)), ctypes.c_int(rows_b))
    _check(status, "gemm")
