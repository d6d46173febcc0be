"""Rolling DC-OPF against independent formulations: PYPOWER's rundcopf (its own interior-point
QP solver) and LPs written out here with PTDFs and solved by scipy; LMPs against load
perturbations; ramp limits across windows; bad input."""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gat_hpc.errors import GatError
from gat_hpc.network.matpower import read_matpower
from gat_hpc.studies import opf as O
from tests.conftest import case_path
from tests.oracle import load_mpc

GAT = os.path.join(os.path.dirname(sys.executable), "gat-hpc")


def opf(*args):
    """`gat-hpc opf ...` in process; returns the exit code."""
    from gat_hpc.cli import opf as cli

    p = argparse.ArgumentParser()
    cli.add_parser(p.add_subparsers())
    a = p.parse_args(["opf", *map(str, args)])
    try:
        return a.func(a)
    except GatError as exc:
        return exc.exit_code


def write_mpc(path, mpc):
    """A MATPOWER file with every column of the matrices (ramp columns included)."""
    def rows(a):
        return "\n".join("\t" + "\t".join(f"{v:.17g}" for v in r) + ";" for r in np.atleast_2d(a))

    text = f"function mpc = c\nmpc.version = '2';\nmpc.baseMVA = {mpc['baseMVA']:.17g};\n"
    for key in ("bus", "gen", "branch", "gencost"):
        text += f"mpc.{key} = [\n{rows(mpc[key])}\n];\n"
    path.write_text(text)
    return path


def congested(name):
    """The case's matrices with its two heaviest optimal flows limited to 90% of themselves
    (case118 has no ratings: its other branches stay unlimited)."""
    mpc = load_mpc(case_path(name))
    r = pypower(mpc)
    flows = np.abs(r["branch"][:, 13])
    top = np.argsort(-flows)[:2]
    if name == "case118":
        mpc["branch"][:, 5] = 0.0
    mpc["branch"][top, 5] = np.round(0.9 * flows[top], 1)
    return mpc


def pypower(mpc, tol=1e-10):
    from pypower.api import ppoption, rundcopf

    ppc = {k: np.array(mpc[k], dtype=float) for k in ("bus", "gen", "branch", "gencost")}
    ppc.update(version="2", baseMVA=mpc["baseMVA"])
    opt = ppoption(VERBOSE=0, OUT_ALL=0, PDIPM_FEASTOL=tol, PDIPM_GRADTOL=tol, PDIPM_COMPTOL=tol, PDIPM_COSTTOL=tol)
    with contextlib.redirect_stdout(io.StringIO()):
        r = rundcopf(ppc, opt)
    assert r["success"]
    return r


def ptdf_matrix(mpc):
    """PTDF (branches x buses, slack = the reference bus) built here from the raw matrices."""
    bus, br = mpc["bus"], mpc["branch"]
    idx = {int(b): i for i, b in enumerate(bus[:, 0])}
    nb, nl = len(bus), len(br)
    tap = np.where(br[:, 8] == 0, 1.0, br[:, 8])
    b = np.where(br[:, 10] > 0, 1.0 / (br[:, 3] * tap), 0.0)
    cft = np.zeros((nl, nb))
    for k in range(nl):
        cft[k, idx[int(br[k, 0])]] = 1
        cft[k, idx[int(br[k, 1])]] = -1
    bf = b[:, None] * cft
    bbus = cft.T @ bf
    ref = int(np.flatnonzero(bus[:, 1] == 3)[0])
    keep = [i for i in range(nb) if i != ref]
    ptdf = np.zeros((nl, nb))
    ptdf[:, keep] = bf[:, keep] @ np.linalg.inv(bbus[np.ix_(keep, keep)])
    return ptdf, idx


