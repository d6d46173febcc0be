"""Monte-Carlo adequacy against exact indices (enumeration of unit states, COPT convolution),
reproducibility across chunkings and executors, sequential sampling, DC load shedding against
a direct LP, and bad input."""

import argparse
import itertools
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
from gat_hpc.runs.spec import ChunkSpec
from gat_hpc.studies import adequacy as A
from gat_hpc.studies.copt import exact_indices
from tests.conftest import case_path

GAT = os.path.join(os.path.dirname(sys.executable), "gat-hpc")

CAP = np.array([100.0, 80.0, 50.0])
FOR = np.array([0.10, 0.20, 0.05])
LOAD24 = np.array([120, 110, 100, 95, 95, 100, 120, 140, 150, 160, 165, 170,
                   175, 180, 178, 172, 168, 175, 180, 175, 160, 150, 140, 130], dtype=float)


def adequacy(*args):
    """`gat-hpc adequacy ...` in process; returns the exit code."""
    from gat_hpc.cli import adequacy as cli

    p = argparse.ArgumentParser()
    cli.add_parser(p.add_subparsers())
    a = p.parse_args(["adequacy", *map(str, args)])
    try:
        return a.func(a)
    except GatError as exc:
        return exc.exit_code


def write_case(path, gens_mw, branches=None, n_bus=1, loads=None):
    """A MATPOWER case: buses 1..n_bus, generators (bus, pmax MW), branches (f, t, x, rateA)."""
    loads = loads if loads is not None else {1: 100.0}
    bus = "\n".join(f"{b} {3 if b == 1 else 1} {loads.get(b, 0.0)} 0 0 0 1 1 0 100 1 1.1 0.9;" for b in range(1, n_bus + 1))
    gen = "\n".join(f"{b} 0 0 100 -100 1 100 1 {p} 0;" for b, p in gens_mw)
    br = "\n".join(f"{f} {t} 0 {x} 0 {r} {r} {r} 0 0 1 -360 360;" for f, t, x, r in (branches or []))
    path.write_text(f"function mpc = c\nmpc.version = '2';\nmpc.baseMVA = 100;\nmpc.bus = [\n{bus}\n];\n"
                    f"mpc.gen = [\n{gen}\n];\nmpc.branch = [\n{br}\n];\n")
    return path


def write_reliability(path, fors, mttr=None, branches=None):
    rows = ["gen_id,branch_id,for,mttr_h"]
    for g, q in enumerate(fors):
        rows.append(f"{g + 1},,{q},{'' if mttr is None else mttr[g]}")
    for b, q, m in branches or []:
        rows.append(f",{b},{q},{m}")
    path.write_text("\n".join(rows) + "\n")
    return path


def write_profile(path, load_mw):
    pq.write_table(pa.table({"hour": np.arange(len(load_mw)), "load_mw": np.asarray(load_mw, float)}), path)
    return path


@pytest.fixture
def three_units(tmp_path):
    case = write_case(tmp_path / "c3.m", [(1, c) for c in CAP])
    rel = write_reliability(tmp_path / "r3.csv", FOR, mttr=[10.0, 25.0, 5.0])
    prof = write_profile(tmp_path / "p24.parquet", LOAD24)
    return case, rel, prof


def enumerate_exact(cap, q, load):
    """LOLE, EUE, LOLP by enumerating every up/down combination (available < load loses load)."""
    lole = eue = 0.0
    for state in itertools.product((0, 1), repeat=len(cap)):
        down = np.array(state, bool)
        p = np.prod(np.where(down, q, 1 - q))
        avail = cap[~down].sum()
        lole += p * np.sum(avail < load)
        eue += p * np.sum(np.maximum(load - avail, 0))
    return lole, eue, lole / len(load)


