"""Run under ``mpirun -n N`` (any N): the pieces of the distributed power flow against serial twins.

Ownership and ghosts, each rank's Ybus rows, its Jacobian rows (against the serial
``JacobianMap``), the Schur-complement solve (against scipy's spsolve), every partition
method, and a parallel-HDF5 checkpoint read back.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from tests.conftest import case_path, need


def _petsc():
    try:
        from gat_hpc.dist.petsc import init_petsc

        PETSc = init_petsc([])
    except Exception as exc:  # pragma: no cover - broken installs only
        need("petsc", False, f"petsc4py does not import: {exc}")
    return PETSc


@pytest.fixture(scope="module")
def setup():
    PETSc = _petsc()
    from gat_hpc.dist.layout import BusLayout
    from gat_hpc.dist.partition import partition_buses
    from gat_hpc.network.matpower import read_matpower
    from gat_hpc.pf.ac import initial_voltage
    from gat_hpc.pf.topology import bus_types
    from gat_hpc.pf.ybus import make_sbus, make_ybus

    comm = PETSc.COMM_WORLD
    net = read_matpower(case_path("case118"))
    types = bus_types(net)
    live = np.setdiff1d(np.arange(net.n_bus), types.dead)
    part, _ = partition_buses(net, live, comm)
    layout = BusLayout(net, part, comm)
    ybus, _, _ = make_ybus(net)
    V = initial_voltage(net, types)
    return dict(PETSc=PETSc, comm=comm, mpi=comm.tompi4py(), net=net, types=types, layout=layout, ybus=ybus,
                V=V, sbus=make_sbus(net))


def _equations(s):
    from gat_hpc.dist.equations import PowerFlowEquations

    return PowerFlowEquations(s["layout"], s["types"], s["sbus"][s["layout"].owned], s["V"])


def test_every_bus_owned_once_and_ghosts_are_the_neighbours(setup):
    L, mpi, net, ybus = setup["layout"], setup["mpi"], setup["net"], setup["ybus"]
    owned = np.concatenate(mpi.allgather(L.owned))
    assert np.array_equal(np.sort(owned), np.setdiff1d(np.arange(net.n_bus), setup["types"].dead))
    assert np.array_equal(owned, L.order)  # rank blocks in position order
    assert L.hi - L.lo == len(L.owned) and np.array_equal(L.pos[L.owned], np.arange(L.lo, L.hi))
    neighbours = np.unique(ybus[L.owned].indices)
    assert np.array_equal(np.sort(np.concatenate([L.owned, L.ghost])), np.union1d(L.owned, neighbours))
    assert not np.intersect1d(L.owned, L.ghost).size


def test_local_ybus_rows_equal_serial(setup):
    L, ybus, net = setup["layout"], setup["ybus"], setup["net"]
    cols = np.concatenate([L.owned, L.ghost])
    mine = L.ybus.tocoo()
    as_global = sp.csr_matrix((mine.data, (mine.row, cols[mine.col])), shape=(L.n_owned, net.n_bus))
    assert abs(as_global - ybus[L.owned]).max() < 1e-12 if L.n_owned else True


def test_unknowns_contiguous_and_jacobian_rows_equal_serial(setup):
    from gat_hpc.pf.newton import JacobianMap, mismatch

    L, mpi, t, V, ybus = setup["layout"], setup["mpi"], setup["types"], setup["V"], setup["ybus"]
    eq = _equations(setup)
    try:
        ranges = mpi.allgather((eq.ulo, eq.uhi))
        assert ranges[0][0] == 0 and ranges[-1][1] == eq.n_global
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert eq.n_global == len(t.pv) + 2 * len(t.pq)
        # serial numbering: [θ(pv), θ(pq), |V|(pq)]; ours -> serial, for every unknown
        pvpq = np.concatenate([t.pv, t.pq])
        th_serial = np.full(setup["net"].n_bus, -1)
        th_serial[pvpq] = np.arange(len(pvpq))
        vm_serial = np.full(setup["net"].n_bus, -1)
        vm_serial[t.pq] = len(pvpq) + np.arange(len(t.pq))
        to_serial = np.empty(eq.n_local, dtype=np.int64)
        to_serial[eq.th_x] = th_serial[L.owned[eq.th_bus]]
        to_serial[eq.vm_x] = vm_serial[L.owned[eq.vm_bus]]
        everyone = np.empty(eq.n_global, dtype=np.int64)
        mpi.Allgatherv(to_serial, [everyone, [b - a for a, b in ranges]])
        # θ and |V| of a PQ bus sit side by side, on the same rank
        assert np.all(np.diff(eq.th_x[np.isin(eq.th_bus, eq.vm_bus)]) >= 2)
        v, i = eq._voltages(eq.x)
        eq.fill(v, i)
        ours = sp.csr_matrix((eq.data, everyone[eq.indices], eq.indptr), shape=(eq.n_local, eq.n_global))
        F, ibus = mismatch(ybus, V, setup["sbus"], pvpq, t.pq)
        J = JacobianMap(ybus, t.pv, t.pq).fill(V, ibus).tocsr()
        assert abs(ours - J[to_serial]).max() < 1e-9
    finally:
        eq.destroy()


def test_jacobian_values_reach_the_petsc_matrix(setup):
    eq = _equations(setup)
    try:
        assert eq.values.blocks is not None  # the direct path is active (Linux, a shared libpetsc)
        v, i = eq._voltages(eq.x)
        state = eq.J.stateGet()
        eq.jacobian(None, eq.x, eq.J, eq.J)
        assert eq.J.stateGet() > state  # a new state: the PC refactors
        indptr, indices, data = eq.J.getValuesCSR()
        assert np.array_equal(indptr, eq.indptr) and np.array_equal(indices, eq.indices)
        assert np.array_equal(data, eq.data) and np.any(data != 0)
    finally:
        eq.destroy()


def test_schur_complement_solve_equals_spsolve(setup):
    from gat_hpc.dist.schur import SchurKLU

    PETSc, mpi = setup["PETSc"], setup["mpi"]
    eq = _equations(setup)
    pc_ctx = SchurKLU(eq, mpi)
    ksp = PETSc.KSP().create(comm=setup["comm"])
    try:
        v, i = eq._voltages(eq.x)
        eq.fill(v, i)
        eq.J.setValuesCSR(eq.indptr, eq.indices, eq.data)
        eq.J.assemble()
        ksp.setOperators(eq.J)
        ksp.setType("preonly")
        ksp.getPC().setType("python")
        ksp.getPC().setPythonContext(pc_ctx)
        b = eq.x.duplicate()
        x = eq.x.duplicate()
        rng = np.random.default_rng(7)
        full_b = rng.standard_normal(eq.n_global)
        b.getArray()[:] = full_b[eq.ulo:eq.uhi]
        for step in range(2):  # a factorisation, then a refactorisation with new values
            if step:
                eq.data *= 1.0 + 0.01 * rng.standard_normal(len(eq.data))
                eq.values.write(eq.data)
                eq.J.assemble()
            ksp.solve(b, x)
            rows = mpi.allgather(sp.csr_matrix((eq.data, eq.indices, eq.indptr), shape=(eq.n_local, eq.n_global)))
            ref = spla.spsolve(sp.vstack(rows).tocsc(), full_b)
            assert np.max(np.abs(x.getArray() - ref[eq.ulo:eq.uhi]), initial=0.0) < 1e-9 * np.max(np.abs(ref))
        if mpi.Get_size() > 1:
            assert pc_ctx.G > 0 and not pc_ctx.plain
            assert pc_ctx.klu._fast is True or pc_ctx.g == 0  # S read in place, checked against klu_extract
        for obj in (b, x):
            obj.destroy()
    finally:
        ksp.destroy()
        pc_ctx.destroy()
        eq.destroy()


@pytest.mark.parametrize("method", ["ptscotch", "rcm", "natural"])
def test_every_partition_method_gives_the_serial_solution(setup, method):
    from gat_hpc.dist.partition import edge_cut, partition_buses
    from gat_hpc.dist.snes import solve_ac_dist
    from gat_hpc.pf.ac import solve_ac

    PETSc, comm, net, mpi = setup["PETSc"], setup["comm"], setup["net"], setup["mpi"]
    if method == "ptscotch" and not PETSc.Sys.hasExternalPackage("ptscotch"):
        pytest.skip("this PETSc has no PT-Scotch")
    live = np.setdiff1d(np.arange(net.n_bus), setup["types"].dead)
    part, used = partition_buses(net, live, comm, method=method)
    assert np.array_equal(part, mpi.bcast(part, root=0))  # every rank has the same partition
    if mpi.Get_size() > 1:
        assert used == method and set(part[live]) == set(range(mpi.Get_size()))
        assert 0 < edge_cut(net, part) < net.n_branch
    res, info = solve_ac_dist(net, comm, partition=method)
    if mpi.Get_rank() == 0:
        ref = solve_ac(net)
        assert np.max(np.abs(res.V - ref.V)) < 1e-8 and res.iterations == ref.iterations


def test_ptscotch_partition_is_the_same_every_call_and_tries_keep_the_smallest_cut(setup):
    from gat_hpc.dist.partition import edge_cut, partition_buses

    PETSc, comm, net, mpi = setup["PETSc"], setup["comm"], setup["net"], setup["mpi"]
    if not PETSc.Sys.hasExternalPackage("ptscotch"):
        pytest.skip("this PETSc has no PT-Scotch")
    if mpi.Get_size() < 2:
        pytest.skip("one rank: nothing to partition")
    live = np.setdiff1d(np.arange(net.n_bus), setup["types"].dead)
    opts = PETSc.Options()

    def part_with(**options):
        for k, v in options.items():
            opts[k] = v
        try:
            return partition_buses(net, live, comm, method="ptscotch")[0]
        finally:
            for k in options:
                opts.delValue(k)

    single = [part_with(gat_partition_seed=seed, gat_partition_tries=1) for seed in (0, 2, 4, 0)]
    assert np.array_equal(single[0], single[3])  # PT-Scotch's generator is reset: same seed, same partition
    cuts = [edge_cut(net, p) for p in single[:3]]
    best = part_with(gat_partition_seed=0, gat_partition_tries=3)
    assert edge_cut(net, best) == min(cuts)
    assert np.array_equal(best, single[cuts.index(min(cuts))])  # the first of the smallest
    assert np.array_equal(part_with(), part_with())  # the default: the same every call
    # tries stop at the first cut of at most -gat_partition_stop_cut lines
    first = part_with(gat_partition_seed=0, gat_partition_tries=3, gat_partition_stop_cut=cuts[0])
    assert np.array_equal(first, single[0])


def test_checkpoint_written_in_parallel_reads_back(setup, tmp_path_factory):
    from gat_hpc.dist.checkpoint import Checkpointer, read_checkpoint
    from gat_hpc.dist.snes import QState

    mpi, net, L = setup["mpi"], setup["net"], setup["layout"]
    folder = mpi.bcast(str(tmp_path_factory.mktemp("ckpt")) if mpi.Get_rank() == 0 else None, root=0)
    path = f"{folder}/state.h5"
    q = QState.start(net, setup["types"])
    q.q_fixed[:3] = True
    q.iterations = 4
    ck = Checkpointer(path, 2, net, mpi)
    V = setup["V"]
    ck.write(L, L.owned, np.abs(V[L.owned]), np.angle(V[L.owned]), q, iteration=6, round_iteration=2, norm_f=0.5)
    back = read_checkpoint(path, net, mpi)
    assert np.max(np.abs(back.V - V)) < 1e-15
    assert back.round_iterations == 2 and back.q.iterations == 4 and back.norm_f == 0.5
    assert np.array_equal(back.q.q_fixed, q.q_fixed) and np.array_equal(back.q.types.pv, q.types.pv)


@pytest.mark.parametrize("ties", [0, 2])
def test_separate_islands_and_isolated_buses_equal_serial(setup, ties):
    """Three copies of case118 (three islands without ties), one bus isolated and one cut off
    with nothing on it: ranks may own whole islands (no interface of their own)."""
    from gat_hpc.dist.snes import solve_ac_dist
    from gat_hpc.dist.synth import tile
    from gat_hpc.pf.ac import solve_ac

    net = tile(setup["net"], 3, ties, seed=5)
    net.bus_type[5] = 4
    k = int(np.flatnonzero(net.bus_id == 117)[0])
    net.branch_status[(net.f_bus == k) | (net.t_bus == k)] = False
    net.load_status[net.load_bus == k] = False
    res, info = solve_ac_dist(net, setup["comm"], q_limits=True)
    if setup["mpi"].Get_rank() == 0:
        ref = solve_ac(net, q_limits=True)
        assert ref.types.n_islands == (3 if ties == 0 else 1) and len(ref.types.dead) == 2
        assert np.max(np.abs(res.V - ref.V)) < 1e-8 and res.iterations == ref.iterations
        assert np.array_equal(res.q_limited, ref.q_limited)
