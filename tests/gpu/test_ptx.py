"""Every CUDA source compiles to PTX with nvcc: runs wherever nvcc is (CI included), no GPU needed."""

import glob
import os
import shutil
import subprocess

import pytest

from gat_hpc.cuda.runtime import CUDA_DIR
from tests.conftest import need

SOURCES = sorted(glob.glob(os.path.join(CUDA_DIR, "*.cu")))


def nvcc():
    found = shutil.which("nvcc")
    if found is None and os.path.exists("/usr/local/cuda/bin/nvcc"):
        found = "/usr/local/cuda/bin/nvcc"
    return found


def test_sources_are_found():
    names = {os.path.basename(s) for s in SOURCES}
    assert {"screening.cu", "ptdf.cu", "mismatch.cu", "adequacy.cu"} <= names


@pytest.mark.parametrize("source", SOURCES, ids=os.path.basename)
def test_cuda_source_compiles_to_ptx(source, tmp_path):
    exe = nvcc()
    need("nvcc", exe is not None, "nvcc is not on PATH (nor in /usr/local/cuda/bin)")
    out = tmp_path / "k.ptx"
    # the options SourceModule uses (runtime.module), for the Hopper target the benchmarks use
    r = subprocess.run([exe, "--ptx", "-O3", "-std=c++17", "-arch=sm_90", "-Werror", "all-warnings",
                        "-I", CUDA_DIR, "-o", str(out), source],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert ".entry" in out.read_text()