def study_samples(case, rel, prof, method, samples, seed, network="copperplate", hours=None, s0=0):
    """Per-sample (lole, eue) straight from the study's chunk code, one chunk of all hours."""
    net = read_matpower(str(case))
    config = {"method": method, "network": network, "seed": seed, "hours": hours, "samples": samples}
    ctx = A.Adequacy.prepare(net, A.read_reliability(str(rel), net), A.open_profile(str(prof), net), config)
    spec = ChunkSpec(run_id="x", chunk_id=0, study="adequacy",
                     ranges={"samples": [s0, s0 + samples], "hours": [0, len(ctx["rows"])]})
    tables, _ = A.Adequacy().run_chunk(ctx, spec)
    t = tables["sample_parts"]
    return t["lole_h"].to_numpy().astype(float), t["unserved_kwh"].to_numpy() / 1000.0, ctx


# ---------------------------------------------------------------- exact values
def test_copt_equals_enumeration():
    lole, eue, lolp = enumerate_exact(CAP, FOR, LOAD24)
    got = exact_indices(CAP / A.QUANTUM_MW, FOR, 0.0, LOAD24 / A.QUANTUM_MW, A.QUANTUM_MW)
    assert got == pytest.approx((lole, eue, lolp), rel=1e-12)
    # ten units of mixed sizes, ties included (available == load is served)
    rng = np.random.default_rng(5)
    cap = rng.choice([20.0, 35.0, 50.0, 75.5, 100.0], 10)
    q = rng.uniform(0.01, 0.3, 10)
    # loads in whole kW (the study counts in 1 kW quanta)
    load = np.round(np.r_[cap.sum() - cap[:3].sum(), rng.uniform(0.4, 1.0, 23) * cap.sum()], 3)
    exp = enumerate_exact(cap, q, load)
    got = exact_indices(np.rint(cap / A.QUANTUM_MW), q, 0.0, np.rint(load / A.QUANTUM_MW), A.QUANTUM_MW)
    assert got == pytest.approx(exp, rel=1e-10)


def test_analytic_run_gives_the_exact_indices(tmp_path, three_units):
    case, rel, prof = three_units
    assert adequacy(case, "--reliability", rel, "--profiles", prof, "--method", "analytic", "--chunk-hours", "7",
                    "--run-dir", tmp_path / "an", "--quiet") == 0
    s = json.loads((tmp_path / "an" / "reduce" / "summary.json").read_text())
    lole, eue, lolp = enumerate_exact(CAP, FOR, LOAD24)
    assert s["lole_h_per_yr"]["mean"] == pytest.approx(lole, rel=1e-12)
    assert s["eue_mwh_per_yr"]["mean"] == pytest.approx(eue, rel=1e-12)
    assert s["lolp"]["mean"] == pytest.approx(lolp, rel=1e-12)
    hourly = pq.read_table(tmp_path / "an" / "reduce" / "hourly.parquet")
    assert hourly.num_rows == 24 and hourly["lolp"].to_numpy().sum() == pytest.approx(lole, rel=1e-12)


@pytest.mark.parametrize("method", ["nonsequential", "sequential"])
def test_estimates_cover_the_exact_values(three_units, method):
    """The 95% intervals hold the exact values at the nominal rate; they shrink as 1/sqrt(N).

    "At least 19 of 20 seeds" is what a calibrated 95% interval shows only 74% of the time
    (binomial), so the rate is measured over 100 independent blocks of samples: at least 88
    hits. A calibrated interval falls below that with probability 0.15% (1.3% at the 93.5%
    that the normal interval reaches for these skewed per-sample totals); an interval that
    is too narrow by a factor 1.5 (true coverage 80%) passes with probability 0.2%.
    """
    case, rel, prof = three_units
    lole_x, eue_x, _ = enumerate_exact(CAP, FOR, LOAD24)
    n, seeds = 500, 100
    hits = {"lole": 0, "eue": 0}
    # sample blocks of 500 from one long run: block i holds the samples 500 i .. 500 i + 499 of seed 1
    lole_all, eue_all, _ = study_samples(case, rel, prof, method, n * seeds, 1)
    for i in range(seeds):
        part = slice(i * n, (i + 1) * n)
        for name, x, exact in (("lole", lole_all[part], lole_x), ("eue", eue_all[part], eue_x)):
            e = A.estimate(x)
            hits[name] += e["ci95"][0] <= exact <= e["ci95"][1]
    assert hits["lole"] >= 88 and hits["eue"] >= 88, hits
    # all 50,000 samples together: within 3 standard errors of the exact values
    for x, exact in ((lole_all, lole_x), (eue_all, eue_x)):
        e = A.estimate(x)
        assert abs(e["mean"] - exact) < 3 * e["se"], (e, exact)
    # the standard error of 4N samples is half that of N
    ratio = A.estimate(lole_all[:2000])["se"] / A.estimate(lole_all[2000:10000])["se"]
    assert 1.8 < ratio < 2.2, ratio


