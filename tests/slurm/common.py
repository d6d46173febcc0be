"""Helpers and the ``cluster`` fixture of the Slurm tests: the local cluster, gat-hpc as a subprocess,
job states, polling. (A plain module, not a conftest.py: other tests import tests/conftest.py as
``conftest``, and a second conftest.py would shadow it.)

The cluster is the one scripts/run-tests.sh starts (scripts/start-slurm.sh) and names in
SLURM_CONF. Tests that need it skip when Slurm is absent, and fail when GAT_HPC_REQUIRE
lists ``slurm``.
"""

import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import assert_same_tables, need  # noqa: F401  (re-exported to the Slurm tests)

VENV = os.path.dirname(os.path.dirname(sys.executable))
GAT = os.path.join(os.path.dirname(sys.executable), "gat-hpc")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASE118 = os.path.join(REPO, "gat_hpc", "data", "case118.m")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("GAT_HPC_SLURM_")}
ENV.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
           H5PY_ALWAYS_USE_MPI="1")


def gat(*args, timeout=300, env=None, cwd=None):
    return subprocess.run([GAT, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env or ENV, cwd=cwd)


def slurm_status():
    """(usable, reason) of the local cluster."""
    if shutil.which("sbatch") is None:
        return False, "sbatch not found (Slurm is not installed)"
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        return False, "SLURM_CONF is not set (start the cluster with scripts/start-slurm.sh; run-tests.sh does)"
    try:
        with open(conf) as fh:
            ours = "ClusterName=gatci" in fh.read().split()
    except OSError as exc:
        return False, f"SLURM_CONF={conf}: {exc.strerror}"
    if not ours:  # never submit test jobs to a real cluster
        return False, f"SLURM_CONF={conf} is not the local test cluster of scripts/start-slurm.sh"
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False, "sinfo did not answer: slurmctld is not running"
    states = r.stdout.split()
    if r.returncode != 0 or not any(s in ("idle", "mix", "alloc") for s in states):
        return False, f"no usable node (sinfo: {r.stdout.strip() or r.stderr.strip()})"
    return True, ""


@pytest.fixture(scope="session")
def cluster():
    ok, reason = slurm_status()
    need("slurm", ok, reason)
    return os.environ.get("SLURM_CONF")


def write_profile(path, hours, bad_hour=None):
    h = np.arange(hours)
    scale = 0.85 + 0.2 * np.sin(2 * np.pi * h / 24)
    if bad_hour is not None:
        scale[bad_hour] = np.nan
    pq.write_table(pa.table({"hour": h, "load_scale": scale}), path)
    return path


def reduced(run, tables):
    return {t: pq.read_table(os.path.join(run, "reduce", f"{t}.parquet")) for t in tables}


_FIELD = re.compile(r"(\w+)=(.*?)(?= \w+=|$)")


def tasks(job_id):
    """`scontrol show job -o`: one dict per array task (or the job), keyed by Slurm's field names."""
    r = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [dict(_FIELD.findall(line.strip())) for line in r.stdout.strip().splitlines()]


def task_states(job_id):
    """{array task id (int) or None: JobState}."""
    out = {}
    for t in tasks(job_id):
        tid = t.get("ArrayTaskId")
        out[int(tid) if tid and tid.isdigit() else tid] = t["JobState"]
    return out


def in_queue(*job_ids):
    """squeue lines (one per task) of the jobs still pending or running."""
    r = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(map(str, job_ids)), "-o", "%i %T %r"],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.split("\n") if r.returncode == 0 and r.stdout.strip() else []


def until(cond, timeout, what, poll=0.25):
    """Poll ``cond`` until it returns something true; fail with ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def array_done(job_id):
    """True once no task of the array is pending or running."""
    return not any(s in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED")
                   for s in task_states(job_id).values())


def never_runs(job_id):
    t = tasks(job_id)[0]
    return t["JobState"] == "PENDING" and t.get("Reason") == "DependencyNeverSatisfied"


def submitted_ids(text):
    """{'array': id, 'reduce': id, ...} from the 'KIND job ID' lines of submit.sh / emit-sbatch --submit."""
    return dict(re.findall(r"^(array|reduce|mpi) job (\d+)$", text, re.M))


def log_says(path, text):
    try:
        with open(path) as fh:
            return text in fh.read()
    except FileNotFoundError:
        return False