def direct_lp(mpc, loads_mw, ramp_mw=None):
    """Multi-hour DC-OPF with linear costs written out with PTDFs: min sum c1 Pg, scipy linprog.

    ``loads_mw``: buses x T. Returns (cost $ over the hours without constants, Pg MW gens x T).
    """
    from scipy.optimize import linprog

    ptdf, idx = ptdf_matrix(mpc)
    gen, gc, br = mpc["gen"], mpc["gencost"], mpc["branch"]
    ng, T = len(gen), loads_mw.shape[1]
    on = gen[:, 7] > 0
    c1 = np.where(on, gc[:, 4 + int(gc[0, 3]) - 2], 0.0)
    gbus = np.array([idx[int(b)] for b in gen[:, 0]])
    demand = loads_mw + mpc["bus"][:, 4][:, None]  # Gs counts as load in the DC model
    h = ptdf[:, gbus]  # flow per MW of each generator
    lim = np.flatnonzero((br[:, 5] > 0) & (br[:, 10] > 0))
    a_eq, b_eq, a_ub, b_ub = [], [], [], []
    for t in range(T):
        row = np.zeros(ng * T)
        row[t * ng:(t + 1) * ng] = 1
        a_eq.append(row)
        b_eq.append(demand[:, t].sum())
        base_flow = ptdf @ demand[:, t]
        for k in lim:
            row = np.zeros(ng * T)
            row[t * ng:(t + 1) * ng] = h[k]
            a_ub += [row, -row]
            b_ub += [br[k, 5] + base_flow[k], br[k, 5] - base_flow[k]]
        if ramp_mw is not None and t > 0:
            for g in range(ng):
                if np.isfinite(ramp_mw[g]):
                    row = np.zeros(ng * T)
                    row[t * ng + g], row[(t - 1) * ng + g] = 1, -1
                    a_ub += [row, -row]
                    b_ub += [ramp_mw[g], ramp_mw[g]]
    bounds = [(gen[g, 9], gen[g, 8]) if on[g] else (0, 0) for _ in range(T) for g in range(ng)]
    r = linprog(np.tile(c1, T), A_ub=np.array(a_ub) if a_ub else None, b_ub=b_ub or None, A_eq=np.array(a_eq),
                b_eq=b_eq, bounds=bounds, method="highs", options={"primal_feasibility_tolerance": 1e-10,
                                                                     "dual_feasibility_tolerance": 1e-10})
    assert r.status == 0, r.message
    return r.fun, r.x.reshape(T, ng).T


def linear_costs(mpc):
    """Linear costs with distinct slopes (so the LP optimum is unique): c1 + 0.37 g, no c2."""
    out = {k: (np.array(v, dtype=float) if isinstance(v, np.ndarray) else v) for k, v in mpc.items()}
    gc = out["gencost"]
    n = int(gc[0, 3])
    c1 = gc[:, 4 + n - 2] + 0.37 * np.arange(len(gc))
    c0 = gc[:, 4 + n - 1]
    out["gencost"] = np.column_stack([gc[:, :3], np.full(len(gc), 2.0), c1, c0])
    return out


def reduced(run, table):
    return pq.read_table(os.path.join(run, "reduce", f"{table}.parquet"))


# ---------------------------------------------------------------- against PYPOWER (quadratic costs)
@pytest.mark.parametrize("name", ["case9", "case30", "case118"])
def test_single_hour_matches_pypower(tmp_path, name):
    mpc = congested(name)
    case = write_mpc(tmp_path / f"{name}.m", mpc)
    assert opf("dc", case, "--run-dir", tmp_path / "run", "--quiet") == 0
    ref = pypower(mpc)
    hours = reduced(tmp_path / "run", "hours")
    assert hours["cost_per_h"][0].as_py() == pytest.approx(ref["f"], rel=1e-6)
    pg = reduced(tmp_path / "run", "dispatch")["pg_mw"].to_numpy()
    scale = np.abs(ref["gen"][:, 1]).max()
    assert np.abs(pg - ref["gen"][:, 1]).max() <= 1e-6 * scale
    lmp = reduced(tmp_path / "run", "lmp")["lmp_per_mwh"].to_numpy()
    lam = ref["bus"][:, 13]
    off = np.flatnonzero(np.abs(lmp - lam) > 1e-6 * np.abs(lam).max())
    # a price may differ only where it is not unique: a bus whose marginal cost has a kink (case118's
    # bus 9 between its two limited branches), where any value between the one-sided slopes is a dual; the
    # vertex HiGHS returns and the interior point PYPOWER returns must both lie between them
    assert len(off) <= 2, off
    net = read_matpower(str(case))
    model = O.WindowModel(net, O.gen_costs(net), 1)
    load = net.bus_load().real[:, None]
    args = (net.pmin[:, None], net.pmax[:, None], net.gen_status[:, None])
    c0 = model.solve(load, *args).cost_h[0]
    for b in off:
        slopes = []
        for sign in (-1, 1):
            l2 = load.copy()
            l2[b] += sign * 1e-3 / net.base_mva
            slopes.append((model.solve(l2, *args).cost_h[0] - c0) / (sign * 1e-3))
        lo, hi = min(slopes) - 1e-4, max(slopes) + 1e-4
        assert lo <= lmp[b] <= hi and lo <= lam[b] <= hi, (b, slopes, lmp[b], lam[b])
    # binding branch limits: those at their rating in PYPOWER's solution, with its shadow prices
    b = reduced(tmp_path / "run", "binding")
    kinds = np.array(b["kind"].to_pylist())
    got = sorted(b["element_id"].to_numpy()[kinds == "branch"].tolist())
    rate, flow = ref["branch"][:, 5], ref["branch"][:, 13]
    want = sorted((np.flatnonzero((rate > 0) & (np.abs(flow) >= rate - 1e-5)) + 1).tolist())
    assert got == want
    assert want, "the test case should have congestion"
    mu = np.abs(b["shadow_price_per_mwh"].to_numpy()[kinds == "branch"])
    mu_ref = np.abs(ref["branch"][:, 17] - ref["branch"][:, 18])[np.array(got) - 1]  # MU_SF - MU_ST, $/MWh
    tol = 1e-5 * max(1.0, mu_ref.max())
    if name == "case118":
        # its two limited branches (8-9, 9-10) are in series through bus 9, which has neither load
        # nor generation: they carry the same flow, so only their total shadow price is unique
        assert mu.sum() == pytest.approx(mu_ref.sum(), abs=tol)
    else:
        assert np.abs(mu - mu_ref).max() <= tol