@pytest.mark.parametrize("method", ["nonsequential", "sequential"])
def test_twenty_seeds(three_units, method):
    """The issue's own check, as stated: 20 seeds of 500 samples, at least 19 intervals hold the exact value.

    Seeds are fixed, so the outcome is deterministic; the 100-block test above is the one
    with a meaningful error rate, this one keeps the stated acceptance check in the suite.
    """
    case, rel, prof = three_units
    lole_x, eue_x, _ = enumerate_exact(CAP, FOR, LOAD24)
    hits = {"lole": 0, "eue": 0}
    for seed in range(1, 21):
        lole, eue, _ = study_samples(case, rel, prof, method, 500, seed)
        for name, x, exact in (("lole", lole, lole_x), ("eue", eue, eue_x)):
            lo, hi = A.estimate(x)["ci95"]
            hits[name] += lo <= exact <= hi
    assert hits["lole"] >= 19 and hits["eue"] >= 19, hits


def test_fleet_against_copt_on_case118(tmp_path):
    """A 54-unit fleet: Monte-Carlo (both samplers) agrees with the exact COPT indices."""
    net = read_matpower(case_path("case118"))
    rng = np.random.default_rng(3)
    q = rng.uniform(0.04, 0.12, net.n_gen)
    rel = write_reliability(tmp_path / "r.csv", q, mttr=rng.uniform(10, 60, net.n_gen))
    cap = (net.pmax * net.base_mva).sum()
    prof = write_profile(tmp_path / "p.parquet", 0.8 * cap * (0.8 + 0.2 * np.sin(np.arange(48) / 4)))
    case = case_path("case118")
    exact_lole, exact_eue, _ = exact_indices(net.pmax * net.base_mva / A.QUANTUM_MW, q, 0.0,
                                             np.rint(pq.read_table(prof)["load_mw"].to_numpy() / A.QUANTUM_MW),
                                             A.QUANTUM_MW)
    assert exact_lole > 0.1
    for method in ("nonsequential", "sequential"):
        lole, eue, _ = study_samples(case, rel, prof, method, 3000, 11)
        for x, exact in ((lole, exact_lole), (eue, exact_eue)):
            e = A.estimate(x)
            assert abs(e["mean"] - exact) < 3.3 * e["se"], (method, e, exact)


# ---------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("method", ["nonsequential", "sequential"])
def test_chunking_and_executors_do_not_change_samples(tmp_path, three_units, method):
    case, rel, prof = three_units
    base = [case, "--reliability", rel, "--profiles", prof, "--method", method, "--samples", 60, "--seed", 4, "--quiet"]
    assert adequacy(*base, "--run-dir", tmp_path / "a") == 0
    assert adequacy(*base, "--chunk-samples", 7, "--chunk-hours", 5, "--run-dir", tmp_path / "b") == 0
    assert adequacy(*base, "--chunk-samples", 13, "--chunk-hours", 11, "--executor", "process", "--max-procs", 2,
                    "--run-dir", tmp_path / "c") == 0
    ref = pq.read_table(tmp_path / "a" / "reduce" / "adequacy.parquet")
    assert ref.num_rows == 60 and ref["scenario_id"].to_pylist() == list(range(60))
    for x in "bc":
        t = pq.read_table(tmp_path / x / "reduce" / "adequacy.parquet")
        assert t.equals(ref), x
    # one sample alone, from its spawn key, gives the same row
    lole, eue, _ = study_samples(case, rel, prof, method, 1, 4, s0=37)
    row = ref.slice(37, 1).to_pylist()[0]
    assert (lole[0], eue[0]) == (row["lole_h"], row["eue_mwh"])


