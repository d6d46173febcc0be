"""PETSc options on the gat-hpc command line: set aside for PETSc, refused without --solver petsc."""

import os
import subprocess
import sys

from gat_hpc.dist.petsc import split_petsc_options

GAT = os.path.join(os.path.dirname(sys.executable), "gat-hpc")


def test_petsc_options_are_split_from_gat_hpc_options():
    argv = ["pf", "ac", "case.m", "--out", "o", "-snes_monitor", "-ksp_type", "gmres", "--tol", "1e-9",
            "-mat_mumps_icntl_7", "5", "-snes_rtol", "-1e-3", "-info", "-pc_type", "lu"]
    petsc, rest = split_petsc_options(argv)
    assert petsc == ["-snes_monitor", "-ksp_type", "gmres", "-mat_mumps_icntl_7", "5", "-snes_rtol", "-1e-3",
                     "-info", "-pc_type", "lu"]
    assert rest == ["pf", "ac", "case.m", "--out", "o", "--tol", "1e-9"]
    assert split_petsc_options(["-h"]) == ([], ["-h"])
    assert split_petsc_options(["--", "-snes_monitor"]) == ([], ["--", "-snes_monitor"])


def test_petsc_options_need_the_petsc_solver(tmp_path):
    r = subprocess.run([GAT, "pf", "ac", "case118.m", "--out", tmp_path / "o", "-snes_monitor"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "PETSc options (-snes_monitor) need --solver petsc" in r.stderr
