"""Distributed AC power flow: Newton as a PETSc SNES over the partitioned network, Q limits.

``solve_ac_dist`` is the distributed twin of :func:`gat_hpc.pf.ac.solve_ac` and gives the
same answer (voltages to rounding, the same iterations): the same bus roles, start
voltages, Newton iteration and MATPOWER Q-limit loop, with the Newton steps taken by a PETSc
``SNES`` on an MPIAIJ Jacobian spread over the ranks of ``comm``.

SNES defaults (each can be changed from the command line, ``-snes_*``, ``-ksp_*``, ``-pc_*``):
``newtonls`` with the ``basic`` line search (full Newton steps, as the serial solver), a
convergence test on the largest P or Q mismatch (``tol``, p.u.), ``-ksp_type preonly``, and
gat-hpc's exact Schur-complement/KLU solve as the preconditioner (:mod:`gat_hpc.dist.schur`).
Giving ``-pc_type`` hands the linear solve to PETSc: ``-pc_type lu`` factors with KLU on one
rank and MUMPS on several (with ``-mat_mumps_icntl_28 1 -mat_mumps_icntl_7 5``: MUMPS's parallel
analysis hangs on these matrices, PLATFORM.md D), or with ``-pc_factor_mat_solver_type``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from gat_hpc.dist.collective import Clock, agree
from gat_hpc.dist.equations import PowerFlowEquations
from gat_hpc.dist.layout import BusLayout
from gat_hpc.dist.partition import edge_cut, load_partition, partition_buses, save_partition
from gat_hpc.dist.petsc import one_blas_thread_per_rank
from gat_hpc.errors import ConvergenceError
from gat_hpc.pf.ac import Q_VIOLATION_MVAR, ACResult, _dispatch, _sbus, _switch_to_pq, initial_voltage
from gat_hpc.pf.topology import BusTypes, bus_types
from gat_hpc.pf.ybus import branch_admittances

MUMPS_DEFAULTS = {"mat_mumps_icntl_28": "1", "mat_mumps_icntl_7": "5"}


@dataclass
class DistInfo:
    """How a distributed solve ran: ranks, partition, linear solver, time per phase (max over ranks)."""

    ranks: int
    partition: str
    edge_cut: int
    interface_unknowns: int = 0
    unknowns: int = 0
    linear_solver: str = ""
    timings: dict = field(default_factory=dict)
    part: object = None  # owner rank of every bus (reusable as ``part=`` for the same network and ranks)


@dataclass
class QState:
    """The Q-limit loop's state (serial ``solve_ac``'s loop variables), per generator / bus."""

    types: BusTypes
    bus_type: np.ndarray
    pg_spec: np.ndarray
    qg_spec: np.ndarray
    q_fixed: np.ndarray
    rounds: int = 0
    iterations: int = 0  # Newton iterations of the finished rounds

    @classmethod
    def start(cls, net, types):
        return cls(types=types, bus_type=net.bus_type.copy(), pg_spec=net.pg.copy(), qg_spec=net.qg.copy(),
                   q_fixed=np.zeros(net.n_gen, dtype=bool))


@dataclass
class Restart:
    """Where a checkpoint left the solve: voltages of every bus, the Q-limit state, and the
    iterations done in the current round."""

    V: np.ndarray
    q: QState
    round_iterations: int
    norm_f: float


class _KnownCurrents:
    """Stands in for Ybus in the serial dispatch code, which needs only Ybus @ V: returns the bus
    currents the ranks already computed (gathered), instead of a product with a full Ybus."""

    def __init__(self, ibus):
        self.ibus = ibus

    def __matmul__(self, V):
        return self.ibus


def solve_ac_dist(net, comm, tol=1e-8, max_iter=30, init="case", q_limits=False, max_q_rounds=50,
                  partition=None, checkpoint=None, restart=None, callback=None, raise_on_fail=True,
                  v0=None, part=None, partition_file=None):
    """Solve the AC power flow of ``net`` (the same network on every rank) across ``comm``.

    ``comm``: PETSc communicator; ``tol``: max mismatch, p.u.; ``init``: 'case' | 'flat' | 'dc';
    ``q_limits``: MATPOWER's PV -> PQ switching; ``partition``: a method of
    :func:`~gat_hpc.dist.partition.partition_buses` (default ``-mat_partitioning_type`` or PT-Scotch);
    ``checkpoint``: a :class:`~gat_hpc.dist.checkpoint.Checkpointer` (or None); ``restart``: a
    :class:`Restart` read from a checkpoint; ``callback(iteration, norm_f)`` on every rank;
    ``v0``: start voltages (complex, every bus, the same on every rank: a sweep's previous hour)
    instead of ``init``; ``part``: a partition already computed for this network and
    communicator (``info.part`` of an earlier solve), so a sweep partitions once;
    ``partition_file``: a stored partition (:func:`~gat_hpc.dist.partition.save_partition`) to use
    when the file exists, else where to store the one computed here (by rank 0, atomically).
    Returns (result, info): an :class:`~gat_hpc.pf.ac.ACResult` on rank 0 (None elsewhere)
    and a :class:`DistInfo` on every rank. Raises ConvergenceError on every rank (the same
    message) when Newton fails and ``raise_on_fail``.
    """
    mpi = comm.tompi4py()
    clock = Clock()
    if comm.getSize() > 1:
        one_blas_thread_per_rank()
    agree(mpi, check_linear_solver_options, comm.getSize())
    with clock("setup"):
        types = agree(mpi, bus_types, net)
    with clock("partition"):
        method = "reused"
        if part is None:
            live = np.setdiff1d(np.arange(net.n_bus), types.dead)
            root = mpi.Get_rank() == 0
            if partition_file is not None and mpi.bcast(os.path.exists(partition_file) if root else None):
                part = agree(mpi, lambda: load_partition(partition_file, net, live, comm.getSize()) if root else None)
                part = mpi.bcast(part)  # rank 0 reads: the file need not be visible to every node
                method = "stored"
            else:
                part, method = agree(mpi, partition_buses, net, live, comm, method=partition)
                if partition_file is not None:
                    agree(mpi, lambda: save_partition(partition_file, net, live, part, method) if root else None)
    with clock("assemble"):
        layout = BusLayout(net, part, comm)
    info = DistInfo(ranks=comm.getSize(), partition=method, edge_cut=edge_cut(net, part), part=part)
    with clock("setup"):
        if restart is not None:
            q, V, it0 = restart.q, np.array(restart.V, dtype=complex), restart.round_iterations
            types = q.types
        else:
            q, it0 = QState.start(net, types), 0
            V = np.array(v0, dtype=complex) if v0 is not None else agree(mpi, initial_voltage, net, types, init)
    on = net.gen_status.copy()
    load = net.bus_load()
    while True:
        sbus = _sbus(net, q.pg_spec, q.qg_spec, on, load)
        with clock("assemble"):
            eq = PowerFlowEquations(layout, q.types, sbus[layout.owned], V)
        try:
            converged, its, norm_f = _newton(eq, mpi, tol, max_iter, it0, q, clock, info, checkpoint, callback)
            with clock("gather"):
                V = _gather_buses(layout, mpi, eq.owned_voltage(), net.n_bus)
                ibus = _gather_buses(layout, mpi, eq.owned_current(), net.n_bus)
        finally:
            eq.destroy()
        q.iterations += it0 + its
        it0 = 0
        if not converged:
            break
        with clock("q_limits"):
            pg, qg = _dispatch(net, _KnownCurrents(ibus), V, q.types, q.pg_spec, q.qg_spec, on, q.q_fixed, load)
            if not q_limits or not _switch_limited(net, q, pg, qg, on, max_q_rounds):
                break
    info.timings = clock.max_over(mpi)
    if not converged and raise_on_fail:
        raise ConvergenceError(
            f"AC power flow did not converge in {q.iterations} iterations: max mismatch "
            f"{norm_f * net.base_mva:.4g} MW/MVAr ({norm_f:.3g} p.u., tolerance {tol:g} p.u.)",
            iterations=q.iterations, mismatch=norm_f)
    if mpi.Get_rank() != 0:
        return None, info
    return _result(net, V, ibus, q, on, load, converged, norm_f, info), info


def _switch_limited(net, q, pg, qg, on, max_q_rounds):
    """One step of MATPOWER's Q-limit loop (as ``solve_ac``): PV buses whose generators are past a
    reactive limit become PQ with the generator held there. False when no limit is violated."""
    active = on & ~q.q_fixed
    base = net.base_mva
    over = active & (qg * base > net.qmax * base + Q_VIOLATION_MVAR)
    under = active & (qg * base < net.qmin * base - Q_VIOLATION_MVAR)
    hit = over | under
    if not np.any(hit):
        return False
    regulating = active & np.isin(net.gen_bus, np.concatenate([q.types.ref, q.types.pv]))
    if np.array_equal(hit, regulating):
        raise ConvergenceError(
            "every remaining generator is at a reactive limit: the Q limits cannot all be met "
            f"(after {q.rounds} rounds)", iterations=q.iterations)
    q.rounds += 1
    if q.rounds > max_q_rounds:
        raise ConvergenceError(f"Q-limit enforcement did not settle after {max_q_rounds} rounds", iterations=q.iterations)
    q.qg_spec = q.qg_spec.copy()
    q.qg_spec[~q.q_fixed & on] = qg[~q.q_fixed & on]
    q.qg_spec[over] = net.qmax[over]
    q.qg_spec[under] = net.qmin[under]
    q.pg_spec = np.where(on, pg, q.pg_spec)
    q.q_fixed = q.q_fixed | hit
    q.types, q.bus_type = _switch_to_pq(net, q.types, q.bus_type, net.gen_bus[hit])
    return True


def _newton(eq, mpi, tol, max_iter, it0, q, clock, info, checkpoint, callback):
    """Run the SNES from the unknowns in ``eq``; returns (converged, iterations, max mismatch p.u.).

    ``it0`` iterations of this round were done before (a restart): SNES may take
    ``max_iter - it0`` more.
    """
    from petsc4py import PETSc

    comm = eq.J.getComm()
    snes = PETSc.SNES().create(comm=comm)
    ksp = pc = pc_ctx = None
    state = {"norm": np.inf, "error": None}

    def residual(snes_, x, f):
        eq.residual(snes_, x, f)
        local = np.max(np.abs(f.getArray(readonly=True)), initial=0.0)
        state["norm"] = mpi.allreduce(local, op=_mpi_max())

    def monitor(snes_, it, fnorm):
        norm = state["norm"]
        if callback:
            callback(it0 + it, norm)
        if checkpoint is not None and it > 0:
            try:
                with clock("checkpoint"):
                    checkpoint.maybe_write(it0 + it, q, eq, norm)
            except Exception as exc:  # noqa: BLE001 - reported after SNES stops
                state["error"] = exc
                snes_.setConvergedReason(PETSc.SNES.ConvergedReason.DIVERGED_USER)

    def converged(snes_, it, norms):
        norm = state["norm"]
        if state["error"] is not None:
            return PETSc.SNES.ConvergedReason.DIVERGED_USER
        if not np.isfinite(norm) or norm > 1e10:
            return PETSc.SNES.ConvergedReason.DIVERGED_FNORM_NAN  # diverged: further steps only overflow
        if norm < tol:
            return PETSc.SNES.ConvergedReason.CONVERGED_FNORM_ABS
        if it >= max_iter - it0:
            return PETSc.SNES.ConvergedReason.DIVERGED_MAX_IT
        return PETSc.SNES.ConvergedReason.ITERATING

    try:
        snes.setType(PETSc.SNES.Type.NEWTONLS)
        snes.setFunction(residual, eq.f)
        snes.setJacobian(eq.jacobian, eq.J, eq.J)
        opts = PETSc.Options()
        if not opts.hasName("snes_linesearch_type"):  # full Newton steps, as the serial solver
            opts["snes_linesearch_type"] = "basic"
        snes.setTolerances(max_it=max(max_iter - it0, 0))
        snes.setConvergenceTest(converged)
        snes.setMonitor(monitor)
        ksp = snes.getKSP()
        ksp.setType(PETSc.KSP.Type.PREONLY)
        pc = ksp.getPC()
        user_pc = opts.hasName("pc_type")
        if not user_pc:
            from gat_hpc.dist.schur import SchurKLU

            with clock("factor"):  # its symbolic analysis: ordering, interface, KLU analysis
                pc_ctx = agree(mpi, SchurKLU, eq, mpi)
            pc.setType(PETSc.PC.Type.PYTHON)
            pc.setPythonContext(pc_ctx)
        snes.setFromOptions()
        info.linear_solver = _configure_petsc_pc(pc, opts, comm.getSize()) if user_pc else (
            "klu" if pc_ctx.plain else "schur-klu")
        info.interface_unknowns = pc_ctx.G if pc_ctx is not None else 0
        info.unknowns = eq.n_global
        if user_pc:  # PETSc's own PC: its set-up and apply times from PETSc's event log
            PETSc.Log.begin()
            events = {"factor": PETSc.Log.Event("PCSetUp"), "solve": PETSc.Log.Event("PCApply")}
            before = {k: e.getPerfInfo()["time"] for k, e in events.items()}
        with clock("newton"):
            try:
                snes.solve(None, eq.x)
            except PETSc.Error as exc:
                state["error"] = state["error"] or _linear_failure(exc, pc_ctx)
        if user_pc:
            for k, e in events.items():
                clock.add(k, e.getPerfInfo()["time"] - before[k])
        error, state["error"] = state["error"], None
        if error is not None:
            try:
                raise _detached(error)
            finally:
                error = None  # no cycle frame -> error -> traceback -> frame
        reason = snes.getConvergedReason()
        its = snes.getIterationNumber()
    finally:
        for part in ("residual", "jacobian"):
            clock.add("assemble", eq.timings[part])
            eq.timings[part] = 0.0
        if pc_ctx is not None:
            clock.add("factor", pc_ctx.timings["factor"])
            clock.add("interface", pc_ctx.timings["interface"])
            clock.add("solve", pc_ctx.timings["solve"])
            pc_ctx.destroy()
        # the KSP and PC wrappers hold references too: left to the garbage collector, a failed
        # solve's objects were freed after PETSc had finalised, a segmentation fault at exit
        for obj in (pc, ksp, snes):
            if obj is not None:
                obj.destroy()
    if reason == PETSc.SNES.ConvergedReason.DIVERGED_LINEAR_SOLVE:
        raise ConvergenceError(f"the linear solve of Newton iteration {it0 + its + 1} failed "
                               f"({info.linear_solver}): the Jacobian is singular or the solver gave up",
                               iterations=q.iterations + its, mismatch=state["norm"])
    return reason > 0, its, state["norm"]


def _detached(exc):
    """``exc`` without its traceback and chained exceptions. Their frames hold petsc4py wrappers
    of the SNES, KSP and PC made for the callbacks; kept alive by the error, those objects were
    freed only at interpreter exit, after PETSc had finalised: a segmentation fault."""
    exc.__traceback__ = None
    exc.__cause__ = exc.__context__ = None
    return exc


def _linear_failure(exc, pc_ctx):
    """A PETSc error from inside SNES: the error our PC raised, or PETSc's own, in words."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ConvergenceError):
        return cause
    if pc_ctx is not None and getattr(pc_ctx, "error", None) is not None:
        return pc_ctx.error
    return ConvergenceError(f"PETSc stopped the Newton solve with error {exc.ierr} "
                            "(run with -snes_view -ksp_error_if_not_converged for details)")


def check_linear_solver_options(n_ranks):
    """Refuse a -pc_factor_mat_solver_type that this PETSc lacks or that cannot run on ``n_ranks``
    ranks, before any PETSc object is made with it."""
    from gat_hpc.dist.petsc import check_factor_package, factor_solver_type
    from petsc4py import PETSc

    opts = PETSc.Options()
    if opts.hasName("pc_type"):
        check_factor_package(PETSc, factor_solver_type(PETSc) or _default_package(n_ranks), n_ranks)


def _default_package(n_ranks):
    return "mumps" if n_ranks > 1 else "klu"


def _configure_petsc_pc(pc, opts, n_ranks):
    """PETSc's own PC chosen with -pc_type: default factor package and MUMPS's options."""
    from gat_hpc.dist.petsc import factor_solver_type
    from petsc4py import PETSc

    kind = pc.getType()
    if kind not in ("lu", "cholesky"):
        return kind
    package = factor_solver_type(PETSc) or _default_package(n_ranks)
    pc.setFactorSolverType(package)
    if package in ("klu", "umfpack") and not opts.hasName("pc_factor_mat_ordering_type"):
        # their own AMD ordering: PETSc's default hands them the natural order, whose fill on an
        # interleaved (θ, |V|) numbering makes one factorisation of case13659pegase take a minute
        pc.setFactorOrdering("external")
    if package == "mumps":
        for key, value in MUMPS_DEFAULTS.items():
            if not opts.hasName(key):
                opts[key] = value
        pc.setFromOptions()
    return f"{kind}/{package}"


def _mpi_max():
    from mpi4py import MPI

    return MPI.MAX


def _gather_buses(layout, mpi, owned_values, n_bus):
    """Complex values of the owned buses, from every rank -> one array over all buses (0 for
    buses left out), on every rank."""
    counts = np.diff(layout.starts)
    flat = np.empty(2 * layout.n_live)
    mine = np.ascontiguousarray(np.column_stack([owned_values.real, owned_values.imag]).ravel())
    mpi.Allgatherv(mine, [flat, 2 * counts])
    out = np.zeros(n_bus, dtype=complex)
    out[layout.order] = flat[0::2] + 1j * flat[1::2]
    return out


def _result(net, V, ibus, q, on, load, converged, norm_f, info):
    """The :class:`ACResult` of the finished solve (rank 0), as ``solve_ac`` builds it."""
    types = q.types
    sbus = _sbus(net, q.pg_spec, q.qg_spec, on, load)
    if converged:
        pg, qg = _dispatch(net, _KnownCurrents(ibus), V, types, q.pg_spec, q.qg_spec, on, q.q_fixed, load)
    else:
        pg, qg = np.where(on, q.pg_spec, 0.0), np.where(on, q.qg_spec, 0.0)
    yff, yft, ytf, ytt = branch_admittances(net)
    vf, vt = V[net.f_bus], V[net.t_bus]
    s_from = vf * np.conj(yff * vf + yft * vt)
    s_to = vt * np.conj(ytf * vf + ytt * vt)
    s_inj = V * np.conj(ibus)
    mis = s_inj - sbus
    pvpq = np.concatenate([types.pv, types.pq])
    bus_type = q.bus_type.copy()
    bus_type[types.dead] = 4
    return ACResult(
        net=net, V=V, converged=converged, iterations=q.iterations, max_mismatch_pu=norm_f, types=types,
        bus_type=bus_type, pg=pg, qg=qg, s_from=s_from, s_to=s_to, q_limited=np.flatnonzero(q.q_fixed),
        s_injection=s_inj, q_rounds=q.rounds,
        max_p_mismatch_pu=float(np.max(np.abs(mis.real[pvpq]))) if pvpq.size else 0.0,
        max_q_mismatch_pu=float(np.max(np.abs(mis.imag[types.pq]))) if types.pq.size else 0.0,
        timings=dict(info.timings))
