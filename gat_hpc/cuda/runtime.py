"""The GPU behind the kernels: which device a process uses, its context, compiled modules.

PyCUDA is imported only when a GPU path runs, so ``gat_hpc.cuda`` and every numpy twin work
on machines without it. Each process drives one GPU through that GPU's *primary* context (the
one the CUDA runtime and cuBLAS also use), made current on first use and released at exit.

One GPU per MPI rank or process
-------------------------------
:func:`select_device` maps a process to a GPU by its rank among the processes of its node:

- Slurm with ``--gpus-per-task=1`` (``srun --ntasks-per-node=4 --gpus-per-task=1``, plus
  ``--gpu-bind=single:1`` where the site does not bind by default) gives each task its own
  ``CUDA_VISIBLE_DEVICES`` with one GPU, so every task sees one device, ordinal 0, and the
  local rank changes nothing: ``local rank % 1 == 0``.
- Slurm with ``--gpus-per-node=N`` (or ``--gres=gpu:N``) and no per-task binding lets every
  task see all N GPUs; then task ``SLURM_LOCALID`` takes GPU ``SLURM_LOCALID % N``.
- ``mpirun`` (Open MPI) on a node with N GPUs: rank ``OMPI_COMM_WORLD_LOCAL_RANK`` takes
  GPU ``local rank % N`` (MVAPICH/MPICH's ``MV2_COMM_WORLD_LOCAL_RANK`` /
  ``MPI_LOCALRANKID`` likewise).
- The process executor (``--executor process --max-procs W``): worker i of a process with
  local rank r gets slot ``r W + i`` (``GAT_HPC_GPU_SLOT``, set by :func:`worker_slot`) and
  GPU ``slot % N``, so W workers on a node with N GPUs spread over them.
- More processes than GPUs on a node share GPUs round-robin; that works but the kernels then
  compete for one device, so ask Slurm for as many GPUs per node as tasks per node.
"""

from __future__ import annotations

import atexit
import os

import numpy as np

from gat_hpc.errors import InputError

CUDA_DIR = os.path.dirname(os.path.abspath(__file__))
GPU_NEEDS = "--device gpu needs an NVIDIA GPU and PyCUDA"
GPU_FIX = "install them (pip install 'gat-hpc[gpu]', with nvcc on PATH) or use --device cpu"


def gpu_error(reason):
    """The InputError a GPU path raises when it cannot run: what is missing and what to do."""
    return InputError(f"{GPU_NEEDS}: {reason}; {GPU_FIX}")


# environment variables that carry a process's rank among the processes of its node, first wins
WORKER_SLOT_VAR = "GAT_HPC_GPU_SLOT"  # set in the process executor's workers (worker_slot)
LOCAL_RANK_VARS = (WORKER_SLOT_VAR, "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                   "SLURM_LOCALID", "LOCAL_RANK")

_state = {"driver": None, "context": None, "ordinal": None, "modules": {}}


# ---------------------------------------------------------------- pure mapping (no GPU needed)
def local_rank(environ=None):
    """This process's rank among the processes of its node, from the launcher's variables; 0."""
    env = os.environ if environ is None else environ
    for name in LOCAL_RANK_VARS:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def visible_devices(environ=None):
    """The entries of ``CUDA_VISIBLE_DEVICES`` (ids or UUIDs), or None when it is unset."""
    env = os.environ if environ is None else environ
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def device_ordinal(rank_local, n_visible):
    """The GPU ordinal (0..n_visible-1, as CUDA numbers the visible devices) for a local rank."""
    if n_visible < 1:
        raise gpu_error("no NVIDIA GPU is visible to this process (CUDA_VISIBLE_DEVICES="
                        f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})")
    if rank_local < 0:
        raise InputError(f"local rank must be >= 0, got {rank_local}")
    return rank_local % n_visible


# ---------------------------------------------------------------- driver and context
def _driver():
    """pycuda.driver, initialised; the :func:`gpu_error` InputError when it cannot be had."""
    if _state["driver"] is not None:
        return _state["driver"]
    try:
        import pycuda.driver as drv
    except ImportError as exc:
        raise gpu_error(f"PyCUDA is not importable ({exc})") from None
    try:
        drv.init()
        count = drv.Device.count()
    except drv.Error as exc:
        raise gpu_error(f"the CUDA driver did not start ({exc})") from None
    if count == 0:
        raise gpu_error("the CUDA driver sees no GPU")
    _state["driver"] = drv
    return drv


def gpu_available():
    """(True, description) when a GPU path can run here, else (False, the reason)."""
    try:
        drv = _driver()
    except InputError as exc:
        return False, str(exc)
    names = [drv.Device(i).name() for i in range(drv.Device.count())]
    return True, ", ".join(names)


def require_gpu():
    """The commands' ``--device gpu`` check: an InputError saying what is missing and what to do.

    The check runs in a forked child, so this process does not start the CUDA driver: the
    process executor forks its workers later, and CUDA cannot be used in a child forked after
    the parent initialised it."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        ok, reason = pool.apply(gpu_available)
    if not ok:
        raise InputError(reason)


def require_gpu_for(device):
    """:func:`require_gpu` when a command's ``--device`` is ``gpu``."""
    if device == "gpu":
        require_gpu()


