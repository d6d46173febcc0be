"""Real jobs on the local Slurm cluster: arrays with a throttle, afterok reduce, failures and
retries, scancel, requeue, USR1 before the time limit, MPI jobs under srun and mpirun (a sweep
with the MPI executor, and the distributed power flow).

The time-limit test submits its job first and checks it last, so its wait (Slurm checks time
limits about every 30 s) overlaps the other tests.
"""

import json
import os
import subprocess
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.slurm.common import (CASE118, VENV, array_done, assert_same_tables, cluster, gat, in_queue,  # noqa: F401
                                log_says, never_runs, reduced, submitted_ids, task_states, tasks, until,
                                write_profile)

PF_TABLES = ("hours", "buses", "flows")
_time_limit = {}


def local_reference(tmp, prof, chunk_size):
    run = tmp / "local"
    r = gat("pf", "ac", CASE118, "--profiles", prof, "--run-dir", run, "--chunk-size", chunk_size, "--quiet")
    assert r.returncode == 0, r.stderr
    return reduced(run, PF_TABLES)


def test_submit_time_limit_job(cluster, tmp_path_factory):
    """A task whose chunk outlasts --time=1 (one minute): USR1 at 60 s before the limit, i.e. at once."""
    run = tmp_path_factory.mktemp("timelimit") / "run"
    r = gat("emit-sbatch", "trivial", "--items", 1, "--seconds-per-item", 300, "--run-dir", run, "--venv", VENV,
            "--time", 1, "--submit")
    assert r.returncode == 0, r.stderr
    _time_limit.update(run=run, ids=submitted_ids(r.stdout), submitted=time.monotonic())


def test_array_with_throttle_then_afterok_reduce_equals_local(cluster, tmp_path):
    prof = write_profile(tmp_path / "p.parquet", 96)
    ref = local_reference(tmp_path, prof, 4)
    run = tmp_path / "slurm run"  # a space in the path, on purpose
    r = gat("emit-sbatch", "pf", "ac", CASE118, "--profiles", prof, "--chunk-size", 4, "--run-dir", run,
            "--array-throttle", 4, "--chunks-per-task", 2, "--venv", VENV, "--time", 10)
    assert r.returncode == 0, r.stderr
    assert "24 chunks in 12 array task(s) of 2 chunk(s), at most 4 at once" in r.stdout
    sub = subprocess.run(["bash", run / "submit.sh"], capture_output=True, text=True, timeout=60)
    assert sub.returncode == 0, sub.stderr
    ids = submitted_ids(sub.stdout)
    aid, rid = ids["array"], ids["reduce"]
    most = 0

    def finished():
        nonlocal most
        lines = in_queue(aid, rid)
        most = max(most, sum(" RUNNING " in line for line in lines if line.startswith(aid + "_")))
        return not lines
    until(finished, 150, "the array and the reduce to leave the queue", poll=0.2)
    assert 1 <= most <= 4, most  # the %4 throttle held
    states = task_states(aid)
    assert states == {i: "COMPLETED" for i in range(12)}, states
    red = tasks(rid)[0]
    assert red["JobState"] == "COMPLETED" and red["Dependency"] in ("(null)", f"afterok:{aid}_*(finished)")
    ends = max(t["EndTime"] for t in tasks(aid))
    assert red["StartTime"] >= ends  # ISO times compare as text
    results = [json.loads((run / "results" / f"{c}.json").read_text()) for c in range(24)]
    assert {r["executor"] for r in results} == {"slurm"} and {r["attempt"] for r in results} == {1}
    assert os.stat(run / "reduce" / "summary.json").st_mtime >= max(r["end"] for r in results)
    assert_same_tables(reduced(run, PF_TABLES), ref)
    for t in range(12):
        assert log_says(run / "logs" / f"{aid}_{t}.out", f"worker: chunk {2 * t + 1}: ok")
    jobs = json.loads((run / "run.json").read_text())["jobs"]
    assert [(j["kind"], j["id"]) for j in jobs] == [("array", aid), ("reduce", rid)]
    d = gat("runs", "describe", "--run-dir", run)
    assert f"slurm: array {aid} tasks all: COMPLETED 12" in d.stdout and f"slurm: reduce {rid}: COMPLETED 1" in d.stdout


