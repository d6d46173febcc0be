"""The Newton Jacobian and Ybus against finite differences and PYPOWER's matrices."""

import numpy as np
import pytest
import scipy.sparse as sp

from gat_hpc.network.matpower import read_matpower
from gat_hpc.pf.newton import JacobianMap, dsbus_dv
from gat_hpc.pf.topology import bus_types
from gat_hpc.pf.ybus import make_ybus
from tests.conftest import case_path
from tests.oracle import load_mpc


def _random_voltage(n, seed):
    rng = np.random.default_rng(seed)
    return (1 + 0.05 * rng.standard_normal(n)) * np.exp(1j * 0.2 * rng.standard_normal(n))


@pytest.mark.parametrize("name", ["case30", "case300"])
def test_jacobian_matches_finite_differences(name):
    net = read_matpower(case_path(name))
    ybus, _, _ = make_ybus(net)
    t = bus_types(net)
    V = _random_voltage(net.n_bus, 1)
    jm = JacobianMap(ybus, t.pv, t.pq)
    J = jm.fill(V, ybus @ V).toarray()
    pvpq = np.concatenate([t.pv, t.pq])

    def F(x):
        va, vm = np.angle(V).copy(), np.abs(V).copy()
        va[pvpq] = x[:len(pvpq)]
        vm[t.pq] = x[len(pvpq):]
        W = vm * np.exp(1j * va)
        s = W * np.conj(ybus @ W)
        return np.concatenate([s[pvpq].real, s[t.pq].imag])

    x0 = np.concatenate([np.angle(V)[pvpq], np.abs(V)[t.pq]])
    h = 1e-6
    cols = np.random.default_rng(2).choice(len(x0), size=min(40, len(x0)), replace=False)
    for c in cols:
        e = np.zeros_like(x0)
        e[c] = h
        fd = (F(x0 + e) - F(x0 - e)) / (2 * h)
        scale = max(1.0, np.max(np.abs(fd)))
        assert np.max(np.abs(fd - J[:, c])) / scale < 1e-6, f"column {c}"


def test_fast_fill_equals_sparse_products():
    """The gather-based fill equals the textbook dS/dV sparse products, sliced into blocks."""
    net = read_matpower(case_path("case118"))
    ybus, _, _ = make_ybus(net)
    t = bus_types(net)
    V = _random_voltage(net.n_bus, 3)
    dvm, dva = dsbus_dv(ybus, V)
    pvpq = np.concatenate([t.pv, t.pq])
    ref = sp.bmat([[dva[pvpq][:, pvpq].real, dvm[pvpq][:, t.pq].real],
                   [dva[t.pq][:, pvpq].imag, dvm[t.pq][:, t.pq].imag]]).toarray()
    J = JacobianMap(ybus, t.pv, t.pq).fill(V, ybus @ V).toarray()
    assert np.max(np.abs(J - ref)) < 1e-10


@pytest.mark.parametrize("name", ["case30", "case300", "case_ACTIVSg2000"])
def test_ybus_matches_pypower(name):
    from pypower.ext2int import ext2int
    from pypower.makeYbus import makeYbus

    mpc = load_mpc(case_path(name))
    ppc = ext2int({"version": "2", "baseMVA": mpc["baseMVA"], "bus": mpc["bus"].copy(),
                   "gen": mpc["gen"].copy(), "branch": mpc["branch"].copy()})
    yref, yf_ref, yt_ref = makeYbus(ppc["baseMVA"], ppc["bus"], ppc["branch"])
    net = read_matpower(case_path(name))
    ybus, yf, yt = make_ybus(net)
    # these cases have no isolated buses and all branches in service, so the orders agree
    assert abs(ybus - yref).max() < 1e-9
    assert abs(yf - yf_ref).max() < 1e-9
    assert abs(yt - yt_ref).max() < 1e-9
