"""`gat-hpc report`: figures and the HTML page of small real runs, checked against the runs' tables."""

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import case_path

GAT = os.path.join(os.path.dirname(sys.executable), "gat-hpc")
PNG = b"\x89PNG\r\n\x1a\n"


def gat(*args):
    """`gat-hpc ...` in process: (exit code)."""
    from gat_hpc.cli.main import main

    return main([str(a) for a in args])


def profile(path, hours=24, mean=0.85, amplitude=0.25):
    h = np.arange(hours)
    pq.write_table(pa.table({"hour": h, "load_scale": mean + amplitude * np.sin(2 * np.pi * h / 24)}), path)
    return path


# ---------------------------------------------------------------- runs (made once per module)
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("report-runs")
    prof = profile(d / "p24.parquet")
    out = {}
    out["n1"] = d / "n1"
    assert gat("nminus1", "dc", case_path("case30"), "--profiles", prof, "--threshold", 80, "--chunk-hours", 6,
               "--chunk-contingencies", 15, "--run-dir", out["n1"], "--quiet") == 0
    out["n1ac"] = d / "n1ac"  # DC screen, AC re-solve of the outages above 95%
    assert gat("nminus1", "dc", case_path("case30"), "--profiles", prof, "--threshold", 80, "--ac-threshold", 95,
               "--chunk-hours", 12, "--run-dir", out["n1ac"], "--quiet") == 0
    out["n118"] = d / "n118"  # case118 has no branch ratings: nothing is monitored
    assert gat("nminus1", "dc", case_path("case118"), "--profiles", prof, "--chunk-hours", 12,
               "--run-dir", out["n118"], "--quiet") == 0
    from tests.test_adequacy import CAP, FOR, LOAD24, write_case, write_profile, write_reliability

    case3 = write_case(d / "three.m", [(1, c) for c in CAP])
    rel = write_reliability(d / "r3.csv", FOR)
    load = write_profile(d / "l24.parquet", LOAD24)
    out["adq"] = d / "adq"
    assert gat("adequacy", case3, "--reliability", rel, "--profiles", load, "--samples", 400, "--seed", 5,
               "--chunk-samples", 50, "--run-dir", out["adq"], "--quiet") == 0
    out["pf"] = d / "pf"
    assert gat("pf", "ac", case_path("case118"), "--profiles", profile(d / "p12.parquet", 12), "--chunk-size", 4,
               "--run-dir", out["pf"], "--quiet") == 0
    from tests.test_opf import congested, write_mpc

    c30 = write_mpc(d / "c30.m", congested("case30"))
    out["opf"] = d / "opf"
    assert gat("opf", "dc", c30, "--profiles", profile(d / "p12b.parquet", 12, 0.9, 0.1), "--horizon", 2,
               "--chunk-hours", 6,
               "--run-dir", out["opf"], "--quiet") == 0
    out["pf1"] = d / "pf1"
    assert gat("pf", "ac", case_path("case30"), "--out", out["pf1"]) == 0
    return out


def reduced(run, table):
    return pq.read_table(os.path.join(run, "reduce", f"{table}.parquet"))


def summary(run):
    return json.loads((run / "reduce" / "summary.json").read_text())


def report(run, **kw):
    from gat_hpc.report import make_report

    return make_report(run, keep_figures=True, **kw)


# ---------------------------------------------------------------- output checks
class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.attrs, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            self.attrs.append((tag, k, v or ""))
            if tag == "img" and k == "src":
                self.imgs.append(v)


def check_output(out, names, html=True):
    """The files exist, PNGs are PNGs that matplotlib reads, and the HTML is self-contained."""
    import matplotlib.image as mpimg

    rj = json.loads((out / "report.json").read_text())
    assert [f["name"] for f in rj["figures"]] == names
    for name in names:
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(PNG), name
        img = mpimg.imread(out / f"{name}.png")
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300, name
    if not html:
        assert not (out / "report.html").exists() and rj["html"] is None
        return rj, None
    text = (out / "report.html").read_text(encoding="utf-8")
    p = _Page()
    p.feed(text)
    p.close()
    assert len(p.imgs) == len(names)
    for src in p.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG)
    for tag, k, v in p.attrs:
        assert not v.lower().startswith(("http:", "https:", "//")), (tag, k, v)
        if k in ("href", "src"):
            assert v.startswith(("#", "data:image/png;base64,")), (tag, k, v[:60])
    assert "script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags
    assert "http://" not in text and "https://" not in text
    return rj, text


