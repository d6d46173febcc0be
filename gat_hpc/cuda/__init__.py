"""CUDA kernels (PyCUDA) for the widest sweeps, each beside the numpy twin it must match.

| kernel source   | GPU path (``device="gpu"``)               | numpy twin                     |
|-----------------|-------------------------------------------|--------------------------------|
| screening.cu    | :func:`screen_lodf`, :class:`LodfScreen`  | :func:`screen_lodf_numpy`      |
| ptdf.cu         | :func:`ptdf_flows`, :class:`PtdfFlows`    | :func:`ptdf_flows_numpy`       |
| mismatch.cu     | :func:`power_mismatch`                    | :func:`power_mismatch_numpy`   |
| adequacy.cu     | :func:`capacity_check`, :func:`philox4x32_gpu` | :func:`capacity_check_numpy`, :func:`philox4x32` |

Every GPU function takes ``device="gpu"|"cpu"``; the ``*_numpy`` names are the same
function with ``device="cpu"``, so the two paths share one signature and one result type.

Importing this package needs only numpy and scipy: PyCUDA is imported when a GPU path first
runs, and without it (or without a GPU) that path raises :class:`gat_hpc.errors.InputError`
("--device gpu needs an NVIDIA GPU and PyCUDA: ..."). Kernels are compiled with nvcc through
PyCUDA's ``SourceModule`` on first use, once per process (and cached on disk by PyCUDA).
:func:`select_device` binds a process to one GPU by its local rank (see
:mod:`gat_hpc.cuda.runtime` for Slurm's ``--gpus-per-task``).
"""

from gat_hpc.cuda.adequacy import (AdequacyResult, capacity_check, capacity_check_numpy,
                                   philox4x32, philox4x32_gpu, unit_words)
from gat_hpc.cuda.mismatch import power_mismatch, power_mismatch_numpy
from gat_hpc.cuda.ptdf import PtdfFlows, ptdf_flows, ptdf_flows_numpy
from gat_hpc.cuda.runtime import gpu_available, local_rank, select_device
from gat_hpc.cuda.screening import (LodfScreen, ScreenResult, loading_error_bound, screen_lodf,
                                    screen_lodf_numpy)

__all__ = [
    "AdequacyResult", "LodfScreen", "PtdfFlows", "ScreenResult", "capacity_check",
    "capacity_check_numpy", "gpu_available", "loading_error_bound", "local_rank",
    "philox4x32", "philox4x32_gpu", "power_mismatch", "power_mismatch_numpy", "ptdf_flows",
    "ptdf_flows_numpy", "screen_lodf", "screen_lodf_numpy", "select_device", "unit_words",
]