def test_failed_task_blocks_reduce_then_retry_after_fix(cluster, tmp_path):
    good = write_profile(tmp_path / "good.parquet", 24)
    ref = local_reference(tmp_path, good, 4)
    prof = write_profile(tmp_path / "p.parquet", 24, bad_hour=13)
    run = tmp_path / "run"
    r = gat("emit-sbatch", "pf", "ac", CASE118, "--profiles", prof, "--chunk-size", 4, "--run-dir", run,
            "--array-throttle", 4, "--venv", VENV, "--submit")
    assert r.returncode == 0, r.stderr
    ids = submitted_ids(r.stdout)
    aid, rid = ids["array"], ids["reduce"]
    until(lambda: array_done(aid) and never_runs(rid), 120, "the array to end and the reduce to be stuck")
    states = task_states(aid)
    assert states == {i: ("FAILED" if i == 3 else "COMPLETED") for i in range(6)}, states
    assert not (run / "reduce").exists()
    d = gat("runs", "describe", "--run-dir", run)
    assert "FAILED chunk 3" in d.stdout and "hour 13: load_scale = nan" in d.stdout
    assert f"slurm: reduce {rid}: PENDING 1 (DependencyNeverSatisfied)" in d.stdout
    # fix the hour: a plain retry refuses the changed input, --accept-changed-inputs takes it
    write_profile(prof, 24)
    r = gat("runs", "retry-failed", "--run-dir", run, "--executor", "slurm")
    assert r.returncode == 2 and "inputs changed since the run started: profile" in r.stderr
    r = gat("runs", "retry-failed", "--run-dir", run, "--executor", "slurm", "--accept-changed-inputs", "--wait",
            timeout=150)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"cancelled reduce job {rid}" in r.stderr and "array tasks 3" in r.stdout
    assert tasks(rid)[0]["JobState"] == "CANCELLED"
    attempts = {c: json.loads((run / "results" / f"{c}.json").read_text())["attempt"] for c in range(6)}
    assert attempts == {c: (2 if c == 3 else 1) for c in range(6)}
    assert_same_tables(reduced(run, PF_TABLES), ref)
    jobs = json.loads((run / "run.json").read_text())["jobs"]
    assert [j["kind"] for j in jobs] == ["array", "reduce", "array", "reduce"] and jobs[2]["tasks"] == "3"


def test_scancel_requeue_and_usr1_of_running_tasks(cluster, tmp_path):
    """Task 1 cancelled, task 2 requeued, task 3 sent USR1 while their chunks run; only 1 and 3 are resubmitted."""
    run = tmp_path / "run"
    r = gat("emit-sbatch", "trivial", "--items", 6, "--seed", 5, "--seconds-per-item", 8, "--run-dir", run,
            "--venv", VENV, "--submit")
    assert r.returncode == 0, r.stderr
    ids = submitted_ids(r.stdout)
    aid, rid = ids["array"], ids["reduce"]
    log = run / "logs"
    r = gat("runs", "resume", "--run-dir", run, "--executor", "slurm")
    assert r.returncode == 2 and f"Slurm job {aid} (array) is still queued or running" in r.stderr

    def running(t):  # the worker said so; a second more and the chunk is inside its computation
        until(lambda: log_says(log / f"{aid}_{t}.out", f"chunk {t}: running"), 60, f"chunk {t} to start")
        time.sleep(1.0)

    running(1)
    subprocess.run(["scancel", f"{aid}_1"], check=True)
    running(2)
    subprocess.run(["scontrol", "requeue", f"{aid}_2"], check=True)
    until(lambda: task_states(aid).get(2) == "PENDING", 30, "task 2 to be requeued")
    # let slurmd finish tearing down the cancelled instance first: releasing the task while its
    # old step is still completing made Slurm mark the relaunch FAILED without running it (seen
    # once in CI: the log had one "running" line and no result)
    time.sleep(3.0)
    subprocess.run(["scontrol", "update", f"JobId={aid}_2", "StartTime=now"], check=True)
    running(3)
    subprocess.run(["scancel", "--signal=USR1", "--batch", f"{aid}_3"], check=True)
    until(lambda: array_done(aid) and never_runs(rid), 90, "the array to end and the reduce to be stuck")
    states = task_states(aid)
    logs = {t: (log / f"{aid}_{t}.out").read_text() for t in range(6) if (log / f"{aid}_{t}.out").exists()}
    assert states == {0: "COMPLETED", 1: "CANCELLED", 2: "COMPLETED", 3: "FAILED", 4: "COMPLETED", 5: "COMPLETED"}, \
        (states, logs)
    assert not (run / "results" / "1.json").exists()  # killed mid-chunk: nothing recorded, nothing half-written
    res3 = json.loads((run / "results" / "3.json").read_text())
    assert res3["status"] == "failed" and res3["error"].startswith("TimeLimitNear: SIGUSR1")
    with open(log / f"{aid}_2.out") as fh:
        assert fh.read().count("chunk 2: running") == 2  # ran again after the requeue (log appended)
    for c in (1, 3):
        part = run / "data" / "items" / f"chunk={c}"
        assert not part.exists() or os.listdir(part) == []
    r = gat("runs", "retry-failed", "--run-dir", run, "--executor", "slurm", "--wait", timeout=150)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 chunk(s) to run again: array tasks 1,3" in r.stdout
    items = pq.read_table(run / "reduce" / "items.parquet")
    assert items["item"].to_pylist() == list(range(6))
    assert items["value"].to_pylist() == [i * i + 5 for i in range(6)]
    attempts = {c: json.loads((run / "results" / f"{c}.json").read_text())["attempt"] for c in range(6)}
    assert attempts == {0: 1, 1: 1, 2: 1, 3: 2, 4: 1, 5: 1}


