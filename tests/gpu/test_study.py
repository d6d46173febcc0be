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
    case = os.path.join(DATA, "case118.m")
    runs = {}
    for device in ("cpu", "gpu"):
        run = tmp_path / device
        extra = ["--device", "gpu", "--precision", "float64"] if device == "gpu" else []
        r = subprocess.run([sys.executable, "-m", "gat_hpc", "nminus1", "dc", case, "--threshold", "60",
                            "--chunk-contingencies", "40", "--run-dir", str(run), "--quiet", *extra],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        runs[device] = {t: pq.read_table(run / "reduce" / f"{t}.parquet") for t in ("contingencies", "violations")}
    a, b = runs["cpu"]["contingencies"], runs["gpu"]["contingencies"]
    assert a["violation_count"].to_pylist() == b["violation_count"].to_pylist()
    x, y = (t["max_loading_pct"].to_numpy(zero_copy_only=False) for t in (a, b))
    assert np.allclose(x, y, rtol=1e-12, atol=0, equal_nan=True)
    assert runs["cpu"]["violations"].num_rows == runs["gpu"]["violations"].num_rows > 0