def test_nonsequential_words_are_read_by_position():
    thr = np.floor(np.array([0.3, 0.5, 0.1, 0.7, 0.2]) * 2.0 ** 32).astype(np.uint32)
    full = A.nonsequential_outages(9, 5, thr, 0, 100)
    parts = np.concatenate([A.nonsequential_outages(9, 5, thr, a, b) for a, b in ((0, 13), (13, 14), (14, 100))])
    assert np.array_equal(full, parts)
    assert not np.array_equal(full, A.nonsequential_outages(9, 6, thr, 0, 100))


def test_sequential_unavailability_matches_for():
    q = np.array([0.02, 0.08, 0.15, 0.3])
    mttr = np.array([50.0, 10.0, 100.0, 3.0])
    horizon, n = 2000, 200
    frac = np.array([A.sequential_outages(2, s, q, mttr, horizon, 0, horizon).mean(axis=0) for s in range(n)])
    mean, se = frac.mean(axis=0), frac.std(axis=0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(mean - q) < 1.96 * se + 1e-12), (mean, q, se)
    # the first hour is drawn from the stationary distribution, not all up
    first = np.array([A.sequential_outages(3, s, q, mttr, horizon, 0, 1)[0] for s in range(4000)])
    assert np.all(np.abs(first.mean(axis=0) - q) < 3 * np.sqrt(q * (1 - q) / 4000))
    # mean down time is the MTTR: count completed outages on a long timeline
    st = A.sequential_outages(4, 0, q[1:2], mttr[1:2], 200_000, 0, 200_000)[:, 0]
    starts = np.count_nonzero(st[1:] & ~st[:-1])
    assert st.sum() / starts == pytest.approx(mttr[1] + 0.5, rel=0.08)  # + half an hour: hourly snapshots
    # a chunk of hours reads the same timeline
    whole = A.sequential_outages(7, 3, q, mttr, 500, 0, 500)
    assert np.array_equal(whole[123:301], A.sequential_outages(7, 3, q, mttr, 500, 123, 301))


def test_target_cov_stops_early_and_keeps_sample_prefix(tmp_path, three_units):
    case, rel, prof = three_units
    common = [case, "--reliability", rel, "--profiles", prof, "--seed", 8, "--chunk-samples", 50, "--quiet"]
    target = [*common, "--samples", 5000, "--target-cov", 0.03, "--batch-samples", 100, "--run-dir", tmp_path / "t"]
    assert adequacy(*target) == 0
    s = json.loads((tmp_path / "t" / "reduce" / "summary.json").read_text())
    m = json.loads((tmp_path / "t" / "run.json").read_text())
    n = s["samples"]
    assert s["target_reached"] and s["cov"] <= 0.03 and n < 5000 and n % 100 == 0
    assert len(m["batches"]) == n // 100 - 1 >= 1 and m["n_chunks"] == n // 50
    # the batch before the last one was not precise enough
    assert m["batches"][-1]["eue_cov_before"] > 0.03
    # the stopped run is the first samples of a run without the target
    assert adequacy(*common, "--samples", n, "--run-dir", tmp_path / "full") == 0
    a = pq.read_table(tmp_path / "t" / "reduce" / "adequacy.parquet")
    b = pq.read_table(tmp_path / "full" / "reduce" / "adequacy.parquet")
    assert a.equals(b)
    # running the command again continues the same run: nothing new to do
    assert adequacy(*target) == 0
    assert json.loads((tmp_path / "t" / "run.json").read_text())["n_chunks"] == m["n_chunks"]