@pytest.mark.parametrize("launcher", ["srun", "mpirun"])
def test_mpi_job_of_two_ranks_equals_local(cluster, tmp_path, launcher):
    prof = write_profile(tmp_path / "p.parquet", 24)
    ref = local_reference(tmp_path, prof, 3)
    run = tmp_path / "run"
    r = gat("emit-sbatch", "pf", "ac", CASE118, "--profiles", prof, "--chunk-size", 3, "--run-dir", run,
            "--mode", "mpi", "--ntasks", 2, "--launcher", launcher, "--venv", VENV, "--submit")
    assert r.returncode == 0, r.stderr
    jid = submitted_ids(r.stdout)["mpi"]
    until(lambda: not in_queue(jid), 120, "the MPI job to end")
    job = tasks(jid)[0]
    log = (run / "logs" / f"mpi_{jid}.out").read_text()
    assert job["JobState"] == "COMPLETED", log
    assert_same_tables(reduced(run, PF_TABLES), ref)
    ranks = {json.loads((run / "results" / f"{c}.json").read_text())["rank"] for c in range(8)}
    assert ranks == {0, 1}, ranks  # both ranks took chunks


def test_sweep_of_distributed_solves_in_one_mpi_job_equals_serial(cluster, tmp_path):
    # every hour solved by a group of 2 ranks (--ranks-per-solve) inside one Slurm MPI job
    prof = write_profile(tmp_path / "p.parquet", 12)
    ref = local_reference(tmp_path, prof, 3)
    run = tmp_path / "run"
    r = gat("emit-sbatch", "pf", "ac", CASE118, "--profiles", prof, "--chunk-size", 3, "--run-dir", run,
            "--solver", "petsc", "--ranks-per-solve", 2, "--mode", "mpi", "--ntasks", 2, "--venv", VENV, "--submit")
    assert r.returncode == 0, r.stderr
    jid = submitted_ids(r.stdout)["mpi"]
    until(lambda: not in_queue(jid), 120, "the MPI job to end")
    log = (run / "logs" / f"mpi_{jid}.out").read_text()
    assert tasks(jid)[0]["JobState"] == "COMPLETED", log
    got = reduced(run, PF_TABLES)
    assert got["hours"]["iterations"].to_pylist() == ref["hours"]["iterations"].to_pylist()
    for table, cols, atol in (("buses", ("vm_pu", "va_deg"), 1e-8), ("flows", ("p_from_mw", "q_from_mvar"), 1e-6)):
        for c in cols:
            assert np.allclose(got[table][c].to_numpy(), ref[table][c].to_numpy(), rtol=0, atol=atol), (table, c)
    metrics = [json.loads((run / "results" / f"{c}.json").read_text())["metrics"] for c in range(4)]
    assert {m["ranks_per_solve"] for m in metrics} == {2}


@pytest.mark.parametrize("launcher", ["srun", "mpirun"])
def test_distributed_power_flow_on_two_ranks_equals_serial(cluster, tmp_path, launcher):
    serial = tmp_path / "serial"
    r = gat("pf", "ac", CASE118, "--out", serial, "--quiet")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    r = gat("emit-sbatch", "pf", "ac", CASE118, "-snes_monitor", "--solver", "petsc", "--run-dir", run,
            "--ntasks", 2, "--launcher", launcher, "--venv", VENV, "--submit")
    assert r.returncode == 0, r.stderr
    jid = submitted_ids(r.stdout)["mpi"]
    until(lambda: not in_queue(jid), 120, "the MPI job to end")
    log = (run / "logs" / f"mpi_{jid}.out").read_text()
    assert tasks(jid)[0]["JobState"] == "COMPLETED", log
    assert "SNES Function norm" in log and "(petsc, 2 ranks)" in log
    assert json.loads((run / "jobs.json").read_text())[0]["id"] == jid
    for table, cols in (("buses", ("vm_pu", "va_deg")), ("flows", ("p_from_mw", "q_from_mvar"))):
        a, b = pq.read_table(run / "pf" / f"{table}.parquet"), pq.read_table(serial / f"{table}.parquet")
        for c in cols:
            assert np.allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=0, atol=1e-7), (table, c)