def fig(rep, name):
    return next(f for f in rep.figures if f.name == name)


# ---------------------------------------------------------------- contingency
def effective_loading(t):
    """The per-row worst loading the report uses: AC where the AC re-solve converged, else DC."""
    ac_ok = pc.fill_null(t["ac_converged"], False).to_numpy(zero_copy_only=False)
    ac = pc.fill_null(t["ac_max_loading_pct"], np.nan).to_numpy(zero_copy_only=False)
    dc = pc.fill_null(t["max_loading_pct"], np.nan).to_numpy(zero_copy_only=False)
    return np.where(ac_ok, ac, dc)


@pytest.mark.parametrize("which", ["n1", "n1ac"])
def test_contingency_report_matches_the_tables(runs, which):
    run = runs[which]
    rep = report(run)
    rj, text = check_output(run / "report", ["heatmap", "overloaded", "timeline", "throughput"])
    top = reduced(run, "top_violations")
    cont = reduced(run, "contingencies")
    hm = fig(rep, "heatmap").data
    m = hm["matrix"]
    # the heat-map's maximum is the worst violation of the run
    assert top.num_rows > 0
    assert np.nanmax(m) == pytest.approx(top["loading_pct"][0].as_py(), rel=1e-12)
    assert rj["figures"][0]["numbers"]["max_loading_pct"] == pytest.approx(top["loading_pct"][0].as_py(), rel=1e-12)
    i, j = np.unravel_index(np.nanargmax(m), m.shape)
    assert hm["hours"][j] == top["hour"][0].as_py()
    if which == "n1":  # ties (two parallel outages) aside, the worst row is the top violation's outage
        assert hm["contingency_index"][i] in set(top.filter(pc.equal(top["loading_pct"], top["loading_pct"][0]))
                                                 ["contingency_index"].to_pylist())
    # every cell equals its row of contingencies.parquet; rows are the outages with the highest loading
    eff = effective_loading(cont)
    ci, hr = cont["contingency_index"].to_numpy(), cont["hour"].to_numpy()
    for r, c in enumerate(hm["contingency_index"]):
        sel = ci == c
        expect = np.full(len(hm["hours"]), np.nan)
        expect[np.searchsorted(hm["hours"], hr[sel])] = eff[sel]
        assert np.array_equal(m[r], expect, equal_nan=True)
    worst = {c: np.nanmax(eff[ci == c]) for c in np.unique(ci) if np.isfinite(eff[ci == c]).any()}
    shown = [worst[c] for c in hm["contingency_index"]]
    assert shown == sorted(shown, reverse=True)
    assert min(shown) >= max([v for c, v in worst.items() if c not in set(hm["contingency_index"])], default=-1)
    assert list(hm["hours"]) == sorted(set(hr.tolist()))
    # overload counts: the (hour, outage) pairs in violations.parquet per monitored branch (AC rows where verified)
    v = reduced(run, "violations").to_pylist()
    verified = {(r["hour"], r["contingency_index"]) for r in cont.filter(cont["ac_verified"]).to_pylist()}
    count, before = {}, {}
    for r in v:
        if (r["source"] == "ac") == ((r["hour"], r["contingency_index"]) in verified):
            count[r["monitored_branch_id"]] = count.get(r["monitored_branch_id"], 0) + 1
            # runs made with --threshold 80: overloaded before the outage, same hour and model
            before[r["monitored_branch_id"]] = before.get(r["monitored_branch_id"], 0) + (r["base_loading_pct"] > 80)
    ov = fig(rep, "overloaded").data
    assert dict(zip(ov["branch_id"].tolist(), ov["count"].tolist())) == count
    assert dict(zip(ov["branch_id"].tolist(), ov["before"].tolist())) == before
    assert list(ov["count"]) == sorted(ov["count"], reverse=True)
    # the table is the head of top_violations.parquet
    tab = next(t for t in rep.tables if t.name == "top_violations")
    assert [r[0] for r in tab.rows] == top["hour"].to_pylist()[:len(tab.rows)]
    assert [float(r[5]) for r in tab.rows] == pytest.approx(top["loading_pct"].to_numpy()[:len(tab.rows)], abs=0.005)
    assert f"{top['loading_pct'][0].as_py():.2f}" in text
    if which == "n1ac":
        assert cont["ac_verified"].to_numpy(zero_copy_only=False).any()
    # one bar per chunk
    tl = fig(rep, "timeline")
    assert tl.data["bars"] == json.loads((run / "run.json").read_text())["n_chunks"]


