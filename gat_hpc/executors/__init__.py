"""Executors: run a run directory's chunks in process, in a process pool, or across MPI ranks.

All share one interface (:class:`~gat_hpc.executors.base.Executor`) and one step,
:func:`gat_hpc.runs.execute.execute_chunk`, so they differ only in where chunks run.
Slurm array tasks call ``gat-hpc worker``, which uses the local executor per task.
"""

from gat_hpc.errors import InputError

EXECUTORS = ("local", "process", "mpi")


def make_executor(name, max_procs=None, comm=None):
    if name == "local":
        from gat_hpc.executors.local import LocalExecutor
        return LocalExecutor()
    if name == "process":
        from gat_hpc.executors.process import ProcessExecutor
        return ProcessExecutor(max_procs)
    if name == "mpi":
        from gat_hpc.executors.mpi import MPIExecutor
        return MPIExecutor(comm)
    raise InputError(f"unknown executor '{name}' (expected one of {', '.join(EXECUTORS)})")