def test_quadratic_costs_over_multi_hour_windows(tmp_path):
    """Regression: congested case30 (quadratic costs) over this 12-hour profile failed with
    "HiGHS reported an error" for every horizon >= 3. HiGHS's QP solver, finding its own
    starting vertex, set start values below 1e-4 to zero (gen 6's 5.2e-5 p.u. in hour 9), so
    its optimum missed the power balance by that much and HiGHS rejected it. Without ramps
    the hours are independent: every horizon must give the single-hour optimum of each hour,
    which PYPOWER's interior-point QP gives too."""
    mpc = congested("case30")
    case = write_mpc(tmp_path / "case30.m", mpc)
    h = np.arange(12)
    scale = 0.9 + 0.1 * np.sin(2 * np.pi * h / 24)
    pq.write_table(pa.table({"hour": h, "load_scale": scale}), tmp_path / "p.parquet")
    ng = len(mpc["gen"])
    runs = {}
    for horizon in (1, 3, 4, 12):
        run = tmp_path / f"h{horizon}"
        assert opf("dc", case, "--profiles", tmp_path / "p.parquet", "--horizon", horizon, "--run-dir", run,
                   "--quiet") == 0, horizon
        assert reduced(run, "hours")["hour"].to_pylist() == h.tolist()
        runs[horizon] = (reduced(run, "hours")["cost_per_h"].to_numpy(),
                         reduced(run, "dispatch")["pg_mw"].to_numpy().reshape(12, ng).T)
    ref_cost, ref_pg = [], []
    for s in scale:
        m = {k: (np.array(v, dtype=float) if isinstance(v, np.ndarray) else v) for k, v in mpc.items()}
        m["bus"][:, 2] *= s
        r = pypower(m)
        ref_cost.append(r["f"])
        ref_pg.append(r["gen"][:, 1])
    ref_cost, ref_pg = np.array(ref_cost), np.array(ref_pg).T
    one_cost, one_pg = runs[1]
    for horizon, (cost, pg) in runs.items():
        assert np.all(np.abs(cost - one_cost) <= 1e-6 * one_cost), horizon
        assert np.abs(pg - one_pg).max() <= 1e-6 * np.abs(one_pg).max(), horizon
        assert np.all(np.abs(cost - ref_cost) <= 1e-6 * ref_cost), horizon
        assert np.abs(pg - ref_pg).max() <= 1e-6 * np.abs(ref_pg).max(), horizon
    # the model itself, window after window as the run solves them (the branch rows that the
    # failing window 9..11 met had been added by the earlier windows): each QP starts from the
    # companion LP's vertex, never from HiGHS's own (no simplex iterations inside the QP solve)
    net = read_matpower(str(case))
    model = O.WindowModel(net, O.gen_costs(net), 3)
    bounds = [np.repeat(a[:, None], 3, axis=1) for a in (net.pmin, net.pmax, net.gen_status)]
    for w in range(0, 12, 3):
        res = model.solve(net.bus_load().real[:, None] * scale[None, w:w + 3], *bounds, hours=h[w:w + 3])
        assert model.h.getInfo().simplex_iteration_count == 0
        assert np.allclose(res.cost_h, one_cost[w:w + 3], rtol=1e-6, atol=0)


