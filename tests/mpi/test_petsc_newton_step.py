"""Run under ``mpirun -n N``: a Newton step of case118 solved on an MPIAIJ matrix with MUMPS.

Each rank owns a contiguous block of Jacobian rows; the distributed solve must equal
the serial scipy solve. Passes for any N (the test command runs it with N = 2 and
checks that it really got that many ranks through GAT_HPC_EXPECT_RANKS).
"""

import os

import numpy as np

from tests.conftest import case_path, need


def _imports():
    try:
        from mpi4py import MPI
        from petsc4py import PETSc
    except Exception as exc:  # pragma: no cover - exercised only on broken installs
        need("mpi", False, f"mpi4py/petsc4py do not import: {exc}")
    return MPI, PETSc


def test_rank_count():
    MPI, _ = _imports()
    expect = os.environ.get("GAT_HPC_EXPECT_RANKS")
    if expect:
        assert MPI.COMM_WORLD.Get_size() == int(expect)
    total = MPI.COMM_WORLD.allreduce(MPI.COMM_WORLD.Get_rank(), op=MPI.SUM)
    n = MPI.COMM_WORLD.Get_size()
    assert total == n * (n - 1) // 2


def test_distributed_newton_step_equals_serial():
    MPI, PETSc = _imports()
    import scipy.sparse.linalg as spla

    from gat_hpc.network.matpower import read_matpower
    from gat_hpc.pf.newton import JacobianMap, mismatch
    from gat_hpc.pf.topology import bus_types
    from gat_hpc.pf.ybus import make_sbus, make_ybus

    comm = PETSc.COMM_WORLD
    net = read_matpower(case_path("case118"))
    ybus, _, _ = make_ybus(net)
    t = bus_types(net)
    V = net.vm * np.exp(1j * net.va)
    pvpq = np.concatenate([t.pv, t.pq])
    F, ibus = mismatch(ybus, V, make_sbus(net), pvpq, t.pq)
    J = JacobianMap(ybus, t.pv, t.pq).fill(V, ibus).tocsr()
    n = J.shape[0]
    A = PETSc.Mat().createAIJ(size=((PETSc.DECIDE, n), (PETSc.DECIDE, n)), comm=comm)
    A.setUp()
    lo, hi = A.getOwnershipRange()
    local = J[lo:hi]
    A.setPreallocationCSR((local.indptr.astype(PETSc.IntType), local.indices.astype(PETSc.IntType), local.data))
    A.setValuesCSR(local.indptr.astype(PETSc.IntType), local.indices.astype(PETSc.IntType), local.data)
    A.assemble()
    b = A.createVecLeft()
    x = A.createVecRight()
    b.setArray(-F[lo:hi])
    ksp = PETSc.KSP().create(comm=comm)
    ksp.setOperators(A)
    ksp.setType("preonly")
    pc = ksp.getPC()
    pc.setType("lu")
    pc.setFactorSolverType("mumps")
    opts = PETSc.Options()
    opts["mat_mumps_icntl_28"] = 1  # sequential analysis: parallel analysis hangs on these matrices
    opts["mat_mumps_icntl_7"] = 5
    ksp.setFromOptions()
    ksp.solve(b, x)
    dx = np.concatenate(MPI.COMM_WORLD.allgather(x.getArray().copy()))
    for obj in (ksp, A, b, x):
        obj.destroy()
    ref = spla.spsolve(J.tocsc(), -F)
    assert np.max(np.abs(dx - ref)) < 1e-9 * max(1.0, np.max(np.abs(ref)))
    assert np.max(np.abs(ref)) > 1e-6  # a real step, not a solved case