# ---------------------------------------------------------------- dc network
def direct_shed_lp(net, pmax_mw, load_mw, branch_on):
    """Minimum load shedding (MW) written out directly: variables Pg, shed, theta; scipy's linprog."""
    from scipy.optimize import linprog

    nb, ng = net.n_bus, net.n_gen
    on = np.flatnonzero(net.branch_status & branch_on)
    nv = ng + nb + nb
    a_eq = np.zeros((nb + 1, nv))
    b_eq = np.zeros(nb + 1)
    for g in range(ng):
        a_eq[net.gen_bus[g], g] += 1
    for b in range(nb):
        a_eq[b, ng + b] = 1  # shed
    a_ub, b_ub = [], []
    for k in on:
        f, t, bk = net.f_bus[k], net.t_bus[k], 1 / (net.x[k] * (net.tap[k] or 1.0))
        row = np.zeros(nv)
        row[ng + nb + f], row[ng + nb + t] = bk, -bk  # flow f->t in p.u.
        # the flow leaves f and enters t
        a_eq[f, ng + nb:] -= row[ng + nb:]
        a_eq[t, ng + nb:] += row[ng + nb:]
        if net.rate_a_mva[k] > 0:
            a_ub += [row, -row]
            b_ub += [net.rate_a_mva[k] / 100, net.rate_a_mva[k] / 100]
    b_eq[:nb] = load_mw / 100
    a_eq[nb, ng + nb] = 1  # reference angle
    cost = np.r_[np.zeros(ng), np.ones(nb), np.zeros(nb)]
    bounds = [(0, p / 100) for p in pmax_mw] + [(0, max(l, 0) / 100) for l in load_mw] + [(None, None)] * nb
    r = linprog(cost, A_ub=np.array(a_ub) if a_ub else None, b_ub=b_ub or None, A_eq=a_eq, b_eq=b_eq,
                bounds=bounds, method="highs")
    assert r.status == 0
    return r.fun * 100


def test_dc_shedding_equals_direct_lp_with_branch_outages(tmp_path):
    # a ring of four buses with the load at bus 3, tight limits, generator and branch outages
    case = write_case(tmp_path / "ring.m", [(1, 120.0), (2, 90.0), (4, 60.0)],
                      branches=[(1, 2, 0.1, 80), (2, 3, 0.1, 70), (3, 4, 0.2, 60), (4, 1, 0.1, 90), (1, 3, 0.3, 40)],
                      n_bus=4, loads={3: 150.0, 2: 20.0})
    rel = write_reliability(tmp_path / "r.csv", [0.1, 0.15, 0.1], branches=[(1, 0.1, 10), (2, 0.1, 10), (5, 0.2, 10)])
    load_total = 170 * (0.7 + 0.3 * np.sin(np.arange(24) / 3) ** 2)
    prof = write_profile(tmp_path / "p.parquet", load_total)
    lole, eue, ctx = study_samples(case, rel, prof, "nonsequential", 12, 5, network="dc")
    net, fleet = ctx["net"], ctx["fleet"]
    loads = ctx["loads_mw"]
    pmax = net.pmax * 100
    want_lole, want_eue = np.zeros(12), np.zeros(12)
    for s in range(12):
        down = A.nonsequential_outages(5, s, fleet.thr, 0, 24)
        for t in range(24):
            p = pmax.copy()
            p[fleet.gen[down[t, :fleet.n_gen]]] = 0
            br = np.ones(net.n_branch, bool)
            br[fleet.branch[down[t, fleet.n_gen:]]] = False
            shed_kw = np.rint(direct_shed_lp(net, p, loads[t], br) * 1000)  # the study counts whole kW
            want_lole[s] += shed_kw > 0
            want_eue[s] += shed_kw / 1000
    assert np.array_equal(lole, want_lole)
    assert eue == pytest.approx(want_eue, abs=1e-9)
    assert want_lole.sum() > 0 and ctx["lp"].solves < 12 * 24  # some hours skipped the LP


def test_dc_without_limits_equals_copperplate(tmp_path):
    net = read_matpower(case_path("case30"))
    q = np.full(net.n_gen, 0.15)
    rel = write_reliability(tmp_path / "r.csv", q)
    cap = (net.pmax * net.base_mva).sum()
    prof = write_profile(tmp_path / "p.parquet", 0.62 * cap * (0.85 + 0.15 * np.sin(np.arange(24) / 4)))
    text = open(case_path("case30")).read()
    # the same case with every rateA set to 0 (unlimited)
    lines, out, in_branch = text.splitlines(), [], False
    for line in lines:
        if line.startswith("mpc.branch"):
            in_branch = True
        elif in_branch and line.strip().startswith("];"):
            in_branch = False
        elif in_branch and line.strip():
            cols = line.split()
            cols[5] = "0"
            line = "\t" + "\t".join(cols)
        out.append(line)
    free = tmp_path / "case30_free.m"
    free.write_text("\n".join(out) + "\n")
    cp_lole, cp_eue, _ = study_samples(free, rel, prof, "nonsequential", 40, 2)
    dc_lole, dc_eue, ctx = study_samples(free, rel, prof, "nonsequential", 40, 2, network="dc")
    assert cp_lole.sum() > 0
    # copperplate rounds load and capacity to kW, dc the shed: a kWh apart per hour at most
    assert np.array_equal(cp_lole, dc_lole) and dc_eue == pytest.approx(cp_eue, abs=24e-3)
    # with the case's limits the network can only add shedding
    lim_lole, lim_eue, _ = study_samples(case_path("case30"), rel, prof, "nonsequential", 40, 2, network="dc")
    assert np.all(lim_eue >= cp_eue - 1e-6) and np.all(lim_lole >= cp_lole)


