"""Run under ``mpirun -n N`` (N >= 2 for the test to mean anything): a chunk that a group of
ranks runs together (``--ranks-per-solve``) fails on every rank, and nobody waits forever,
when one rank cannot even set the chunk up."""

import time

import pytest

from tests.mpi.test_dist_layout import _petsc


def test_setup_failure_on_one_rank_fails_the_group_chunk_everywhere(tmp_path_factory, monkeypatch):
    _petsc()  # the group path hands the study a PETSc communicator
    from mpi4py import MPI

    from gat_hpc.runs import execute
    from gat_hpc.runs.rundir import RunDir
    from gat_hpc.studies.trivial import Trivial

    comm = MPI.COMM_WORLD
    if comm.Get_size() < 2:
        pytest.skip("one rank: there is no other rank to leave waiting")
    rank = comm.Get_rank()
    folder = comm.bcast(str(tmp_path_factory.mktemp("group")) if rank == 0 else None, root=0)
    if rank == 0:
        config, chunks = Trivial.plan(10, 5)
        RunDir.create(f"{folder}/run", "trivial", config, {}, chunks, command=["test"])
    comm.Barrier()
    rd = RunDir.open(f"{folder}/run")
    last = comm.Get_size() - 1
    real_context, real_chunk = execute.study_context, Trivial.run_chunk

    def context_fails_on_the_last_rank(run):
        if rank == last:
            raise RuntimeError("this rank cannot read the run's inputs")
        return real_context(run)

    def collective_chunk(self, ctx, spec):
        # as in a distributed solve, the first rank needs the others: here a message from the
        # last rank, waited for 5 s at most (a hang would stop the test run instead of failing it)
        if rank == 0:
            req = comm.irecv(source=last, tag=77)
            deadline = time.monotonic() + 5.0
            while not req.test()[0]:
                if time.monotonic() > deadline:
                    req.Cancel()
                    raise TimeoutError("rank 0 was left waiting for the last rank")
                time.sleep(0.01)
        elif rank == last:
            comm.send("here", dest=0, tag=77)
        return real_chunk(self, ctx, spec)

    monkeypatch.setattr(execute, "study_context", context_fails_on_the_last_rank)
    monkeypatch.setattr(Trivial, "run_chunk", collective_chunk)
    outcome = execute.execute_chunk_group(rd, 0, comm)
    assert comm.allgather(outcome) == [execute.RAN_FAILED] * comm.Get_size()
    if rank == 0:
        result = rd.read_result(0)
        assert result.status == "failed" and "cannot read the run's inputs" in result.error
        assert result.outputs == []
    # and the group goes on to its next chunk together
    monkeypatch.setattr(execute, "study_context", real_context)
    outcome = execute.execute_chunk_group(rd, 1, comm)
    assert comm.allgather(outcome) == [execute.RAN_OK] * comm.Get_size(), rd.read_result(1).error