# ---------------------------------------------------------------- against an LP written here
@pytest.mark.parametrize("name", ["case9", "case30", "case118"])
def test_linear_costs_match_direct_lp_over_hours(tmp_path, name):
    mpc = linear_costs(congested(name))
    case = write_mpc(tmp_path / f"{name}.m", mpc)
    scale = np.array([0.9, 1.0, 0.96, 0.85])
    pq.write_table(pa.table({"hour": np.arange(4), "load_scale": scale}), tmp_path / "p.parquet")
    assert opf("dc", case, "--profiles", tmp_path / "p.parquet", "--horizon", 2, "--run-dir", tmp_path / "run",
               "--quiet") == 0
    loads = mpc["bus"][:, 2][:, None] * scale[None, :]
    cost, pg = direct_lp(mpc, loads)
    hours = reduced(tmp_path / "run", "hours")
    c0 = mpc["gencost"][:, 5][mpc["gen"][:, 7] > 0].sum()
    assert hours["cost_per_h"].to_numpy().sum() == pytest.approx(cost + 4 * c0, rel=1e-6)
    got = reduced(tmp_path / "run", "dispatch")["pg_mw"].to_numpy().reshape(4, -1).T
    assert np.abs(got - pg).max() <= 1e-6 * np.abs(pg).max()


def test_piecewise_linear_costs_match_direct_lp(tmp_path):
    mpc = load_mpc(case_path("case30"))
    ng = len(mpc["gen"])
    # convex three-segment curves through the polynomial costs at 0, 40% and 100% of Pmax
    rows = []
    for g in range(ng):
        c2, c1, c0 = mpc["gencost"][g, 4:7]
        x = np.array([0.0, 0.4, 1.0]) * mpc["gen"][g, 8]
        f = c2 * x ** 2 + c1 * x + c0
        rows.append([1, 0, 0, 3, *np.column_stack([x, f]).ravel()])
    mpc["gencost"] = np.array(rows)
    case = write_mpc(tmp_path / "pwl.m", mpc)
    assert opf("dc", case, "--run-dir", tmp_path / "run", "--quiet") == 0
    # the same problem written with explicit cost variables, solved by scipy
    from scipy.optimize import linprog

    ptdf, idx = ptdf_matrix(mpc)
    gen, br = mpc["gen"], mpc["branch"]
    gbus = np.array([idx[int(b)] for b in gen[:, 0]])
    demand = mpc["bus"][:, 2] + mpc["bus"][:, 4]
    nv = 2 * ng  # Pg, y
    a_ub, b_ub = [], []
    for g in range(ng):
        x, f = mpc["gencost"][g, 4::2], mpc["gencost"][g, 5::2]
        for k in range(2):
            m = (f[k + 1] - f[k]) / (x[k + 1] - x[k])
            row = np.zeros(nv)
            row[g], row[ng + g] = m, -1  # m (p - x_k) + f_k <= y
            a_ub.append(row)
            b_ub.append(m * x[k] - f[k])
    flow0 = ptdf @ demand
    for k in np.flatnonzero(br[:, 5] > 0):
        row = np.zeros(nv)
        row[:ng] = ptdf[k, gbus]
        a_ub += [row, -row]
        b_ub += [br[k, 5] + flow0[k], br[k, 5] - flow0[k]]
    a_eq = np.r_[np.ones(ng), np.zeros(ng)][None, :]
    r = linprog(np.r_[np.zeros(ng), np.ones(ng)], A_ub=np.array(a_ub), b_ub=b_ub, A_eq=a_eq, b_eq=[demand.sum()],
                bounds=[(gen[g, 9], gen[g, 8]) for g in range(ng)] + [(None, None)] * ng, method="highs")
    assert r.status == 0
    assert reduced(tmp_path / "run", "hours")["cost_per_h"][0].as_py() == pytest.approx(r.fun, rel=1e-6)


