"""AC power flow of a :class:`Network`: initial voltages, Newton, generator Q limits, results.

``solve_ac`` follows MATPOWER's ``runpf``: bus roles from ``bus_types``,
Newton in polar form, and with ``q_limits`` the PV buses whose generators
exceed a reactive limit are switched to PQ with the generator held at that
limit, the case is re-solved until no limit is violated (a slack bus that hits a
limit hands the slack role to the first PV bus of its island).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from gat_hpc.errors import ConvergenceError, InputError
from gat_hpc.network.model import PQ, sum_per_bus
from gat_hpc.pf.linsolve import make_solver
from gat_hpc.pf.newton import JacobianMap, newton
from gat_hpc.pf.topology import BusTypes, bus_types
from gat_hpc.pf.ybus import make_ybus

Q_VIOLATION_MVAR = 5e-6  # MATPOWER's opf.violation, used by its Q-limit check
INIT_CHOICES = ("case", "flat", "dc")


@dataclass
class ACResult:
    """A solved AC power flow. Voltages are 0 at de-energised buses."""

    net: object
    V: np.ndarray
    converged: bool
    iterations: int
    max_mismatch_pu: float
    types: BusTypes
    bus_type: np.ndarray  # bus types used in the final solve (PQ where a Q limit was hit)
    pg: np.ndarray  # p.u. per generator (0 for generators out of service)
    qg: np.ndarray
    s_from: np.ndarray  # complex p.u. per branch, 0 when out of service
    s_to: np.ndarray
    q_limited: np.ndarray  # gen indices held at a Q limit
    s_injection: np.ndarray  # complex net injection per bus, p.u.
    max_p_mismatch_pu: float = 0.0  # over PV and PQ buses
    max_q_mismatch_pu: float = 0.0  # over PQ buses
    q_rounds: int = 0
    timings: dict = field(default_factory=dict)

    @property
    def vm(self):
        return np.abs(self.V)

    @property
    def va(self):
        return np.angle(self.V)


def initial_voltage(net, types, init="case"):
    """Starting voltages: 'case' (case Vm/Va), 'flat' (Vm 1, Va 0) or 'dc' (DC power-flow angles).

    In every mode generator buses start at their generators' set-point Vg, and the
    slack buses keep the case's angle (the angle reference), as in MATPOWER.
    """
    if init not in INIT_CHOICES:
        raise InputError(f"unknown --init '{init}'; expected one of {', '.join(INIT_CHOICES)}")
    n = net.n_bus
    if init == "case":
        vm, va = net.vm.copy(), net.va.copy()
    elif init == "flat":
        vm, va = np.ones(n), np.zeros(n)
        va[types.ref] = net.va[types.ref]
    else:
        from gat_hpc.pf.dc import solve_dc

        vm, va = np.ones(n), np.array(solve_dc(net).va, dtype=float)
    on = net.gen_status
    gbus = net.gen_bus[on]
    regulated = np.zeros(n, dtype=bool)
    regulated[types.ref] = True
    regulated[types.pv] = True
    k = regulated[gbus]
    vm[gbus[k]] = net.vg[on][k]
    V = vm * np.exp(1j * va)
    V[types.dead] = 0
    return V


def gen_dispatch(net, ybus, V, types, pg_spec, qg_spec, on, load):
    """Generator P and Q after a solve, MATPOWER's pfsoln rules.

    ``on`` marks the generators whose output is computed (others keep the
    specified values, which the caller has folded into ``load``, the complex
    load per bus). Q at each bus = injected Q + local Q load, shared between its in-service
    generators in proportion to their reactive ranges (equally where the range
    is zero or unbounded). The first in-service generator at each slack bus takes
    the slack's P (the others keep their set-points).
    """
    n = net.n_bus
    sinj = V * np.conj(ybus @ V)
    pg, qg = np.where(on, pg_spec, 0.0), np.where(on, qg_spec, 0.0)
    idx = np.flatnonzero(on)
    gbus = net.gen_bus[idx]
    count = np.bincount(gbus, minlength=n)
    qtot = sinj.imag + load.imag  # total generator Q per bus
    qmin, qmax = net.qmin[idx], net.qmax[idx]
    qmin_bus = np.bincount(gbus, qmin, n)
    qmax_bus = np.bincount(gbus, qmax, n)
    rng = qmax_bus - qmin_bus
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (qtot - qmin_bus)[gbus] / (rng[gbus] + np.finfo(float).eps)
        q_prop = qmin + share * (qmax - qmin)
    equal = (qmin_bus[gbus] == qmax_bus[gbus]) | ~np.isfinite(q_prop)
    qg[idx] = np.where(equal, qtot[gbus] / count[gbus], q_prop)
    # slack P: first in-service generator at each slack bus
    is_ref = np.zeros(n, dtype=bool)
    is_ref[types.ref] = True
    at_ref = idx[is_ref[gbus]]
    if at_ref.size:
        rb = net.gen_bus[at_ref]
        _, first = np.unique(rb, return_index=True)
        first_gen = at_ref[first]
        others = np.bincount(rb, pg[at_ref], n) - np.bincount(net.gen_bus[first_gen], pg[first_gen], n)
        b = net.gen_bus[first_gen]
        pg[first_gen] = sinj.real[b] + load.real[b] - others[b]
    return pg, qg


def branch_flows(yf, yt, V, net):
    """Complex power into each branch at its from and to ends, p.u."""
    s_from = V[net.f_bus] * np.conj(yf @ V)
    s_to = V[net.t_bus] * np.conj(yt @ V)
    return s_from, s_to


def solve_ac(net, tol=1e-8, max_iter=30, init="case", q_limits=False, solver="auto",
             callback=None, max_q_rounds=50, raise_on_fail=True, v0=None, cache=None):
    """Solve the AC power flow of ``net``; returns an :class:`ACResult`.

    ``tol``: max mismatch in p.u.; ``init``: 'case' | 'flat' | 'dc';
    ``q_limits``: enforce generator reactive limits (PV -> PQ);
    ``solver``: linear solver for Newton steps ('auto', 'klu', 'superlu', ...);
    ``v0``: complex start voltages (a warm start, e.g. the previous hour), overriding ``init``;
    ``cache``: a dict kept by the caller across solves of the same network topology (only
    loads and dispatch change, as in an hourly sweep): bus roles, Ybus, the Jacobian map and
    the factorisation's symbolic analysis are built on the first solve and reused after.
    Raises ConvergenceError (with the mismatch reached) unless ``raise_on_fail`` is False.
    """
    if cache is not None and "lu" in cache:
        lu = cache["lu"]
    else:
        lu = make_solver(solver) if isinstance(solver, str) else solver  # imports PETSc outside the timings
    t0 = time.perf_counter()
    if cache is not None and "ybus" in cache:
        types, ybus, yf, yt = cache["types"], cache["ybus"], cache["yf"], cache["yt"]
    else:
        types = bus_types(net)
        ybus, yf, yt = make_ybus(net)
    t_ybus = time.perf_counter()
    base_types = types
    if v0 is None:
        V = initial_voltage(net, types, init)
    else:
        V = np.array(v0, dtype=complex)
        V[types.dead] = 0
    t_init = time.perf_counter()
    on = net.gen_status.copy()
    pg_spec, qg_spec = net.pg.copy(), net.qg.copy()
    load = net.bus_load()
    q_fixed = np.zeros(net.n_gen, dtype=bool)  # generators held at a Q limit
    bus_type = net.bus_type.copy()
    total_it, rounds, newton_t = 0, 0, {}
    while True:
        active = on & ~q_fixed
        sbus = _sbus(net, pg_spec, qg_spec, on, load)
        if cache is not None and types is base_types and "jmap" in cache:
            jmap = cache["jmap"]
        else:
            jmap = JacobianMap(ybus, types.pv, types.pq)
        try:
            res = newton(ybus, sbus, V, types.pv, types.pq, tol=tol, max_iter=max_iter, solver=lu,
                         jmap=jmap, callback=callback)
        except BaseException:
            if lu is not solver and cache is None:
                lu.close()
            raise
        if cache is not None and types is base_types and "jmap" not in cache:
            cache.update(types=types, ybus=ybus, yf=yf, yt=yt, jmap=jmap, lu=lu)
        total_it += res.iterations
        for k, v in res.timings.items():
            newton_t[k] = newton_t.get(k, 0.0) + v
        V = res.V
        if not res.converged:
            break
        pg, qg = _dispatch(net, ybus, V, types, pg_spec, qg_spec, on, q_fixed, load)
        if not q_limits:
            break
        base = net.base_mva
        over = active & (qg * base > net.qmax * base + Q_VIOLATION_MVAR)
        under = active & (qg * base < net.qmin * base - Q_VIOLATION_MVAR)
        hit = over | under
        if not np.any(hit):
            break
        regulating = active & np.isin(net.gen_bus, np.concatenate([types.ref, types.pv]))
        if np.array_equal(hit, regulating):
            raise ConvergenceError(
                "every remaining generator is at a reactive limit: the Q limits cannot all be met "
                f"(after {rounds} rounds)", iterations=total_it)
        rounds += 1
        if rounds > max_q_rounds:
            raise ConvergenceError(f"Q-limit enforcement did not settle after {max_q_rounds} rounds", iterations=total_it)
        qg_spec = qg_spec.copy()
        qg_spec[~q_fixed & on] = qg[~q_fixed & on]
        qg_spec[over] = net.qmax[over]
        qg_spec[under] = net.qmin[under]
        pg_spec = np.where(on, pg, pg_spec)
        q_fixed |= hit
        types, bus_type = _switch_to_pq(net, types, bus_type, net.gen_bus[hit])
    t_solve = time.perf_counter()
    if lu is not solver and cache is None:
        lu.close()
    if res.converged:
        pg, qg = _dispatch(net, ybus, V, types, pg_spec, qg_spec, on, q_fixed, load)
    else:
        pg, qg = np.where(on, pg_spec, 0.0), np.where(on, qg_spec, 0.0)
    s_from, s_to = branch_flows(yf, yt, V, net)
    s_inj = V * np.conj(ybus @ V)
    mis = s_inj - sbus
    pvpq = np.concatenate([types.pv, types.pq])
    max_p = float(np.max(np.abs(mis.real[pvpq]))) if pvpq.size else 0.0
    max_q = float(np.max(np.abs(mis.imag[types.pq]))) if types.pq.size else 0.0
    t_end = time.perf_counter()
    bus_type = bus_type.copy()
    bus_type[types.dead] = 4
    result = ACResult(
        net=net, V=V, converged=res.converged, iterations=total_it, max_mismatch_pu=res.norm_f,
        types=types, bus_type=bus_type, pg=pg, qg=qg, s_from=s_from, s_to=s_to,
        q_limited=np.flatnonzero(q_fixed), q_rounds=rounds, s_injection=s_inj,
        max_p_mismatch_pu=max_p, max_q_mismatch_pu=max_q,
        timings=dict(ybus=t_ybus - t0, init=t_init - t_ybus, newton=t_solve - t_init,
                     jacobian=newton_t.get("jacobian", 0.0), factor=newton_t.get("factor", 0.0),
                     linear_solve=newton_t.get("solve", 0.0), flows=t_end - t_solve,
                     solve=t_solve - t0))
    if not res.converged and raise_on_fail:
        raise ConvergenceError(
            f"AC power flow did not converge in {total_it} iterations: max mismatch "
            f"{res.norm_f * net.base_mva:.4g} MW/MVAr ({res.norm_f:.3g} p.u., tolerance {tol:g} p.u.)",
            iterations=total_it, mismatch=res.norm_f)
    return result


def _dispatch(net, ybus, V, types, pg_spec, qg_spec, on, q_fixed, load):
    """gen_dispatch with the Q-limited generators held at their limits (treated as negative load)."""
    held = on & q_fixed
    held_bus = sum_per_bus(net.gen_bus, np.where(held, pg_spec + 1j * qg_spec, 0), net.n_bus)
    pg, qg = gen_dispatch(net, ybus, V, types, pg_spec, qg_spec, on & ~q_fixed, load - held_bus)
    pg[held], qg[held] = pg_spec[held], qg_spec[held]
    return pg, qg


def _sbus(net, pg, qg, on, load):
    return sum_per_bus(net.gen_bus, np.where(on, pg + 1j * qg, 0), net.n_bus) - load


def _switch_to_pq(net, types, bus_type, buses):
    """Make ``buses`` PQ; an island left without slack gets its first PV bus as slack."""
    bus_type = bus_type.copy()
    bus_type[buses] = PQ
    role = np.zeros(net.n_bus, dtype=np.int8)  # 0 pq, 1 pv, 2 ref, -1 dead
    role[types.pv] = 1
    role[types.ref] = 2
    role[types.dead] = -1
    role[buses] = 0
    isl = types.island
    for k in np.unique(isl[isl >= 0]):
        members = np.flatnonzero(isl == k)
        if not np.any(role[members] == 2):
            pvs = members[role[members] == 1]
            if pvs.size == 0:
                raise ConvergenceError("the slack bus hit a reactive limit and its island has no PV bus left to take over")
            role[pvs[0]] = 2
            bus_type[pvs[0]] = 3
    new = BusTypes(ref=np.flatnonzero(role == 2), pv=np.flatnonzero(role == 1), pq=np.flatnonzero(role == 0),
                   dead=types.dead, island=isl)
    return new, bus_type