def test_dc_run_writes_the_design_schema(tmp_path):
    net = read_matpower(case_path("case9"))
    rel = write_reliability(tmp_path / "r.csv", [0.1, 0.1, 0.1])
    prof = write_profile(tmp_path / "p.parquet", np.full(6, 300.0))
    assert adequacy(case_path("case9"), "--reliability", rel, "--profiles", prof, "--network", "dc", "--samples", 8,
                    "--chunk-samples", 3, "--run-dir", tmp_path / "d", "--quiet") == 0
    t = pq.read_table(tmp_path / "d" / "reduce" / "adequacy.parquet")
    assert t.column_names[:8] == ["scenario_id", "lole_h", "eue_mwh", "lolp", "thermal_violations",
                                  "max_flow_utilization", "constrained_hours", "weight"]
    assert np.all(t["max_flow_utilization"].to_numpy() <= 1 + 1e-6)
    s = json.loads((tmp_path / "d" / "reduce" / "summary.json").read_text())
    for key in ("lole_h_per_yr", "eue_mwh_per_yr", "lolp"):
        assert set(s[key]) == {"mean", "se", "ci95", "cov"}
    assert s["samples"] == 8 and s["hours"] == 6 and net.n_gen == 3


# ---------------------------------------------------------------- bad input
def run_cli(*args):
    return subprocess.run([GAT, "adequacy", *map(str, args)], capture_output=True, text=True)


def test_bad_input(tmp_path, three_units):
    case, rel, prof = three_units
    bad_for = tmp_path / "bad_for.csv"
    bad_for.write_text("gen_id,for\n1,0.1\n2,1.5\n")
    r = run_cli(case, "--reliability", bad_for, "--profiles", prof, "--run-dir", tmp_path / "r1")
    assert r.returncode == 2 and "gen 2" in r.stderr and "outside [0, 1]" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r1").exists()
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("gen_id,for\n1,0.1\n7,0.2\n")
    r = run_cli(case, "--reliability", unknown, "--profiles", prof, "--run-dir", tmp_path / "r2")
    assert r.returncode == 2 and "gen_id 7 is not in the case" in r.stderr
    gap = tmp_path / "gap.csv"
    gap.write_text("hour,load_mw\n0,100\n1,120\n3,110\n")
    r = run_cli(case, "--reliability", rel, "--profiles", gap, "--run-dir", tmp_path / "r3")
    assert r.returncode == 2 and "jump from 1 to 3" in r.stderr
    no_mttr = write_reliability(tmp_path / "nomttr.csv", FOR)
    r = run_cli(case, "--reliability", no_mttr, "--profiles", prof, "--method", "sequential", "--run-dir", tmp_path / "r4")
    assert r.returncode == 2 and "gen 1" in r.stderr and "mttr_h" in r.stderr
    r = run_cli(case, "--reliability", rel, "--profiles", prof, "--method", "analytic", "--network", "dc",
                "--run-dir", tmp_path / "r5")
    assert r.returncode == 2 and "copperplate" in r.stderr
    neg = tmp_path / "neg.csv"
    neg.write_text("gen_id,for,mttr_h\n1,0.1,-3\n")
    r = run_cli(case, "--reliability", neg, "--profiles", prof, "--run-dir", tmp_path / "r6")
    assert r.returncode == 2 and "mttr_h" in r.stderr