# ---------------------------------------------------------------- LMPs
@pytest.mark.parametrize("name,linear", [("case30", False), ("case118", True)])
def test_lmp_equals_marginal_cost_of_load(tmp_path, name, linear):
    mpc = congested(name)
    if linear:
        mpc = linear_costs(mpc)
    net = read_matpower(str(write_mpc(tmp_path / "c.m", mpc)))
    model = O.WindowModel(net, O.gen_costs(net), 1)
    args = (net.pmin[:, None], net.pmax[:, None], net.gen_status[:, None])
    load = net.bus_load().real[:, None]
    res = model.solve(load, *args)
    assert np.ptp(res.lmp) > 1.0, "congestion should separate the prices"
    d = 1e-3  # MW
    for b in np.linspace(0, net.n_bus - 1, 12).astype(int):
        costs = []
        for sign in (-1, 1):
            l2 = load.copy()
            l2[b] += sign * d / net.base_mva
            costs.append(model.solve(l2, *args).cost_h[0])
        left, right = (res.cost_h[0] - costs[0]) / d, (costs[1] - res.cost_h[0]) / d
        tol = 1e-4 * max(1.0, abs(res.lmp[b, 0]))
        if linear:  # piecewise-constant marginal cost: the LMP is one of the one-sided slopes
            assert min(abs(left - res.lmp[b, 0]), abs(right - res.lmp[b, 0])) <= tol, (b, left, right, res.lmp[b])
        else:
            assert (left + right) / 2 == pytest.approx(res.lmp[b, 0], abs=tol), (b, left, right)


# ---------------------------------------------------------------- ramps and rolling windows
def test_ramp_limits_link_hours_and_windows(tmp_path):
    mpc = linear_costs(load_mpc(case_path("case30")))
    mpc["gen"] = np.column_stack([mpc["gen"], np.zeros((len(mpc["gen"]), 21 - mpc["gen"].shape[1]))])
    mpc["gen"][:, 18] = 0.5 * 0.25 * mpc["gen"][:, 8]  # RAMP_30: 25% of Pmax per hour
    case = write_mpc(tmp_path / "ramp.m", mpc)
    T = 12
    scale = 0.65 + 0.35 * (np.arange(T) % 6 >= 3)  # steps that the ramps cannot follow freely
    pq.write_table(pa.table({"hour": np.arange(T), "load_scale": scale}), tmp_path / "p.parquet")
    ramp = 0.25 * mpc["gen"][:, 8]
    loads = mpc["bus"][:, 2][:, None] * scale[None, :]
    cost, pg = direct_lp(mpc, loads, ramp)
    free_cost, _ = direct_lp(mpc, loads)
    assert cost > free_cost + 1.0, "the ramps should cost something"
    c0 = mpc["gencost"][:, 5].sum()
    # one window over all hours: the direct LP's optimum
    assert opf("dc", case, "--profiles", tmp_path / "p.parquet", "--horizon", T, "--ramp", "--run-dir",
               tmp_path / "one", "--quiet") == 0
    got = reduced(tmp_path / "one", "dispatch")["pg_mw"].to_numpy().reshape(T, -1).T
    assert reduced(tmp_path / "one", "hours")["cost_per_h"].to_numpy().sum() == pytest.approx(cost + T * c0, rel=1e-6)
    assert np.abs(got - pg).max() <= 1e-6 * pg.max()
    b = reduced(tmp_path / "one", "binding")
    assert {"ramp_up", "ramp_down"} <= set(b["kind"].to_pylist())
    # rolling: 4-hour windows committing 2 hours; the ramps hold across every window boundary
    assert opf("dc", case, "--profiles", tmp_path / "p.parquet", "--horizon", 4, "--step", 2, "--ramp",
               "--run-dir", tmp_path / "roll", "--quiet") == 0
    roll = reduced(tmp_path / "roll", "dispatch")["pg_mw"].to_numpy().reshape(T, -1).T
    assert np.all(np.abs(np.diff(roll, axis=1)) <= ramp[:, None] + 1e-6)
    h = reduced(tmp_path / "roll", "hours")
    assert h["window_start"].to_pylist() == [0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10]
    # a rolling plan costs at least the perfect-foresight one, and without ramps less
    assert h["cost_per_h"].to_numpy().sum() >= cost + T * c0 - 1e-6
    assert opf("dc", case, "--profiles", tmp_path / "p.parquet", "--horizon", 4, "--step", 2,
               "--run-dir", tmp_path / "free", "--quiet") == 0
    assert reduced(tmp_path / "free", "hours")["cost_per_h"].to_numpy().sum() == \
        pytest.approx(free_cost + T * c0, rel=1e-6)


