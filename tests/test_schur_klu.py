"""The interface Schur complement read from KLU's factors (``gat_hpc.dist.schur.OrderedKLU``),
one process: against the dense formula on a real power-flow Jacobian, and the one-off check
that guards the in-place reading."""

import numpy as np
import pytest
import scipy.sparse as sp

from gat_hpc.dist import schur
from gat_hpc.network.matpower import read_matpower
from gat_hpc.pf.ac import initial_voltage
from gat_hpc.pf.newton import JacobianMap
from gat_hpc.pf.topology import bus_types
from gat_hpc.pf.ybus import make_ybus
from tests.conftest import case_path


def _jacobian_interface_last(g):
    """case300's Newton Jacobian (CSC) in an order with ``g`` random unknowns last, and that g."""
    net = read_matpower(case_path("case300"))
    types = bus_types(net)
    ybus = make_ybus(net)[0]
    ybus.sort_indices()
    V = initial_voltage(net, types, "case")
    J = JacobianMap(ybus, types.pv, types.pq).fill(V, ybus @ V).tocsc()
    n = J.shape[0]
    last = np.zeros(n, dtype=bool)
    last[np.random.default_rng(3).choice(n, g, replace=False)] = True
    order = schur.interface_last_order(J, last)
    assert np.all(last[order[n - g:]])
    A = J[order][:, order].tocsc()
    A.sort_indices()
    return A


def _dense_schur(A, g):
    d = A.toarray()
    k = A.shape[0] - g
    return d[k:, k:] - d[k:, :k] @ np.linalg.solve(d[:k, :k], d[:k, k:])


@pytest.mark.skipif(schur._klu._load() is None, reason="libklu is not installed")
def test_schur_read_in_place_equals_dense_formula(monkeypatch):
    monkeypatch.setattr(schur, "_IN_PLACE_READING_CHECKED", False)  # as in a fresh process
    g = 24
    A = _jacobian_interface_last(g)
    klu = schur.OrderedKLU(A.indptr, A.indices, g)
    try:
        for scale in (1.0, 1.1):  # a factorisation, then a refactorisation with new values
            klu.factor(A.data * scale)
            s = klu.schur()
            ref = _dense_schur(A * scale, g)
            assert np.max(np.abs(s - ref)) < 1e-9 * np.max(np.abs(ref))
        assert klu._fast is True and schur._IN_PLACE_READING_CHECKED  # read in place, not through klu_extract
        assert np.max(np.abs(klu._schur_by_extract() - s)) < 1e-9 * np.max(np.abs(s))
        # the check refuses a matrix that is not the Schur complement
        wrong = s.copy()
        wrong[3, 5] += 1e-3 * np.max(np.abs(s))
        assert klu._solves_back(s) and not klu._solves_back(wrong)
    finally:
        klu.close()


@pytest.mark.skipif(schur._klu._load() is None, reason="libklu is not installed")
def test_misread_factors_fall_back_to_klu_extract(monkeypatch):
    g = 10
    A = _jacobian_interface_last(g)
    klu = schur.OrderedKLU(A.indptr, A.indices, g)
    monkeypatch.setattr(schur.OrderedKLU, "_schur_in_place", lambda self: np.eye(self.g))
    monkeypatch.setattr(schur, "_IN_PLACE_READING_CHECKED", False)  # as in a fresh process
    try:
        klu.factor(A.data)
        s = klu.schur()
        assert klu._fast is False
        assert np.max(np.abs(s - _dense_schur(A, g))) < 1e-9 * np.max(np.abs(s))
    finally:
        klu.close()


@pytest.mark.skipif(schur._klu._load() is None, reason="libklu is not installed")
def test_fresh_factorisation_after_a_failed_refactorisation(monkeypatch):
    """When a refactorisation is refused, the new numeric object (which malloc may place at the
    old one's address) has its own LU layout: S must be read from it, not through stale maps."""
    g = 16
    A = _jacobian_interface_last(g)
    klu = schur.OrderedKLU(A.indptr, A.indices, g)
    try:
        klu.factor(A.data)
        klu.schur()
        monkeypatch.setattr(klu.lib, "klu_refactor", lambda *args: 0)  # every refactorisation refused
        for scale in (1.3, 0.7):
            values = A.data * (scale + 0.05 * np.sin(np.arange(A.nnz)))
            klu.factor(values)
            s = klu.schur()
            B = sp.csc_matrix((values, A.indices, A.indptr), shape=A.shape)
            ref = _dense_schur(B, g)
            assert np.max(np.abs(s - ref)) < 1e-9 * np.max(np.abs(ref))
    finally:
        klu.close()
