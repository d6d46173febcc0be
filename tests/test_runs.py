"""Run directory, executors, resume/retry/reduce: kills, failures, corruption, bad input."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import assert_same_tables, case_path, need

GAT = os.path.join(os.path.dirname(sys.executable), "gat-hpc")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def gat(*args, timeout=300):
    return subprocess.run([GAT, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)


def write_profile(path, hours=48, bad_hour=None):
    h = np.arange(hours)
    scale = 0.85 + 0.2 * np.sin(2 * np.pi * h / 24)
    if bad_hour is not None:
        scale[bad_hour] = np.nan
    pq.write_table(pa.table({"hour": h, "load_scale": scale}), path)
    return path


def reduced(run):
    return {t: pq.read_table(os.path.join(run, "reduce", f"{t}.parquet")) for t in ("hours", "buses", "flows")}


def sweep(case, prof, run, *extra):
    return gat("pf", "ac", case, "--profiles", prof, "--run-dir", run, "--quiet", *extra)


@pytest.fixture(scope="module")
def ref118(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref118")
    prof = write_profile(d / "p.parquet")
    r = sweep(case_path("case118"), prof, d / "run", "--chunk-size", "5")
    assert r.returncode == 0, r.stderr
    return prof, d / "run", reduced(d / "run")


def test_tables_have_one_row_per_hour_and_element(ref118):
    prof, run, t = ref118
    assert t["hours"].num_rows == 48
    assert t["hours"]["converged"].to_numpy(zero_copy_only=False).all()
    assert t["buses"].num_rows == 48 * 118 and t["flows"].num_rows == 48 * 186
    keys = list(zip(t["buses"]["hour"].to_pylist(), t["buses"]["bus_id"].to_pylist()))
    assert keys == sorted(set(keys))  # sorted, no duplicates
    m = json.loads((run / "run.json").read_text())
    assert m["n_chunks"] == 10 and len(m["run_id"]) == 64


def test_each_hour_equals_a_direct_solve(ref118):
    """Hour 7 of the sweep equals a single power flow of the scaled case."""
    from gat_hpc.network.matpower import read_matpower
    from gat_hpc.pf.ac import solve_ac

    prof, run, t = ref118
    scale = pq.read_table(prof)["load_scale"].to_numpy()[7]
    net = read_matpower(case_path("case118"))
    net.load_p *= scale
    net.load_q *= scale
    net.pg *= scale
    res = solve_ac(net, tol=1e-8)
    b = t["buses"].filter(pa.compute.equal(t["buses"]["hour"], 7))
    assert np.max(np.abs(b["vm_pu"].to_numpy() - res.vm)) < 1e-6


def test_executors_give_identical_tables(ref118, tmp_path):
    prof, _, ref = ref118
    r = sweep(case_path("case118"), prof, tmp_path / "local", "--chunk-size", "5", "--executor", "local")
    assert r.returncode == 0, r.stderr
    assert_same_tables(reduced(tmp_path / "local"), ref)
    r = sweep(case_path("case118"), prof, tmp_path / "proc", "--chunk-size", "5", "--executor", "process", "--max-procs", "2")
    assert r.returncode == 0, r.stderr
    assert_same_tables(reduced(tmp_path / "proc"), ref)
    need("mpi", shutil.which("mpirun") is not None, "mpirun not found")
    for n in (2, 3):
        run = tmp_path / f"mpi{n}"
        r = subprocess.run(["mpirun", "-n", str(n), GAT, "pf", "ac", case_path("case118"), "--profiles", prof,
                            "--run-dir", run, "--chunk-size", "5", "--executor", "mpi", "--quiet"],
                           capture_output=True, text=True, timeout=300, env=ENV)
        assert r.returncode == 0, r.stderr
        assert_same_tables(reduced(run), ref)
        ranks = {json.loads((run / "results" / f).read_text())["rank"] for f in os.listdir(run / "results")}
        assert ranks <= set(range(n))


def test_reduce_is_idempotent(ref118):
    _, run, t = ref118
    before = {f: (run / "reduce" / f).read_bytes() for f in os.listdir(run / "reduce")}
    r = gat("reduce", "--run-dir", run, "--quiet")
    assert r.returncode == 0, r.stderr
    after = {f: (run / "reduce" / f).read_bytes() for f in os.listdir(run / "reduce")}
    assert before == after


def test_same_study_twice_reuses_the_run(ref118):
    prof, run, _ = ref118
    stamp = {f: os.stat(run / "results" / f).st_mtime_ns for f in os.listdir(run / "results")}
    r = sweep(case_path("case118"), prof, run, "--chunk-size", "5")
    assert r.returncode == 0
    assert stamp == {f: os.stat(run / "results" / f).st_mtime_ns for f in os.listdir(run / "results")}


def _children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


@pytest.fixture(scope="module")
def ref2000(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref2000")
    prof = write_profile(d / "p.parquet", hours=36)
    r = sweep(case_path("case_ACTIVSg2000"), prof, d / "run", "--chunk-size", "2")
    assert r.returncode == 0, r.stderr
    return prof, reduced(d / "run")


@pytest.mark.parametrize("target", ["worker", "executor"])
def test_sigkill_then_resume_gives_the_uninterrupted_tables(ref2000, tmp_path, target):
    prof, ref = ref2000
    rng = random.Random(7 if target == "worker" else 11)
    for trial in range(2):
        run = tmp_path / f"run{trial}"
        p = subprocess.Popen([GAT, "pf", "ac", case_path("case_ACTIVSg2000"), "--profiles", prof, "--run-dir", run,
                              "--chunk-size", "2", "--executor", "process", "--max-procs", "2", "--quiet"],
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(rng.uniform(0.8, 2.0))
        if target == "worker":
            kids = _children(p.pid)
            if kids:
                os.kill(rng.choice(kids), signal.SIGKILL)
        else:
            os.killpg(p.pid, signal.SIGKILL)
        p.communicate(timeout=120)
        r = gat("runs", "resume", "--run-dir", run, "--executor", "process", "--max-procs", "2", "--quiet")
        assert r.returncode == 0, r.stderr
        assert_same_tables(reduced(run), ref)


def test_half_written_and_stray_files_are_never_taken(ref118, tmp_path):
    prof, run0, ref = ref118
    run = tmp_path / "run"
    shutil.copytree(run0, run)
    shutil.rmtree(run / "reduce")
    # chunk 3 "died while writing": its result is gone and a truncated temp file and a stray part remain
    part = run / "data" / "buses" / "chunk=3" / "part-0.parquet"
    (part.parent / ".part-0.parquet.abc.tmp").write_bytes(part.read_bytes()[:100])
    (part.parent / "part-1.parquet").write_bytes(part.read_bytes())
    os.unlink(run / "results" / "3.json")
    r = gat("reduce", "--run-dir", run)
    assert r.returncode == 2 and "1 of 10 chunks are not done: 3 (missing)" in r.stderr
    r = gat("runs", "resume", "--run-dir", run, "--quiet")
    assert r.returncode == 0, r.stderr
    assert_same_tables(reduced(run), ref)


def test_corrupt_output_reruns_exactly_that_chunk(ref118, tmp_path):
    prof, run0, ref = ref118
    run = tmp_path / "run"
    shutil.copytree(run0, run)
    part = run / "data" / "flows" / "chunk=6" / "part-0.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    r = gat("runs", "describe", "--run-dir", run, "--json")
    assert json.loads(r.stdout)["status"] == {"corrupt": 1, "done": 9}
    r = gat("runs", "resume", "--run-dir", run, "--quiet")
    assert r.returncode == 0, r.stderr
    attempts = {int(f[:-5]): json.loads((run / "results" / f).read_text())["attempt"] for f in os.listdir(run / "results")}
    assert attempts == {c: (2 if c == 6 else 1) for c in range(10)}
    assert_same_tables(reduced(run), ref)


def test_failed_chunk_is_recorded_then_retried_after_a_fix(ref118, tmp_path):
    _, _, ref = ref118
    prof = write_profile(tmp_path / "p.parquet", bad_hour=12)
    run = tmp_path / "run"
    r = sweep(case_path("case118"), prof, run, "--chunk-size", "5")
    assert r.returncode == 4
    assert "1 of 10 chunks failed" in r.stderr and "hour 12: load_scale = nan" in r.stderr
    assert f"gat-hpc runs retry-failed --run-dir {run}" in r.stderr
    info = json.loads(gat("runs", "describe", "--run-dir", run, "--json").stdout)
    assert info["status"] == {"done": 9, "failed": 1}
    assert info["failures"][0]["chunk"] == 2 and "hour 12" in info["failures"][0]["error"]
    assert not (run / "reduce").exists()
    # retrying without a fix fails again, with backoff, up to the attempt limit
    r = gat("runs", "retry-failed", "--run-dir", run, "--max-attempts", "2", "--backoff", "0.1", "--quiet")
    assert r.returncode == 4
    assert json.loads((run / "results" / "2.json").read_text())["attempt"] == 2
    # fix the input: resume refuses the changed input, retry-failed accepts it when told
    write_profile(prof)
    r = gat("runs", "resume", "--run-dir", run)
    assert r.returncode == 2 and "inputs changed since the run started: profile" in r.stderr
    r = gat("runs", "retry-failed", "--run-dir", run, "--max-attempts", "3", "--accept-changed-inputs", "--quiet")
    assert r.returncode == 0, r.stderr
    assert_same_tables(reduced(run), ref)


def test_bad_run_directories(ref118, tmp_path):
    prof, run0, _ = ref118
    r = gat("runs", "describe", "--run-dir", tmp_path / "nope")
    assert r.returncode == 2 and "no such run directory" in r.stderr

    def fresh(name):
        run = tmp_path / name
        shutil.copytree(run0, run)
        return run

    run = fresh("version")
    m = json.loads((run / "run.json").read_text())
    m["gat_hpc_version"] = "0.0.1"
    (run / "run.json").write_text(json.dumps(m))
    r = gat("runs", "resume", "--run-dir", run)
    assert r.returncode == 2 and "made by gat-hpc 0.0.1" in r.stderr

    run = fresh("badspec")
    (run / "chunks" / "4.json").write_text("{not json")
    os.unlink(run / "results" / "4.json")
    r = gat("worker", "--run-dir", run, "--chunk", "4")
    assert r.returncode == 2 and "4.json: malformed JSON" in r.stderr

    outside = tmp_path / "outside"
    outside.mkdir()
    for label, mutate in (
        ("dotdot", lambda d: d.update(copy="../outside/x.m")),
        ("absolute", lambda d: d.update(copy=str(outside / "x.m"))),
    ):
        run = fresh(label)
        m = json.loads((run / "run.json").read_text())
        mutate(m["inputs"]["case"])
        (run / "run.json").write_text(json.dumps(m))
        r = gat("runs", "resume", "--run-dir", run)
        assert r.returncode == 2 and ("outside the run directory" in r.stderr or "absolute path" in r.stderr), r.stderr

    run = fresh("symlink")
    shutil.rmtree(run / "data" / "hours" / "chunk=1")
    os.symlink(outside, run / "data" / "hours" / "chunk=1")
    os.unlink(run / "results" / "1.json")
    r = gat("runs", "resume", "--run-dir", run)
    assert r.returncode != 0 and "resolves outside the run directory" in r.stderr
    assert os.listdir(outside) == []

    res = json.loads((run0 / "results" / "0.json").read_text())
    run = fresh("resultpath")
    res["outputs"][0]["path"] = "../../etc/passwd"
    (run / "results" / "0.json").write_text(json.dumps(res))
    r = gat("runs", "describe", "--run-dir", run, "--json")
    assert json.loads(r.stdout)["status"].get("corrupt") == 1

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    r = sweep(case_path("case118"), prof, blocker / "run")
    assert r.returncode == 2 and "cannot create the run directory" in r.stderr

    r = sweep(case_path("case118"), tmp_path / "missing.parquet", tmp_path / "r2")
    assert r.returncode == 2 and "missing.parquet: no such file" in r.stderr
    assert not (tmp_path / "r2").exists()


def test_other_study_in_the_same_run_dir_is_refused(ref118, tmp_path):
    prof, run0, _ = ref118
    run = tmp_path / "run"
    shutil.copytree(run0, run)
    r = sweep(case_path("case118"), prof, run, "--chunk-size", "7")
    assert r.returncode == 2 and "already holds another run" in r.stderr


def test_worker_uses_slurm_array_task_id(ref118, tmp_path):
    prof, run0, ref = ref118
    run = tmp_path / "run"
    shutil.copytree(run0, run)
    shutil.rmtree(run / "reduce")
    for f in ("4.json", "5.json"):
        os.unlink(run / "results" / f)
    env = dict(ENV, SLURM_ARRAY_TASK_ID="2")
    r = subprocess.run([GAT, "worker", "--run-dir", run, "--chunks-per-task", "2"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "chunk 4: ok" in r.stderr and "chunk 5: ok" in r.stderr
    assert gat("reduce", "--run-dir", run, "--quiet").returncode == 0
    assert_same_tables(reduced(run), ref)


def test_runs_list_finds_runs(ref118):
    _, run0, _ = ref118
    r = gat("runs", "list", run0.parent, "--json")
    assert r.returncode == 0
    rows = json.loads(r.stdout)
    assert any(row["run_dir"] == str(run0) and row["done"] == 10 for row in rows)


def test_key_range_from_statistics_or_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gat_hpc.runs.reduce import _key_range

    t = pa.table({"hour": pa.array([7, 3, None, 12], pa.int64()), "x": [1.0, 2.0, 3.0, 4.0]})
    for stats in (True, False):
        path = tmp_path / f"s{stats}.parquet"
        pq.write_table(t, path, write_statistics=stats, row_group_size=2)
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).is_stats_set is stats
        assert _key_range(path, "hour") == (3, 12)
        nulls = tmp_path / f"n{stats}.parquet"
        pq.write_table(pa.table({"hour": pa.array([None, None], pa.int64())}), nulls, write_statistics=stats)
        assert _key_range(nulls, "hour") is None
    empty = tmp_path / "e.parquet"
    pq.write_table(t.slice(0, 0), empty)
    assert _key_range(empty, "hour") is None
