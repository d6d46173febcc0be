"""AC power flow against PYPOWER (MATPOWER's model) on the MATPOWER test cases."""

import numpy as np
import pytest

from gat_hpc.network.matpower import read_matpower
from gat_hpc.pf.ac import solve_ac
from tests.conftest import case_path
from tests.oracle import PF, PG, PT, QF, QG, QT, VA, VM, pypower_pf

CASES = ["case9", "case14", "case30", "case118", "case300", "case1354pegase", "case2869pegase", "case_ACTIVSg2000"]


def compare(name, q_limits):
    path = case_path(name)
    ref, ok = pypower_pf(path, q_limits=q_limits)
    assert ok, f"PYPOWER did not converge on {name}"
    net = read_matpower(path)
    res = solve_ac(net, tol=1e-10, q_limits=q_limits)
    assert res.converged
    bus, br, gen = ref["bus"], ref["branch"], ref["gen"]
    assert np.max(np.abs(bus[:, VM] - res.vm)) <= 1e-6
    assert np.max(np.abs(bus[:, VA] - np.rad2deg(res.va))) <= 1e-4
    base = net.base_mva
    for col, ours in ((PF, res.s_from.real), (QF, res.s_from.imag), (PT, res.s_to.real), (QT, res.s_to.imag)):
        assert np.max(np.abs(br[:, col] - ours * base)) <= 1e-3
    assert np.max(np.abs(gen[:, PG] - res.pg * base)) <= 1e-3
    finite = np.isfinite(gen[:, QG])  # PYPOWER gives NaN Q shares where a bus's Q range is unbounded
    assert np.max(np.abs(gen[finite, QG] - res.qg[finite] * base)) <= 1e-3
    # generator Q per bus always balances, whatever the sharing rule
    qbus_ref = np.bincount(net.gen_bus, np.nan_to_num(gen[:, QG]) * (gen[:, 7] > 0), net.n_bus)
    qbus = np.bincount(net.gen_bus, res.qg * base, net.n_bus)
    sel = np.bincount(net.gen_bus, ~finite, net.n_bus) == 0
    assert np.max(np.abs(qbus_ref[sel] - qbus[sel])) <= 1e-3
    return ref, res


@pytest.mark.parametrize("name", CASES)
def test_ac_matches_pypower(name):
    compare(name, q_limits=False)


@pytest.mark.parametrize("name", ["case14", "case118", "case300", "case2869pegase", "case_ACTIVSg2000"])
def test_ac_q_limits_match_matpower_rules(name):
    ref, res = compare(name, q_limits=True)
    net = res.net
    limited = np.flatnonzero(ref["limited"])
    assert set(res.q_limited.tolist()) == set(limited.tolist())
    if name in ("case118", "case2869pegase"):
        assert len(limited) > 0, "these cases hit Q limits; the test must exercise the switch"
    base = net.base_mva
    q = res.qg * base
    on = net.gen_status
    # every in-service generator within its limits (to the check's tolerance)
    assert np.all(q[on] <= net.qmax[on] * base + 1e-4)
    assert np.all(q[on] >= net.qmin[on] * base - 1e-4)


def test_initialisations_reach_the_same_solution():
    net = read_matpower(case_path("case300"))
    sols = [solve_ac(net, tol=1e-10, init=i).V for i in ("case", "flat", "dc")]
    for V in sols[1:]:
        assert np.max(np.abs(V - sols[0])) < 1e-8


@pytest.mark.parametrize("solver", ["superlu", "klu", "petsc-klu", "umfpack"])
def test_linear_solvers_agree(solver):
    from gat_hpc.pf import klu
    from gat_hpc.pf.linsolve import petsc_available
    from tests.conftest import need

    if solver in ("petsc-klu", "umfpack"):
        need("petsc", petsc_available(), "petsc4py does not import")
    if solver == "klu":
        need("petsc", klu.available(), "libklu (installed with Debian's PETSc) does not load")
    net = read_matpower(case_path("case1354pegase"))
    ref = solve_ac(net, tol=1e-10, solver="superlu")
    res = solve_ac(net, tol=1e-10, solver=solver)
    assert res.iterations == ref.iterations
    assert np.max(np.abs(res.V - ref.V)) < 1e-10


def test_q_limit_infeasible_when_every_generator_hits_a_limit():
    from gat_hpc.errors import ConvergenceError

    net = read_matpower(case_path("case9"))
    net.qmax[:] = 0.0
    net.qmin[:] = -0.001
    with pytest.raises(ConvergenceError):
        solve_ac(net, q_limits=True)


def test_dead_island_is_deenergised_and_islands_are_counted_without_gaps():
    """Buses 7 and 8 of case9 cut off with no load or generation: de-energised, not an error."""
    net = read_matpower(case_path("case9"))
    k = {(net.bus_id[f], net.bus_id[t]): i for i, (f, t) in enumerate(zip(net.f_bus, net.t_bus))}
    for pair in ((6, 7), (8, 2), (8, 9)):
        net.branch_status[k[pair]] = False
    net.load_status[net.bus_id[net.load_bus] == 7] = False  # the cut-off pair carries nothing
    net.bus_type[1] = 3  # bus 2 and its generator form an island of their own, with a slack
    res = solve_ac(net, tol=1e-10)
    assert res.types.n_islands == 2
    dead = set(net.bus_id[res.types.dead].tolist())
    assert dead == {7, 8}
    assert np.all(res.V[res.types.dead] == 0)
    assert np.all(res.bus_type[res.types.dead] == 4)
