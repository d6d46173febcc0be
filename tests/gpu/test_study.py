"""`nminus1 dc --device gpu`: the study's GPU path with the CUDA kernel against the CPU screen."""

import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from gat_hpc.cuda import runtime
from tests.conftest import need
from tests.gpu.cases import DATA, assert_device_chunk_matches, contingency_chunk

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def needs_gpu():
    ok, why = runtime.gpu_available()
    need("gpu", ok, why)


@pytest.mark.parametrize("precision,atol", [("float64", 1e-10), ("float32", 2e-4)])
def test_chunk_on_the_gpu_equals_the_cpu_screen(tmp_path, precision, atol):
    case = os.path.join(DATA, "case118.m")
    ref = contingency_chunk(tmp_path, case, 24, "cpu", rate_from_flow=1.3)
    got = contingency_chunk(tmp_path, case, 24, "gpu", precision, rate_from_flow=1.3)
    assert_device_chunk_matches(ref, got, atol)
    assert got[2]["device"] == "gpu"


def test_cli_device_gpu_run_equals_cpu_run(tmp_path):
    """The whole command: both runs' violation rows and loadings agree (float64 on the GPU)."""
    from gat_hpc.network.matpower import read_matpower, write_matpower
    from gat_hpc.pf.dc import solve_dc

    net = read_matpower(os.path.join(DATA, "case118.m"))  # unrated: rate it from its DC flows
    net.rate_a_mva = np.round(1.3 * np.abs(solve_dc(net).p_from_mw) + 5.0, 1)
    case = str(tmp_path / "case118_rated.m")
    write_matpower(net, case)
    runs = {}
    for device in ("cpu", "gpu"):
        run = tmp_path / device
        extra = ["--device", "gpu", "--precision", "float64"] if device == "gpu" else []
        r = subprocess.run([sys.executable, "-m", "gat_hpc", "nminus1", "dc", case, "--threshold", "100",
                            "--chunk-contingencies", "40", "--run-dir", str(run), "--quiet", *extra],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        runs[device] = {t: pq.read_table(run / "reduce" / f"{t}.parquet") for t in ("contingencies", "violations")}
    a, b = runs["cpu"]["contingencies"], runs["gpu"]["contingencies"]
    assert a["violation_count"].to_pylist() == b["violation_count"].to_pylist()
    x, y = (t["max_loading_pct"].to_numpy(zero_copy_only=False) for t in (a, b))
    assert np.allclose(x, y, rtol=1e-12, atol=0, equal_nan=True)
    assert runs["cpu"]["violations"].num_rows == runs["gpu"]["violations"].num_rows > 0


def test_adequacy_on_the_gpu_equals_the_philox_twin(tmp_path):
    """`adequacy --device gpu` and `--rng philox` on the CPU: the same tables, bit for bit, with
    chunks cut across samples and hours."""
    import pyarrow as pa

    from gat_hpc.network.matpower import read_matpower

    net = read_matpower(os.path.join(DATA, "case118.m"))
    q = np.random.default_rng(4).uniform(0.04, 0.12, net.n_gen)
    rel = tmp_path / "r.csv"
    rel.write_text("gen_id,for\n" + "".join(f"{g + 1},{q[g]}\n" for g in range(net.n_gen)))
    cap = (net.pmax * net.base_mva)[net.gen_status].sum()
    prof = tmp_path / "p.parquet"
    h = np.arange(500)
    pq.write_table(pa.table({"hour": h, "load_mw": 0.8 * cap * (0.8 + 0.2 * np.sin(h / 5))}), prof)
    tables = {}
    for name, extra in (("gpu", ["--device", "gpu"]), ("cpu", ["--rng", "philox"])):
        run = tmp_path / name
        r = subprocess.run([sys.executable, "-m", "gat_hpc", "adequacy", os.path.join(DATA, "case118.m"),
                            "--reliability", str(rel), "--profiles", str(prof), "--samples", "400", "--seed", "5",
                            "--chunk-samples", "150", "--chunk-hours", "200", "--run-dir", str(run), "--quiet", *extra],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        tables[name] = [pq.read_table(run / "reduce" / f"{t}.parquet") for t in ("adequacy", "hourly")]
    assert tables["gpu"][0].equals(tables["cpu"][0]) and tables["gpu"][1].equals(tables["cpu"][1])
    assert sum(tables["gpu"][0]["lole_h"].to_pylist()) > 0


def test_verify_on_the_gpu_equals_the_cpu(tmp_path):
    """`verify --device gpu` (CSR mismatch kernel) against scipy on a 24-hour case118 run."""
    import pyarrow as pa

    h = np.arange(24)
    prof = tmp_path / "p.parquet"
    pq.write_table(pa.table({"hour": h, "load_scale": 0.8 + 0.3 * np.sin(h / 4) ** 2}), prof)
    run = tmp_path / "run"
    gat = [sys.executable, "-m", "gat_hpc"]
    r = subprocess.run([*gat, "pf", "ac", os.path.join(DATA, "case118.m"), "--profiles", str(prof),
                        "--run-dir", str(run), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = {}
    for device, precision in (("cpu", "complex128"), ("gpu", "complex128"), ("gpu", "complex64")):
        r = subprocess.run([*gat, "verify", "--run-dir", str(run), "--device", device, "--precision", precision,
                            "--tol-mw", "1"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        out[device, precision] = pq.read_table(run / "verify" / "mismatch.parquet")
    a, b, c = out["cpu", "complex128"], out["gpu", "complex128"], out["gpu", "complex64"]
    for col in ("max_p_mismatch_mw", "max_q_mismatch_mvar"):
        assert np.max(np.abs(a[col].to_numpy() - b[col].to_numpy())) < 1e-9
        assert a[col].to_numpy().max() < 1e-5 and c[col].to_numpy().max() < 1.0


def test_device_gpu_under_the_process_executor(tmp_path):
    """`--device gpu --executor process`: the workers, forked after the command checked for a GPU,
    can still use CUDA (the check runs in a child), each on its slot's GPU; same tables as one process."""
    from gat_hpc.network.matpower import read_matpower, write_matpower
    from gat_hpc.pf.dc import solve_dc

    net = read_matpower(os.path.join(DATA, "case118.m"))
    net.rate_a_mva = np.round(1.3 * np.abs(solve_dc(net).p_from_mw) + 5.0, 1)
    case = str(tmp_path / "case118_rated.m")
    write_matpower(net, case)
    runs = {}
    for name, extra in (("one", []), ("pool", ["--executor", "process", "--max-procs", "2"])):
        r = subprocess.run([sys.executable, "-m", "gat_hpc", "nminus1", "dc", case, "--device", "gpu", "--precision",
                            "float64", "--chunk-contingencies", "40", "--run-dir", str(tmp_path / name), "--quiet",
                            *extra], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        runs[name] = pq.read_table(tmp_path / name / "reduce" / "violations.parquet")
    assert runs["one"].equals(runs["pool"]) and runs["one"].num_rows > 0
