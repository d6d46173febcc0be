"""`gat-hpc verify`: every hour's mismatch of an hourly AC run, recomputed in one batch."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import case_path

GAT = os.path.join(os.path.dirname(sys.executable), "gat-hpc")


def gat(*args):
    return subprocess.run([GAT, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def hourly_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verify")
    h = np.arange(12)
    prof = tmp / "p.parquet"
    pq.write_table(pa.table({"hour": h + 100, "load_scale": 0.8 + 0.3 * np.sin(h / 3) ** 2}), prof)
    run = tmp / "run"
    r = gat("pf", "ac", case_path("case118"), "--profiles", prof, "--q-limits", "--chunk-size", 5,
            "--run-dir", run, "--quiet")
    assert r.returncode == 0, r.stderr
    return run


def test_solved_hours_verify_and_a_changed_voltage_is_caught(hourly_run, tmp_path):
    r = gat("verify", "--run-dir", hourly_run)
    assert r.returncode == 0, r.stderr
    t = pq.read_table(hourly_run / "verify" / "mismatch.parquet")
    assert t["hour"].to_pylist() == list(range(100, 112))
    # Newton stopped at 1e-8 p.u. = 1e-6 MW on the largest mismatch of its own bus roles
    assert t["max_p_mismatch_mw"].to_numpy().max() < 1e-5 and t["max_q_mismatch_mvar"].to_numpy().max() < 1e-5
    s = json.loads((hourly_run / "verify" / "summary.json").read_text())
    assert s["hours_checked"] == 12 and s["precision"] == "complex128"
    # complex64: within its stated rounding bound
    r = gat("verify", "--run-dir", hourly_run, "--precision", "complex64", "--tol-mw", 1)
    assert r.returncode == 0, r.stderr
    s = json.loads((hourly_run / "verify" / "summary.json").read_text())
    assert max(s["max_p_mismatch_mw"], s["max_q_mismatch_mvar"]) <= s["complex64_bound_mw"]
    # a copy of the run with one angle moved by 0.01 degree at hour 107: exit 3, that hour worst
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(hourly_run, bad)
    buses = pq.read_table(bad / "reduce" / "buses.parquet")
    va = buses["va_deg"].to_numpy().copy()
    i = np.flatnonzero((buses["hour"].to_numpy() == 107) & (buses["bus_id"].to_numpy() == 40))[0]
    va[i] += 0.01
    pq.write_table(buses.set_column(buses.schema.get_field_index("va_deg"), "va_deg", pa.array(va)),
                   bad / "reduce" / "buses.parquet")
    r = gat("verify", "--run-dir", bad)
    assert r.returncode == 3 and "exceeds --tol-mw" in r.stderr
    t = pq.read_table(bad / "verify" / "mismatch.parquet")
    worst = t.slice(int(np.argmax(t["max_p_mismatch_mw"].to_numpy())), 1).to_pylist()[0]
    assert worst["hour"] == 107 and worst["max_p_mismatch_mw"] > 0.1


def test_verify_refuses_what_it_cannot_check(hourly_run, tmp_path):
    from gat_hpc.cuda.runtime import gpu_available

    r = gat("verify", "--run-dir", tmp_path / "none")
    assert r.returncode == 2 and r.stderr.count("\n") == 2
    n1 = tmp_path / "n1"
    assert gat("nminus1", "dc", case_path("case30"), "--run-dir", n1, "--quiet").returncode == 0
    r = gat("verify", "--run-dir", n1)
    assert r.returncode == 2 and "contingency run" in r.stderr
    if not gpu_available()[0]:
        r = gat("verify", "--run-dir", hourly_run, "--device", "gpu")
        assert r.returncode == 2 and "PyCUDA" in r.stderr