def test_contingency_report_without_ratings(runs):
    run = runs["n118"]
    rep = report(run)
    _, text = check_output(run / "report", ["heatmap", "overloaded", "timeline", "throughput"])
    assert reduced(run, "top_violations").num_rows == 0
    assert "no branch has a rateA rating" in fig(rep, "heatmap").caption
    assert fig(rep, "overloaded").data == {} and "No branch exceeds 100%" in text
    assert next(t for t in rep.tables if t.name == "top_violations").rows == []


# ---------------------------------------------------------------- adequacy
def test_adequacy_report_matches_the_summary(runs):
    run = runs["adq"]
    rep = report(run)
    rj, _ = check_output(run / "report", ["convergence", "eue_histogram", "hourly", "timeline", "throughput"])
    s = summary(run)
    conv = fig(rep, "convergence").data
    assert conv["n"][-1] == s["samples"] == 400
    for key, est in (("lole_h_per_yr", conv["lole"]), ("eue_mwh_per_yr", conv["eue"])):
        assert est["mean"][-1] == pytest.approx(s[key]["mean"], rel=1e-12)
        assert est["se"][-1] == pytest.approx(s[key]["se"], rel=1e-9)
        assert [est["lo"][-1], est["hi"][-1]] == pytest.approx(s[key]["ci95"], rel=1e-9)
    assert rj["figures"][0]["numbers"]["lole_mean"] == pytest.approx(s["lole_h_per_yr"]["mean"], rel=1e-12)
    # the running values are those of the first n samples, for any n
    t = reduced(run, "adequacy").sort_by("scenario_id")
    lole = t["lole_h"].to_numpy().astype(float)
    for n in (2, 17, 250):
        assert conv["lole"]["mean"][n - 1] == pytest.approx(lole[:n].mean(), rel=1e-12)
        assert conv["lole"]["se"][n - 1] == pytest.approx(lole[:n].std(ddof=1) / np.sqrt(n), rel=1e-9)
    eue = t["eue_mwh"].to_numpy()
    h = fig(rep, "eue_histogram").data
    assert h["counts"].sum() == np.sum(eue > 0)
    hourly = reduced(run, "hourly").sort_by("hour")
    hd = fig(rep, "hourly").data
    assert np.array_equal(hd["lolp"], hourly["lolp"].to_numpy())
    assert np.sum(hd["lolp"] > 0) == rj["figures"][2]["numbers"]["hours_with_lolp"]


def test_running_estimate_is_exact_and_stable():
    from gat_hpc.report.adequacy import running_estimate

    x = 1e6 + np.random.default_rng(3).exponential(2.0, 5000)  # a large offset: naive sums lose the variance
    est = running_estimate(x)
    for n in (2, 10, 4999, 5000):
        assert est["mean"][n - 1] == pytest.approx(x[:n].mean(), rel=1e-13)
        assert est["se"][n - 1] == pytest.approx(x[:n].std(ddof=1) / np.sqrt(n), rel=1e-7)
    assert np.isnan(est["se"][0])


# ---------------------------------------------------------------- power flow
def test_pf_hourly_report_matches_the_tables(runs):
    run = runs["pf"]
    rep = report(run, fmt="png")
    check_output(run / "report", ["voltage", "angles", "loading", "timeline", "throughput"], html=False)
    b = reduced(run, "buses")
    vm = b["vm_pu"].to_numpy()
    v = fig(rep, "voltage").data
    assert v["counts"].sum() == np.sum(vm > 0)
    hours = reduced(run, "hours")
    assert v["min"] == np.nanmin(hours["min_vm_pu"].to_numpy()) and v["max"] == np.nanmax(hours["max_vm_pu"].to_numpy())
    a = fig(rep, "angles").data
    hr, va = b["hour"].to_numpy(), b["va_deg"].to_numpy()
    for k, h in enumerate(a["hour"]):
        assert a["va_min_deg"][k] == va[hr == h].min() and a["va_max_deg"][k] == va[hr == h].max()
    ld = fig(rep, "loading").data
    f = reduced(run, "flows")
    s = np.fmax(np.hypot(f["p_from_mw"].to_numpy(), f["q_from_mvar"].to_numpy()),
                np.hypot(f["p_to_mw"].to_numpy(), f["q_to_mvar"].to_numpy()))
    assert ld["apparent_power_hist"]["counts"].sum() == s.size and ld["apparent_power_hist"]["max"] == s.max()


