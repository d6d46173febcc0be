"""USR1 (Slurm's warning before the time limit) without a cluster: the worker abandons its chunk
cleanly, and the array script passes the signal from the batch shell to the worker."""

import json
import os
import signal
import subprocess
import time

from tests.slurm.common import ENV, GAT, VENV, gat


def slow_run(tmp_path, items=2, seconds=30):
    run = tmp_path / "run"
    r = gat("emit-sbatch", "trivial", "--items", items, "--seconds-per-item", seconds, "--run-dir", run,
            "--venv", VENV, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return run


def wait_for_line(stream, text):
    """Read until ``text``, then give the chunk a second to get into its computation (the sleep)."""
    for line in stream:
        if text in line:
            time.sleep(1.0)
            return line
    raise AssertionError(f"no line with {text!r}")


def assert_abandoned_cleanly(run, cid):
    res = json.loads((run / "results" / f"{cid}.json").read_text())
    assert res["status"] == "failed" and res["error"].startswith("TimeLimitNear: SIGUSR1"), res
    assert not list((run / "data").rglob("*.parquet")) and not list(run.rglob("*.tmp"))


def test_worker_on_usr1_records_the_chunk_failed_and_exits_non_zero(tmp_path):
    run = slow_run(tmp_path)
    p = subprocess.Popen([GAT, "worker", "--run-dir", run, "--chunk", "1"], env=ENV, text=True,
                         stderr=subprocess.PIPE)
    wait_for_line(p.stderr, "chunk 1: running")
    p.send_signal(signal.SIGUSR1)
    rest = p.stderr.read()
    assert p.wait(timeout=30) == 4
    assert "chunk 1: failed" in rest and "SIGUSR1 (Slurm time limit near): stopped" in rest
    assert_abandoned_cleanly(run, 1)
    r = gat("runs", "describe", "--run-dir", run, "--json")
    assert json.loads(r.stdout)["status"] == {"failed": 1, "missing": 1}


def test_array_script_forwards_usr1_to_the_worker(tmp_path):
    run = slow_run(tmp_path, items=4)
    env = dict(ENV, SLURM_ARRAY_TASK_ID="2")
    p = subprocess.Popen(["bash", run / "array.sbatch"], env=env, text=True, stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, cwd=run)
    wait_for_line(p.stderr, "chunk 2: running")
    os.kill(p.pid, signal.SIGUSR1)  # what --signal=B:USR1 does: only the batch shell is signalled
    p.stderr.read()
    assert p.wait(timeout=30) == 4  # the worker's own exit status, not the shell's 138
    assert_abandoned_cleanly(run, 2)


def test_array_script_takes_its_worker_along_on_term(tmp_path):
    """scancel/requeue send TERM: the worker must not outlive the batch shell (and keep its chunk lock)."""
    run = slow_run(tmp_path, items=2)
    p = subprocess.Popen(["bash", run / "array.sbatch"], env=dict(ENV, SLURM_ARRAY_TASK_ID="0"), text=True,
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=run)
    wait_for_line(p.stderr, "chunk 0: running")
    kids = [int(k) for k in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()]
    assert len(kids) == 1
    os.kill(p.pid, signal.SIGTERM)  # the batch shell alone, as if Slurm's signal reached only it
    p.stderr.read()
    assert p.wait(timeout=30) == 128 + signal.SIGTERM
    assert not os.path.exists(f"/proc/{kids[0]}") or "State:\tZ" in open(f"/proc/{kids[0]}/status").read()
    assert not (run / "results" / "0.json").exists()  # killed mid-chunk: missing, nothing half-written