def test_hostile_names_reach_slurm_intact(cluster, tmp_path):
    run = tmp_path / "it's a \"run\" $(touch pwned) `touch pwned2`; x"
    name = "gat '\"$(touch pwned3)\" ;#"
    r = gat("emit-sbatch", "trivial", "--items", 1, "--run-dir", run, "--venv", VENV, "--job-name", name,
            "--submit", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ids = submitted_ids(r.stdout)
    until(lambda: not in_queue(ids["array"], ids["reduce"]), 60, "the jobs to end")
    job = tasks(ids["array"])[0]
    assert job["JobState"] == "COMPLETED" and job["JobName"] == name and job["WorkDir"] == str(run)
    assert tasks(ids["reduce"])[0]["JobName"] == name + "-reduce"
    assert (run / "reduce" / "summary.json").exists()
    assert not any(p.name.startswith("pwned") for p in tmp_path.rglob("*")) and not os.path.exists(run / "pwned")


def test_time_limit_usr1_abandons_the_chunk_cleanly(cluster):
    """Checks the job submitted by test_submit_time_limit_job."""
    if not _time_limit:
        pytest.skip("the time-limit job was not submitted")
    run, aid = _time_limit["run"], _time_limit["ids"]["array"]
    until(lambda: array_done(aid), 75, "USR1 before the time limit to end the task")
    t = tasks(aid)[0]
    assert t["JobState"] == "FAILED" and t["ExitCode"] == "4:0", t
    log = (run / "logs" / f"{aid}_0.out").read_text()
    assert "SIGUSR1 (Slurm time limit near): stopped" in log, log
    res = json.loads((run / "results" / "0.json").read_text())
    assert res["status"] == "failed" and res["error"].startswith("TimeLimitNear")
    assert res["end"] - res["start"] < 60  # abandoned at the warning, well before the 300 s chunk would end
    assert not list((run / "data").rglob("*.parquet")) and not list(run.rglob("*.tmp"))
    assert never_runs(_time_limit["ids"]["reduce"])
    subprocess.run(["scancel", _time_limit["ids"]["reduce"]], check=True)


def test_contingency_adequacy_and_opf_arrays_equal_local_runs(cluster, tmp_path):
    """emit-sbatch nminus1 / adequacy / opf: the three arrays run at once; each reduced table equals its local run."""
    prof = write_profile(tmp_path / "p.parquet", 48)
    rel = tmp_path / "for.csv"
    rel.write_text("gen_id,for,mttr_h\n" + "".join(f"{g},{0.02 + 0.01 * (g % 5)},{10 + g}\n" for g in range(1, 55)))
    studies = {
        "nminus1": (["nminus1", "dc", CASE118, "--profiles", prof, "--chunk-hours", 12, "--chunk-contingencies", 60,
                     "--ac-threshold", 90],
                    ("contingencies", "violations", "top_violations")),
        "adequacy": (["adequacy", CASE118, "--reliability", rel, "--profiles", prof, "--method", "sequential",
                      "--samples", 300, "--chunk-samples", 50, "--chunk-hours", 24, "--seed", 3],
                     ("adequacy", "hourly")),
        "opf": (["opf", "dc", CASE118, "--profiles", prof, "--horizon", 12, "--chunk-hours", 12], ("dispatch", "lmp", "flows")),  # hours.parquet holds solve times
    }
    jobs = {}
    for name, (argv, _) in studies.items():
        r = gat(*argv, "--run-dir", tmp_path / f"{name}-local", "--quiet")
        assert r.returncode == 0, (name, r.stderr)
        r = gat("emit-sbatch", *argv, "--run-dir", tmp_path / name, "--venv", VENV, "--time", 10, "--submit")
        assert r.returncode == 0, (name, r.stderr)
        assert "array task(s)" in r.stdout, r.stdout
        jobs[name] = submitted_ids(r.stdout)
    ids = [j for ids_ in jobs.values() for j in ids_.values()]
    until(lambda: not in_queue(*ids), 240, "the three arrays and their reduces to leave the queue")
    for name, (argv, tables) in studies.items():
        run = tmp_path / name
        assert set(task_states(jobs[name]["array"]).values()) == {"COMPLETED"}, name
        assert tasks(jobs[name]["reduce"])[0]["JobState"] == "COMPLETED", name
        local = json.loads((tmp_path / f"{name}-local" / "run.json").read_text())["run_id"]
        assert json.loads((run / "run.json").read_text())["run_id"] == local  # planned exactly as the command plans
        assert_same_tables(reduced(run, tables), reduced(tmp_path / f"{name}-local", tables))
    r = gat("emit-sbatch", *studies["adequacy"][0], "--target-cov", 0.05, "--run-dir", tmp_path / "cov")
    assert r.returncode == 2 and "--target-cov" in r.stderr and not (tmp_path / "cov").exists()
