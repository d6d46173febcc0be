"""`mpirun -n N gat-hpc pf ac CASE --solver petsc`: outputs, PETSc options, checkpoints, failures.

Every failure must end every rank with a non-zero status and one message from rank 0; the
tests run each rank through a shell that records its own exit status, so mpirun's own
status (the first failing rank) is not all they see.
"""

import json
import os
import sys

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import case_path
from tests.test_dist_pf import mpirun

GAT = os.path.join(os.path.dirname(sys.executable), "gat-hpc")


def per_rank(n, tmp_path, *args):
    """Run `gat-hpc ARGS` on n ranks; returns (completed process, exit status of each rank)."""
    codes = tmp_path / "codes"
    codes.mkdir(exist_ok=True)
    quoted = " ".join("'" + str(a).replace("'", "'\\''") + "'" for a in (GAT, *args))
    script = f'{quoted}; echo $? > "{codes}/rank.$OMPI_COMM_WORLD_RANK"'
    r = mpirun(n, "sh", "-c", script)
    status = [int((codes / f"rank.{k}").read_text()) for k in range(n)]
    return r, status


def tables(folder):
    return {name: pq.read_table(folder / f"{name}.parquet") for name in ("buses", "flows", "generators")}


def test_outputs_equal_serial_pf_ac(tmp_path):
    dist, serial = tmp_path / "dist", tmp_path / "serial"
    r = mpirun(2, GAT, "pf", "ac", case_path("case118"), "--q-limits", "--solver", "petsc", "--out", dist)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("converged in") == 1  # rank 0 alone reports
    r = mpirun(1, GAT, "pf", "ac", case_path("case118"), "--q-limits", "--out", serial, "--quiet")
    assert r.returncode == 0, r.stderr
    a, b = tables(dist), tables(serial)
    for name in a:
        assert a[name].schema == b[name].schema
        for col in a[name].column_names:
            x, y = a[name][col].to_numpy(zero_copy_only=False), b[name][col].to_numpy(zero_copy_only=False)
            if x.dtype.kind == "f":
                assert np.allclose(x, y, rtol=0, atol=1e-6, equal_nan=True), (name, col)
            else:
                assert np.array_equal(x, y), (name, col)
    s, t = json.loads((dist / "summary.json").read_text()), json.loads((serial / "summary.json").read_text())
    assert set(t) <= set(s)
    assert s["iterations"] == t["iterations"] and s["q_limit_rounds"] == t["q_limit_rounds"]
    assert s["ranks"] == 2 and s["solver"] == "petsc" and s["linear_solver"] == "schur-klu"
    for phase in ("read", "partition", "assemble", "factor", "solve"):
        assert s["timings_s"][phase] >= 0


def test_petsc_options_reach_petsc(tmp_path):
    r = mpirun(2, GAT, "pf", "ac", case_path("case118"), "--solver", "petsc", "--out", tmp_path / "o",
               "-snes_monitor", "-pc_type", "lu", "-ksp_type", "preonly")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("SNES Function norm") == 4  # iterations 0..3, printed once (rank 0)
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["linear_solver"] == "lu/mumps" and s["iterations"] == 3
    assert s["petsc_options"] == ["-snes_monitor", "-pc_type", "lu", "-ksp_type", "preonly"]


def test_checkpoint_then_restart_on_other_rank_count(tmp_path):
    case = case_path("case2869pegase")
    ckpt = tmp_path / "state.h5"
    r, status = per_rank(2, tmp_path, "pf", "ac", case, "--q-limits", "--solver", "petsc", "--out", tmp_path / "a",
                         "--max-iter", "3", "--checkpoint", ckpt, "--checkpoint-every", "2")
    assert status == [3, 3], r.stderr
    assert "did not converge in 3 iterations" in r.stderr
    with h5py.File(ckpt, "r") as fh:
        assert fh.attrs["iteration"] == 2 and fh.attrs["ranks"] == 2
    r = mpirun(3, GAT, "pf", "ac", case, "--q-limits", "--solver", "petsc", "--out", tmp_path / "b",
               "--restart", ckpt)
    assert r.returncode == 0, r.stderr
    r = mpirun(1, GAT, "pf", "ac", case, "--q-limits", "--out", tmp_path / "c", "--quiet")
    assert r.returncode == 0, r.stderr
    s, t = json.loads((tmp_path / "b" / "summary.json").read_text()), json.loads((tmp_path / "c" / "summary.json").read_text())
    assert s["iterations"] == t["iterations"] and s["restart"] == str(ckpt)
    vb, vc = tables(tmp_path / "b")["buses"], tables(tmp_path / "c")["buses"]
    assert np.max(np.abs(vb["vm_pu"].to_numpy() - vc["vm_pu"].to_numpy())) < 1e-8
    assert np.max(np.abs(np.deg2rad(vb["va_deg"].to_numpy() - vc["va_deg"].to_numpy()))) < 1e-8