def test_chunks_and_executors_agree(tmp_path):
    case = case_path("case30")
    h = np.arange(48)
    pq.write_table(pa.table({"hour": h, "load_scale": 0.8 + 0.25 * np.sin(h / 4)}), tmp_path / "p.parquet")
    common = ["dc", case, "--profiles", tmp_path / "p.parquet", "--horizon", 6, "--quiet"]
    assert opf(*common, "--run-dir", tmp_path / "a") == 0
    assert opf(*common, "--chunk-hours", 12, "--executor", "process", "--max-procs", 2,
               "--run-dir", tmp_path / "b") == 0
    for table, col in (("dispatch", "pg_mw"), ("lmp", "lmp_per_mwh"), ("hours", "cost_per_h")):
        a, b = reduced(tmp_path / "a", table), reduced(tmp_path / "b", table)
        assert a.num_rows == b.num_rows
        assert np.allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-8, atol=1e-7)
    s = json.loads((tmp_path / "b" / "reduce" / "summary.json").read_text())
    assert s["hours"] == 48 and s["chunks"] == 4
    # the same chunks in one process, in order: the same bits (a chunk does not depend on
    # which chunks its process solved before)
    assert opf(*common, "--chunk-hours", 12, "--run-dir", tmp_path / "c") == 0
    for table in ("dispatch", "lmp", "flows"):
        assert (tmp_path / "c" / "reduce" / f"{table}.parquet").read_bytes() == \
            (tmp_path / "b" / "reduce" / f"{table}.parquet").read_bytes(), table


# ---------------------------------------------------------------- bad input
def run_cli(*args):
    return subprocess.run([GAT, "opf", *map(str, args)], capture_output=True, text=True)


def test_infeasible_and_bad_costs_are_named(tmp_path, monkeypatch):
    mpc = load_mpc(case_path("case9"))
    # more load than capacity in hour 2: refused before any run directory is made
    pq.write_table(pa.table({"hour": [0, 1, 2], "load_scale": [1.0, 1.2, 3.0]}), tmp_path / "big.parquet")
    r = run_cli("dc", case_path("case9"), "--profiles", tmp_path / "big.parquet", "--run-dir", tmp_path / "r1")
    assert r.returncode == 2 and "hour 2" in r.stderr and "Pmax" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r1").exists()
    # less load than the fleet's total Pmin: refused, unless --relax-pmin lets units go down to 0
    pq.write_table(pa.table({"hour": [0, 1], "load_scale": [0.5, 0.05]}), tmp_path / "low.parquet")
    r = run_cli("dc", case_path("case9"), "--profiles", tmp_path / "low.parquet", "--run-dir", tmp_path / "r0")
    assert r.returncode == 2 and "hour 1" in r.stderr and "below the total Pmin" in r.stderr and "--relax-pmin" in r.stderr
    assert opf("dc", case_path("case9"), "--profiles", tmp_path / "low.parquet", "--relax-pmin",
               "--run-dir", tmp_path / "r0", "--quiet") == 0
    assert reduced(tmp_path / "r0", "hours")["gen_mw"][1].as_py() == pytest.approx(0.05 * 315, rel=1e-9)
    # a branch limit that cannot hold: the 90 MW at bus 5 arrive through branches 2 (4-5) and 3 (5-6) only
    tight = {k: np.array(v, dtype=float) if isinstance(v, np.ndarray) else v for k, v in mpc.items()}
    tight["branch"][[1, 2], 5] = 20.0
    r = run_cli("dc", write_mpc(tmp_path / "tight.m", tight), "--run-dir", tmp_path / "r2")
    assert r.returncode == 4 and "infeasible" in r.stderr and "branch 2" in r.stderr and "branch 3" in r.stderr
    # costs the OPF cannot take
    cubic = dict(tight, branch=mpc["branch"])
    cubic["gencost"] = np.column_stack([mpc["gencost"][:, :3], np.full(3, 4.0), np.full(3, 0.001), mpc["gencost"][:, 4:]])
    r = run_cli("dc", write_mpc(tmp_path / "cubic.m", cubic), "--run-dir", tmp_path / "r3")
    assert r.returncode == 2 and "degree 3" in r.stderr and "gen 1" in r.stderr
    nocost = tmp_path / "nocost.m"
    nocost.write_text(open(case_path("case9")).read().split("%% generator cost data")[0])
    r = run_cli("dc", nocost, "--run-dir", tmp_path / "r4")
    assert r.returncode == 2 and "gencost" in r.stderr
    concave = dict(mpc)
    concave["gencost"] = np.array([[1, 0, 0, 3, 0, 0, 50, 1000, 100, 1500]] * 3, dtype=float)
    r = run_cli("dc", write_mpc(tmp_path / "concave.m", concave), "--run-dir", tmp_path / "r5")
    assert r.returncode == 2 and "not convex" in r.stderr
    # HiGHS stopping early (an iteration limit) is a solver failure with its status, not a result
    real = O.new_highs

    def limited():
        h = real()
        h.setOptionValue("simplex_iteration_limit", 0)
        h.setOptionValue("qp_iteration_limit", 0)
        return h

    monkeypatch.setattr(O, "new_highs", limited)
    net = read_matpower(case_path("case30"))
    model = O.WindowModel(net, O.gen_costs(net), 1)
    with pytest.raises(O.SolverError, match="HiGHS could not solve.*limit"):
        model.solve(net.bus_load().real[:, None], net.pmin[:, None], net.pmax[:, None], net.gen_status[:, None])
    assert O.SolverError.exit_code == 3