# ---------------------------------------------------------------- philox states (the GPU's)
def philox_run(tmp_path, name, *extra):
    net = read_matpower(case_path("case118"))
    rng = np.random.default_rng(12)
    q = rng.uniform(0.04, 0.12, net.n_gen)
    q[5] = 0.0  # a unit that never fails
    rel = write_reliability(tmp_path / "r.csv", q)
    cap = (net.pmax * net.base_mva)[net.gen_status].sum()
    load = 0.8 * cap * (0.8 + 0.2 * np.sin(np.arange(72) / 5))
    prof = write_profile(tmp_path / "p.parquet", load)
    run = tmp_path / name
    assert adequacy(case_path("case118"), "--reliability", rel, "--profiles", prof, "--seed", 21, "--rng", "philox",
                    "--run-dir", run, "--quiet", *extra) == 0
    return net, q, load, run


def test_philox_states_equal_the_capacity_check_and_any_chunking(tmp_path):
    """--rng philox (the GPU path's states, here drawn by the kernel's numpy twin): the per-sample and
    hourly tables equal one direct capacity_check of every sample and hour, whatever the chunking."""
    from gat_hpc.cuda.adequacy import capacity_check_numpy

    net, q, load, run = philox_run(tmp_path, "a", "--samples", 300, "--chunk-samples", 70, "--chunk-hours", 30)
    *_, run_b = philox_run(tmp_path, "b", "--samples", 300, "--executor", "process", "--max-procs", 2)
    on = net.gen_status & (net.pmax > 0)
    res = capacity_check_numpy(np.where(on, net.pmax * net.base_mva, 0.0), q,
                               np.rint(load / A.QUANTUM_MW) * A.QUANTUM_MW, 300, 21, quantum_mw=A.QUANTUM_MW)
    t = pq.read_table(run / "reduce" / "adequacy.parquet")
    assert t["lole_h"].to_pylist() == res.lole_h.tolist() and res.lole_h.sum() > 50
    assert np.array_equal(t["eue_mwh"].to_numpy(), np.rint(res.eue_mwh / A.QUANTUM_MW) / 1000.0)
    hourly = pq.read_table(run / "reduce" / "hourly.parquet")
    assert np.allclose(hourly["lolp"].to_numpy(), res.hour_lol / 300, rtol=0, atol=1e-15)
    for name in ("adequacy", "hourly"):
        assert pq.read_table(run_b / "reduce" / f"{name}.parquet").equals(pq.read_table(run / "reduce" / f"{name}.parquet"))
    s = json.loads((run / "reduce" / "summary.json").read_text())
    assert s["lole_h_per_yr"]["mean"] == pytest.approx(res.lole_h.mean(), rel=1e-12)


def test_philox_estimates_agree_with_copt(tmp_path):
    net, q, load, run = philox_run(tmp_path, "a", "--samples", 2000)
    on = net.gen_status & (net.pmax > 0)
    lole_x, eue_x, _ = exact_indices(np.rint((net.pmax * net.base_mva)[on] / A.QUANTUM_MW), q[on], 0.0,
                                     np.rint(load / A.QUANTUM_MW), A.QUANTUM_MW)
    s = json.loads((run / "reduce" / "summary.json").read_text())
    for key, exact in (("lole_h_per_yr", lole_x), ("eue_mwh_per_yr", eue_x)):
        assert abs(s[key]["mean"] - exact) < 3.3 * s[key]["se"], (key, s[key], exact)


def test_device_and_rng_refusals(tmp_path, three_units):
    from gat_hpc.cuda.runtime import gpu_available

    case, rel, prof = three_units
    base = [case, "--reliability", rel, "--profiles", prof, "--quiet"]
    assert adequacy(*base, "--rng", "philox", "--method", "sequential", "--run-dir", tmp_path / "a") == 2
    assert adequacy(*base, "--device", "gpu", "--rng", "pcg64", "--run-dir", tmp_path / "b") == 2
    if not gpu_available()[0]:
        assert adequacy(*base, "--device", "gpu", "--run-dir", tmp_path / "c") == 2
    assert not any((tmp_path / x).exists() for x in "abc")