def test_pf_folder_report(runs):
    out = runs["pf1"]
    rep = report(out, out=out.parent / "pf1-report")
    check_output(out.parent / "pf1-report", ["voltage", "angles", "loading"])
    flows = pq.read_table(out / "flows.parquet")
    lp = pc.fill_null(flows["loading_pct"], np.nan).to_numpy(zero_copy_only=False)
    d = fig(rep, "loading").data
    assert d["values"] == np.sum(np.isfinite(lp)) and d["max"] == np.nanmax(lp)


# ---------------------------------------------------------------- opf
def test_opf_report_matches_the_tables(runs):
    run = runs["opf"]
    rep = report(run)
    check_output(run / "report", ["cost", "lmp", "binding", "timeline", "throughput"])
    hours = reduced(run, "hours").sort_by("hour")
    assert np.array_equal(fig(rep, "cost").data["cost_per_h"], hours["cost_per_h"].to_numpy())
    lmp = fig(rep, "lmp").data
    assert np.array_equal(lmp["lmp_max"], hours["lmp_max"].to_numpy())
    b = reduced(run, "binding")
    assert b.num_rows > 0
    counts = fig(rep, "binding").data["counts"]
    kinds = b["kind"].to_pylist()
    assert {k: int(v.sum()) for k, v in counts.items()} == {k: kinds.count(k) for k in set(kinds)}
    assert np.array_equal(counts["branch"] > 0, hours["binding_branches"].to_numpy() > 0)


# ---------------------------------------------------------------- every run: 1,000 chunks in under 10 s
def test_thousand_chunk_run_in_under_ten_seconds(tmp_path, capsys):
    from gat_hpc.executors.local import LocalExecutor
    from gat_hpc.runs.reduce import reduce_run
    from gat_hpc.runs.rundir import RunDir
    from gat_hpc.studies.trivial import Trivial

    config, chunks = Trivial.plan(1000, 1)
    rd = RunDir.create(tmp_path / "run", "trivial", config, {}, chunks, command=["test"])
    LocalExecutor().run(rd, rd.chunk_ids())
    reduce_run(rd)
    # a retried chunk and a failed one (as a retry round and a later failure leave them)
    for cid, change in ((5, {"attempt": 2}), (7, {"status": "failed", "attempt": 3, "outputs": [],
                                                    "error": "InputError: bad hour 7\ndetail"})):
        p = rd.result_path(cid)
        d = json.loads(open(p).read())
        d.update(change)
        open(p, "w").write(json.dumps(d))
    t0 = time.perf_counter()
    r = subprocess.run([GAT, "report", "--run-dir", tmp_path / "run"], capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    t0 = time.perf_counter()
    rep = report(tmp_path / "run", out=tmp_path / "again")
    inproc = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\nreport of a 1,000-chunk run: {wall:.2f} s (gat-hpc report, process start included), "
              f"{inproc:.2f} s in process")
    assert wall < 10.0
    check_output(tmp_path / "run" / "report", ["timeline", "throughput"])
    tl = fig(rep, "timeline")
    assert tl.data["bars"] == 1000 == len(tl.data["start_s"])
    assert len(tl.figure.axes[0].collections[0].get_paths()) == 1000
    assert tl.numbers["failed"] == 1 and tl.numbers["retried"] == 1
    fails = next(t for t in rep.tables if t.name == "failures")
    assert [(r[0], r[1], r[2]) for r in fails.rows] == [(5, "ok after retry", 2), (7, "failed", 3)]
    assert fails.rows[1][-1] == "InputError: bad hour 7"
    assert fig(rep, "throughput").data["completed"][-1] == 999


