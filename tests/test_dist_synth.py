"""`gat-hpc synth tile`: the tiled network's power flow is K copies of the base case's."""

import os
import subprocess
import sys

import numpy as np
import pytest

from gat_hpc.dist.synth import neighbour_pairs, tile
from gat_hpc.errors import InputError
from gat_hpc.network.matpower import read_matpower
from gat_hpc.pf.ac import solve_ac
from tests.conftest import case_path

GAT = os.path.join(os.path.dirname(sys.executable), "gat-hpc")


def test_neighbour_pairs_on_a_grid():
    assert neighbour_pairs(1) == []
    assert neighbour_pairs(2) == [(0, 1)]
    assert neighbour_pairs(4) == [(0, 1), (0, 2), (1, 3), (2, 3)]
    pairs = neighbour_pairs(16)
    assert len(pairs) == 24 and len(set(pairs)) == 24


def test_tiled_solution_is_copies_of_the_base_solution():
    net = read_matpower(case_path("case118"))
    base = solve_ac(net)
    big = tile(net, copies=5, ties=6, seed=3)
    pairs = neighbour_pairs(5)
    assert big.n_bus == 5 * net.n_bus and big.n_gen == 5 * net.n_gen
    assert big.n_branch == 5 * net.n_branch + 6 * len(pairs)
    assert len(np.unique(big.bus_id)) == big.n_bus
    assert np.count_nonzero(big.bus_type == 3) == 5 * np.count_nonzero(net.bus_type == 3)  # a slack per copy
    res = solve_ac(big)
    assert res.iterations == base.iterations
    assert np.max(np.abs(res.V.reshape(5, -1) - base.V[None, :])) < 1e-9
    assert np.max(np.abs(res.s_from[-6 * len(pairs):])) < 1e-9  # ties carry nothing
    ties_f, ties_t = big.f_bus[-6 * len(pairs):], big.t_bus[-6 * len(pairs):]
    assert np.array_equal(ties_f % net.n_bus, ties_t % net.n_bus)  # same bus in both copies
    assert np.array_equal(tile(net, 5, 6, seed=3).f_bus, big.f_bus)  # seeded
    assert not np.array_equal(tile(net, 5, 6, seed=4).f_bus, big.f_bus)


def test_bad_tile_arguments():
    net = read_matpower(case_path("case9"))
    with pytest.raises(InputError, match="--copies"):
        tile(net, 0, 1)
    with pytest.raises(InputError, match="only 9 energised buses"):
        tile(net, 2, 10)


def test_synth_tile_command_writes_grid_arrow(tmp_path):
    out = tmp_path / "big.arrow"
    r = subprocess.run([GAT, "synth", "tile", case_path("case14"), "--copies", "3", "--ties", "2", "--seed", "1",
                        "--out", out], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "42 buses" in r.stderr
    from gat_hpc.network.arrow import read_grid_arrow

    big = read_grid_arrow(out)
    assert big.n_bus == 42 and big.n_branch == 3 * 20 + 2 * 2
    r = subprocess.run([GAT, "synth", "tile", case_path("case14"), "--copies", "2", "--ties", "99", "--out", out],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "energised buses" in r.stderr and "Traceback" not in r.stderr


def test_clustered_ties_are_a_compact_region_and_carry_nothing():
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    net = read_matpower(case_path("case300"))
    base = solve_ac(net)
    big = tile(net, copies=4, ties=12, seed=2, tie_buses="cluster")
    pairs = neighbour_pairs(4)
    res = solve_ac(big)
    assert res.iterations == base.iterations
    assert np.max(np.abs(res.V.reshape(4, -1) - base.V[None, :])) < 1e-9
    assert np.max(np.abs(res.s_from[-12 * len(pairs):])) < 1e-9
    on = net.branch_in_service()
    adj = sp.csr_matrix((np.ones(int(on.sum())), (net.f_bus[on], net.t_bus[on])), shape=(net.n_bus,) * 2)
    scattered = tile(net, copies=4, ties=12, seed=2)
    for p in range(len(pairs)):
        ends = big.f_bus[big.n_branch - 12 * len(pairs):][12 * p:12 * (p + 1)] % net.n_bus
        assert len(np.unique(ends)) == 12
        # breadth-first from one bus: the 12 buses hold together in the base network
        assert connected_components(adj[ends][:, ends], directed=False)[0] == 1
        ends = scattered.f_bus[scattered.n_branch - 12 * len(pairs):][12 * p:12 * (p + 1)] % net.n_bus
        assert connected_components(adj[ends][:, ends], directed=False)[0] > 1  # random: scattered
    with pytest.raises(InputError, match="--tie-buses"):
        tile(net, 2, 3, tie_buses="border")