def test_highs_errors_give_one_clear_message(tmp_path, monkeypatch, capsys):
    """A genuine HiGHS failure (here: the QP solver may not leave its starting vertex, which
    HiGHS reports as an error) is a SolverError naming the hours and HiGHS's model status; in
    a run it fails the chunk with that message once and a non-zero exit."""
    real = O.new_highs

    def with_option(name, value):
        def make():
            h = real()
            h.setOptionValue(name, value)
            return h
        return make

    case = write_mpc(tmp_path / "case30.m", congested("case30"))
    net = read_matpower(str(case))
    args = [np.repeat(a[:, None], 3, axis=1) for a in (net.bus_load().real, net.pmin, net.pmax, net.gen_status)]
    monkeypatch.setattr(O, "new_highs", with_option("qp_nullspace_limit", 0))
    with pytest.raises(O.SolverError) as err:
        O.WindowModel(net, O.gen_costs(net), 3).solve(*args)
    assert str(err.value) == "HiGHS reported an error while solving the OPF of hours 0..2: model status 'Solve error'"
    assert err.value.exit_code == 3
    # the QP solver stopping at its iteration limit (the starting-point LP is fine)
    monkeypatch.setattr(O, "new_highs", with_option("qp_iteration_limit", 0))
    with pytest.raises(O.SolverError, match=r"^HiGHS could not solve the OPF of hours 0\.\.2: .*[Ll]imit"):
        O.WindowModel(net, O.gen_costs(net), 3).solve(*args)
    # through the command: the chunk fails, stderr names the chunk and HiGHS's message once
    monkeypatch.setattr(O, "new_highs", with_option("qp_nullspace_limit", 0))
    capsys.readouterr()
    assert opf("dc", case, "--horizon", 3, "--run-dir", tmp_path / "run", "--quiet") == 4
    err = capsys.readouterr().err
    assert err.count("HiGHS reported an error") == 1, err
    assert "SolverError: HiGHS reported an error while solving the OPF of hours 0..0: model status 'Solve error'" in err
    assert "Traceback" not in err


def test_default_chunk_is_whole_steps(tmp_path):
    """--horizon 5 without --chunk-hours: the default chunk (about a week) is 165 hours, whole steps."""
    h = np.arange(30)
    pq.write_table(pa.table({"hour": h, "load_scale": 0.9 + 0.1 * np.sin(h / 4)}), tmp_path / "p.parquet")
    assert opf("dc", case_path("case30"), "--profiles", tmp_path / "p.parquet", "--horizon", 5, "--quiet",
               "--run-dir", tmp_path / "r") == 0
    assert json.loads((tmp_path / "r" / "run.json").read_text())["config"]["chunk_hours"] == 165