# ---------------------------------------------------------------- bad input, atomic output
def _error_lines(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return [ln for ln in err if ln.startswith("gat-hpc: error:")]


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, runs):
    from gat_hpc.runs.rundir import RunDir
    from gat_hpc.studies.trivial import Trivial

    out = tmp_path / "out"
    assert gat("report", "--run-dir", tmp_path / "nope", "--out", out) == 2
    (line,) = _error_lines(capsys)
    assert "no such run directory" in line
    (tmp_path / "empty").mkdir()
    assert gat("report", "--run-dir", tmp_path / "empty", "--out", out) == 2
    (line,) = _error_lines(capsys)
    assert "not a gat-hpc run directory" in line
    config, chunks = Trivial.plan(3, 1)
    RunDir.create(tmp_path / "unreduced", "trivial", config, {}, chunks)
    assert gat("report", "--run-dir", tmp_path / "unreduced") == 2
    (line,) = _error_lines(capsys)
    assert "not reduced yet" in line and "gat-hpc reduce" in line
    assert not out.exists() and not (tmp_path / "unreduced" / "report").exists()
    assert sorted(os.listdir(tmp_path)) == ["empty", "unreduced"]
    # an --out folder of other files is not replaced
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert gat("report", "--run-dir", runs["adq"], "--out", other) == 2
    (line,) = _error_lines(capsys)
    assert "holds other files" in line and (other / "keep.txt").read_text() == "mine"
    assert gat("report", "--run-dir", runs["adq"], "--out", runs["adq"]) == 2
    assert len(_error_lines(capsys)) == 1


def test_failure_leaves_the_previous_report(tmp_path, runs, monkeypatch):
    import gat_hpc.report.html as H

    out = tmp_path / "rep"
    assert gat("report", "--run-dir", runs["adq"], "--out", out, "--quiet") == 0
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}

    def broken(*a, **k):
        raise RuntimeError("disk full, say")

    monkeypatch.setattr(H, "page", broken)
    with pytest.raises(RuntimeError):
        report(runs["adq"], out=out)
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before
    assert sorted(os.listdir(tmp_path)) == ["rep"]  # no temporary folder left behind
    monkeypatch.undo()
    shutil.rmtree(out)
    with pytest.raises(RuntimeError):
        monkeypatch.setattr(H, "page", broken)
        report(runs["adq"], out=out)
    assert os.listdir(tmp_path) == []


def test_timeline_lanes_follow_ranks_or_pack_array_tasks():
    from gat_hpc.report.common import assign_lanes
    from gat_hpc.report.rundata import Chunks

    def chunks(start, end, host, rank, pid, executor):
        n = len(start)
        obj = lambda v: np.array(v, dtype=object)  # noqa: E731
        return Chunks(np.arange(n), np.array(start, float), np.array(end, float), obj(["ok"] * n), np.ones(n, int),
                      obj(host), np.array(rank), np.array(pid), obj([executor] * n), np.zeros(n, int), obj([""] * n),
                      n, [])

    # MPI: one lane per (host, rank), in rank order
    c = chunks([0, 0, 1, 1], [1, 1, 2, 2], ["a", "a", "a", "a"], [1, 0, 0, 1], [7, 8, 8, 7], "mpi")
    lanes, labels, _ = assign_lanes(c)
    assert labels == ["a rank 0", "a rank 1"] and lanes.tolist() == [1, 0, 0, 1]
    # Slurm array: one process per task; 12 tasks, at most 3 at a time on host a, 1 on host b -> 4 lanes
    start = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 0]
    c = chunks(start, [s + 0.9 for s in start], ["a"] * 11 + ["b"], [-1] * 12, list(range(100, 112)), "slurm")
    lanes, labels, hosts = assign_lanes(c)
    assert labels == ["a slot 1", "a slot 2", "a slot 3", "b slot 1"] and hosts == ["a", "a", "a", "b"]
    for lane in set(lanes.tolist()):  # no two chunks of one lane overlap
        sel = np.flatnonzero(lanes == lane)
        order = sel[np.argsort(c.start[sel])]
        assert np.all(c.start[order][1:] >= c.end[order][:-1])


def test_pf_hourly_report_of_a_rated_case_shows_branch_loadings(tmp_path):
    """case30 (rated): the sweep's flows carry loading_pct; the figure's histogram holds every rated
    branch-hour, and each hour's largest loading_pct is hours.parquet's max_loading_pct."""
    run = tmp_path / "pf30"
    assert gat("pf", "ac", case_path("case30"), "--profiles", profile(tmp_path / "p.parquet", 6), "--chunk-size", 4,
               "--run-dir", run, "--quiet") == 0
    f, hours = reduced(run, "flows"), reduced(run, "hours")
    lp = f["loading_pct"].to_numpy()
    hr = f["hour"].to_numpy()
    for h, mx in zip(hours["hour"].to_numpy(), hours["max_loading_pct"].to_numpy()):
        assert np.nanmax(lp[hr == h]) == pytest.approx(mx, rel=1e-12)
    rep = report(run, fmt="png")
    d = fig(rep, "loading").data["loading_hist"]
    assert d["counts"].sum() == np.sum(np.isfinite(lp)) and d["max"] == np.nanmax(lp)