def _checkpoint(tmp_path, case="case118"):
    ckpt = tmp_path / f"{case}.h5"
    r = mpirun(2, GAT, "pf", "ac", case_path(case), "--solver", "petsc", "--out", tmp_path / "o",
               "--checkpoint", ckpt, "--checkpoint-every", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    return ckpt


def test_corrupt_checkpoints_are_refused(tmp_path):
    ckpt = _checkpoint(tmp_path)
    args = ("pf", "ac", case_path("case118"), "--solver", "petsc", "--out", tmp_path / "r", "--restart")
    damaged = tmp_path / "damaged.h5"
    with h5py.File(ckpt, "r") as src, h5py.File(damaged, "w") as dst:
        for key, val in src.attrs.items():
            dst.attrs[key] = val
        for name in src:
            dst[name] = src[name][...]
        dst["vm_pu"][5] += 1e-3
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(ckpt.read_bytes()[:2000])
    other = _checkpoint(tmp_path, "case14")
    for path, words in ((damaged, "is damaged"), (truncated, "not a readable HDF5 file"),
                        (other, "written for another network"), (tmp_path / "missing.h5", "does not exist")):
        r, status = per_rank(2, tmp_path, *args, path)
        assert status == [2, 2], (path, r.stderr)
        assert r.stderr.count("gat-hpc: error:") == 1 and words in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


def test_nonconvergence_reported_once_every_rank_fails(tmp_path):
    r, status = per_rank(3, tmp_path, "pf", "ac", case_path("case_ACTIVSg10k"), "--solver", "petsc",
                         "--out", tmp_path / "o", "--max-iter", "2", "--init", "flat")
    assert status == [3, 3, 3], r.stderr
    assert r.stderr.count("gat-hpc: error:") == 1
    assert "did not converge in 2 iterations: max mismatch" in r.stderr and "MW/MVAr" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("package, words", [("mkl_pardiso", "built without mkl_pardiso"),
                                            ("superlu_dist", "aborts in MPI_Finalize"),
                                            ("klu", "factors on one rank only")])
def test_unusable_factor_package_named(tmp_path, package, words):
    from petsc4py import PETSc

    if package == "superlu_dist" and not PETSc.Sys.hasExternalPackage("superlu_dist"):
        pytest.skip("this PETSc has no superlu_dist")
    r, status = per_rank(2, tmp_path, "pf", "ac", case_path("case118"), "--solver", "petsc", "--out", tmp_path / "o",
                         "-pc_type", "lu", "-pc_factor_mat_solver_type", package)
    assert status == [2, 2], r.stderr
    assert r.stderr.count("gat-hpc: error:") == 1 and words in r.stderr, r.stderr


def test_bad_input_every_rank_exits_2(tmp_path):
    r, status = per_rank(2, tmp_path, "pf", "ac", tmp_path / "nope.m", "--solver", "petsc", "--out", tmp_path / "o")
    assert status == [2, 2] and r.stderr.count("gat-hpc: error:") == 1 and "nope.m" in r.stderr, r.stderr
    r, status = per_rank(2, tmp_path, "pf", "ac", case_path("case118"), "--solver", "petsc", "--out", tmp_path / "o",
                         "-mat_partitioning_type", "metis_like")
    assert status == [2, 2] and "-mat_partitioning_type metis_like" in r.stderr, r.stderr


def test_hourly_sweep_with_ranks_per_solve_equals_the_serial_sweep(tmp_path):
    """`mpirun -n 4 ... --executor mpi --solver petsc --ranks-per-solve 2`: two groups of two ranks,
    each chunk's hours solved by the distributed solver on its group; the same voltages and
    iterations as the serial sweep (hours warm-start from the previous hour in both)."""
    import pyarrow as pa

    h = np.arange(8)
    prof = tmp_path / "p.parquet"
    pq.write_table(pa.table({"hour": h, "load_scale": 0.85 + 0.25 * np.sin(h / 2) ** 2}), prof)
    common = ["pf", "ac", case_path("case118"), "--profiles", prof, "--chunk-size", 2, "--q-limits", "--quiet"]
    r = mpirun(1, GAT, *common, "--run-dir", tmp_path / "serial")
    assert r.returncode == 0, r.stderr
    r, status = per_rank(4, tmp_path, *common, "--run-dir", tmp_path / "dist", "--executor", "mpi",
                         "--solver", "petsc", "--ranks-per-solve", 2)
    assert status == [0, 0, 0, 0], r.stderr
    results = [json.loads((tmp_path / "dist" / "results" / f"{c}.json").read_text()) for c in range(4)]
    assert {res["metrics"]["ranks_per_solve"] for res in results} == {2}
    assert {res["rank"] for res in results} <= {0, 2}  # the groups' first ranks write
    a = {t: pq.read_table(tmp_path / "dist" / "reduce" / f"{t}.parquet") for t in ("hours", "buses")}
    b = {t: pq.read_table(tmp_path / "serial" / "reduce" / f"{t}.parquet") for t in ("hours", "buses")}
    assert a["hours"]["iterations"].to_pylist() == b["hours"]["iterations"].to_pylist()
    assert all(a["hours"]["converged"].to_pylist())
    for col in ("vm_pu", "va_deg"):
        assert np.max(np.abs(a["buses"][col].to_numpy() - b["buses"][col].to_numpy())) < 1e-8
    # refusals: R > 1 without the MPI executor, --ranks-per-solve without --solver petsc
    r = mpirun(1, GAT, *common, "--run-dir", tmp_path / "x", "--solver", "petsc", "--ranks-per-solve", 2)
    assert r.returncode == 2 and "--executor mpi" in r.stderr
    r = mpirun(1, GAT, *common, "--run-dir", tmp_path / "y", "--ranks-per-solve", 2)
    assert r.returncode == 2 and "--solver petsc" in r.stderr
    r = mpirun(1, GAT, *common, "--run-dir", tmp_path / "z", "--solver", "petsc", "--partition-file", tmp_path / "q")
    assert r.returncode == 2 and "--partition-file belong to one distributed power flow" in r.stderr


def test_partition_file_written_then_used(tmp_path):
    from gat_hpc.dist.partition import edge_cut, save_partition
    from gat_hpc.network.matpower import read_matpower
    from gat_hpc.pf.topology import bus_types

    case, stored = case_path("case118"), tmp_path / "p118.parquet"
    common = ("pf", "ac", case, "--solver", "petsc", "--q-limits", "--partition-file", stored)
    r = mpirun(2, GAT, *common, "--out", tmp_path / "a")
    assert r.returncode == 0, r.stderr
    first = json.loads((tmp_path / "a" / "summary.json").read_text())
    meta = pq.read_schema(stored).metadata
    assert first["partition"] == "ptscotch" and int(meta[b"edge_cut"]) == first["edge_cut"] and meta[b"ranks"] == b"2"
    written = stored.read_bytes()
    r = mpirun(2, GAT, *common, "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    second = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert second["partition"] == "stored" and second["edge_cut"] == first["edge_cut"]
    assert second["interface_unknowns"] == first["interface_unknowns"]
    assert stored.read_bytes() == written  # read, not rewritten
    for name, t in tables(tmp_path / "a").items():
        assert t.equals(tables(tmp_path / "b")[name]), name

    # a partition made here (case-file order cut in two) is the one the solve uses
    net = read_matpower(case)
    live = np.setdiff1d(np.arange(net.n_bus), bus_types(net).dead)
    part = np.full(net.n_bus, -1)
    part[live] = np.arange(len(live)) * 2 // len(live)
    mine = tmp_path / "halves.parquet"
    save_partition(mine, net, live, part, "natural")
    r = mpirun(2, GAT, "pf", "ac", case, "--solver", "petsc", "--q-limits", "--partition-file", mine, "--out", tmp_path / "c")
    assert r.returncode == 0, r.stderr
    third = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert third["edge_cut"] == edge_cut(net, part) != first["edge_cut"]
    assert third["iterations"] == first["iterations"]
    vm = [tables(tmp_path / k)["buses"]["vm_pu"].to_numpy() for k in ("a", "c")]
    assert np.max(np.abs(vm[0] - vm[1])) < 1e-9

    # refused: another rank count, another network, not a partition; every rank exits 2
    other = tmp_path / "p14.parquet"
    assert mpirun(2, GAT, "pf", "ac", case_path("case14"), "--solver", "petsc", "--partition-file", other,
                  "--out", tmp_path / "d").returncode == 0
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    blocked = tmp_path / "file" / "p.parquet"  # a folder that cannot be made: a file of that name exists
    (tmp_path / "file").write_text("")
    for n, path, words in ((3, stored, "made for 2 ranks, this run has 3"), (2, other, "made for another network"),
                           (2, junk, "cannot read it as a partition"), (2, blocked, "cannot write it")):
        r, status = per_rank(n, tmp_path, "pf", "ac", case, "--solver", "petsc", "--partition-file", path,
                             "--out", tmp_path / "e")
        assert status == [2] * n, (path, r.stderr)
        assert r.stderr.count("gat-hpc: error:") == 1 and words in r.stderr, r.stderr
    assert stored.read_bytes() == written and not (tmp_path / "e").exists()