def worker_slot(index, workers):
    """Set this process's GPU slot when it is worker ``index`` of ``workers`` forked by one
    process (the process executor): slot = the parent's local rank x workers + index, so the
    workers of one process, and of the processes of a node, take different GPUs in turn."""
    os.environ[WORKER_SLOT_VAR] = str(local_rank() * workers + index)


def select_device(rank_local=None):
    """Make this process's GPU current and return its ordinal; see the module docstring.

    ``rank_local``: the process's rank among those of its node (None: read it from
    ``OMPI_COMM_WORLD_LOCAL_RANK``, ``MV2_COMM_WORLD_LOCAL_RANK``, ``MPI_LOCALRANKID``,
    ``SLURM_LOCALID`` or ``LOCAL_RANK``, else 0). The GPU is ``rank_local % n`` among the n
    devices this process can see (``CUDA_VISIBLE_DEVICES`` already narrows them: under Slurm's
    ``--gpus-per-task=1`` n is 1). Call it once, before any kernel; a second call with another
    ordinal is an error, because compiled modules and device arrays belong to the first.
    """
    drv = _driver()
    rank = local_rank() if rank_local is None else int(rank_local)
    ordinal = device_ordinal(rank, drv.Device.count())
    if _state["context"] is not None:
        if ordinal != _state["ordinal"]:
            raise InputError(f"this process already uses GPU {_state['ordinal']}; it cannot switch "
                             f"to GPU {ordinal} (select_device is called once per process)")
        return ordinal
    ctx = drv.Device(ordinal).retain_primary_context()
    ctx.push()
    _state["context"], _state["ordinal"] = ctx, ordinal
    atexit.register(_release)
    return ordinal


def _release():
    ctx = _state["context"]
    if ctx is None:
        return
    _state["modules"].clear()
    _state["context"] = None
    try:
        ctx.pop()
    except Exception:  # the driver may already be shutting down at interpreter exit
        pass
    from pycuda.tools import clear_context_caches
    clear_context_caches()


def ensure_context():
    """pycuda.driver with this process's GPU current (selected from the local rank if needed)."""
    drv = _driver()
    if _state["context"] is None:
        select_device()
    return drv


def device_info():
    """Name, compute capability, multiprocessors, shared memory per SM and memory of the current GPU."""
    drv = ensure_context()
    dev = drv.Context.get_device()
    attr = drv.device_attribute
    return {"name": dev.name(), "compute_capability": dev.compute_capability(),
            "multiprocessors": dev.get_attribute(attr.MULTIPROCESSOR_COUNT),
            "shared_memory_per_sm": dev.get_attribute(attr.MAX_SHARED_MEMORY_PER_MULTIPROCESSOR),
            "memory_bytes": dev.total_memory(),
            "memory_clock_khz": dev.get_attribute(attr.MEMORY_CLOCK_RATE),
            "memory_bus_bits": dev.get_attribute(attr.GLOBAL_MEMORY_BUS_WIDTH),
            "clock_khz": dev.get_attribute(attr.CLOCK_RATE)}


# ---------------------------------------------------------------- compiled modules
def source_path(name):
    """Path of the CUDA source ``name`` (e.g. ``"screening.cu"``) shipped in this package."""
    return os.path.join(CUDA_DIR, name)


def module(name):
    """The compiled module of ``gat_hpc/cuda/<name>``, compiled once per process.

    PyCUDA picks ``-arch=sm_XY`` from the current device and keeps compiled cubins in its
    disk cache, so a second process on the same machine skips nvcc as well. The sources are
    C++ (templates) with ``extern "C"`` entry points, hence ``no_extern_c``.
    """
    mods = _state["modules"]
    if name in mods:
        return mods[name]
    ensure_context()
    try:
        from pycuda.compiler import SourceModule
    except ImportError as exc:
        raise gpu_error(str(exc)) from None
    with open(source_path(name), encoding="utf-8") as fh:
        src = fh.read()
    try:
        mod = SourceModule(src, no_extern_c=True, options=["-O3", "-std=c++17"],
                           include_dirs=[CUDA_DIR])
    except OSError as exc:  # nvcc missing
        raise gpu_error(f"nvcc could not be run to compile {name} ({exc})") from None
    mods[name] = mod
    return mod


def to_device(array):
    """A pycuda GPUArray holding a C-contiguous copy of ``array``."""
    ensure_context()
    import pycuda.gpuarray as gpuarray
    return gpuarray.to_gpu(np.ascontiguousarray(array))


def empty_device(shape, dtype):
    """An uninitialised pycuda GPUArray."""
    ensure_context()
    import pycuda.gpuarray as gpuarray
    return gpuarray.empty(shape, dtype)


def check_device(device):
    """Normalise a ``device`` argument to "cpu" or "gpu"."""
    if device not in ("cpu", "gpu"):
        raise InputError(f"device must be 'cpu' or 'gpu', got {device!r}")
    return device
