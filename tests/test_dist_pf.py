"""Distributed AC power flow under ``mpirun -n 1``, ``-n 2`` and ``-n 3`` against the serial solver.

Each test launches this file under mpirun: every rank solves case118, case2869pegase and
case_ACTIVSg10k (Q limits enforced) with ``solve_ac_dist``; rank 0 solves them again with the
serial ``solve_ac`` and writes the differences to a JSON file that the test checks:
voltages equal to 1e-8 p.u., the same Newton iterations and Q-limit rounds, the same
generators at their limits.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = (("case118", "case"), ("case2869pegase", "case"), ("case_ACTIVSg10k", "case"))


def mpi_env():
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_mpi_yield_when_idle="1",
               H5PY_ALWAYS_USE_MPI="1", PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def mpirun(n, *cmd, timeout=240):
    from tests.conftest import need

    need("mpi", shutil.which("mpirun") is not None, "mpirun not found")
    return subprocess.run(["mpirun", "-n", str(n), *map(str, cmd)], capture_output=True, text=True,
                          timeout=timeout, env=mpi_env(), cwd=ROOT)


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_voltages_and_iterations_equal_serial(ranks, tmp_path):
    out = tmp_path / "result.json"
    r = mpirun(ranks, sys.executable, __file__, out)
    assert r.returncode == 0, r.stdout + r.stderr
    found = json.loads(out.read_text())
    assert found["ranks"] == ranks
    for name, _ in CASES:
        c = found[name]
        assert c["converged"] and c["serial_converged"], c
        assert c["max_dv_pu"] < 1e-8, (name, c)
        assert c["iterations"] == c["serial_iterations"], (name, c)
        assert c["q_rounds"] == c["serial_q_rounds"] and c["same_q_limited"], (name, c)
        assert c["max_dpg_pu"] < 1e-7 and c["max_dqg_pu"] < 1e-7 and c["max_dsf_pu"] < 1e-7, (name, c)
        if ranks > 1:
            assert c["edge_cut"] > 0 and c["interface_unknowns"] > 0 and c["linear_solver"] == "schur-klu"


def test_singular_jacobian_stops_every_rank_cleanly(tmp_path):
    r = mpirun(2, sys.executable, __file__, tmp_path / "rank", "singular")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SEGV" not in r.stderr and "PETSC ERROR" not in r.stderr, r.stderr
    for k in range(2):
        assert "singular" in (tmp_path / f"rank.{k}").read_text()


def _singular(out):
    """Run under mpirun: KLU reports a singular Jacobian on rank 0 only; every rank must raise
    ConvergenceError and the processes must exit cleanly (no PETSc object left to the exit)."""
    from gat_hpc.dist.petsc import init_petsc

    PETSc = init_petsc([])
    import gat_hpc.dist.schur as schur
    from gat_hpc.dist.snes import solve_ac_dist
    from gat_hpc.errors import ConvergenceError
    from gat_hpc.network.matpower import read_matpower
    from tests.conftest import case_path

    comm = PETSc.COMM_WORLD
    if comm.getRank() == 0:
        def singular(self, data):
            raise ConvergenceError("the Newton Jacobian is singular (KLU status 1)")
        schur.OrderedKLU.factor = singular
        schur._klu.KLU.factor = singular
    try:
        solve_ac_dist(read_matpower(case_path("case118")), comm)
        found = "no error"
    except ConvergenceError as exc:
        found = str(exc)
    with open(f"{out}.{comm.getRank()}", "w") as fh:
        fh.write(found)


def _worker(out):
    """Run under mpirun: solve every case distributed and (rank 0) serially; write the differences."""
    from gat_hpc.dist.petsc import init_petsc

    PETSc = init_petsc([])
    from gat_hpc.dist.command import read_network
    from gat_hpc.dist.snes import solve_ac_dist
    from gat_hpc.pf.ac import solve_ac
    from tests.conftest import case_path

    comm = PETSc.COMM_WORLD
    mpi = comm.tompi4py()
    found = {"ranks": comm.getSize()}
    for name, init in CASES:
        net = read_network(case_path(name), mpi)
        res, info = solve_ac_dist(net, comm, init=init, q_limits=True)
        if mpi.Get_rank() == 0:
            ref = solve_ac(net, init=init, q_limits=True)
            found[name] = dict(
                converged=res.converged, serial_converged=ref.converged,
                max_dv_pu=float(np.max(np.abs(res.V - ref.V))), iterations=res.iterations,
                serial_iterations=ref.iterations, q_rounds=res.q_rounds, serial_q_rounds=ref.q_rounds,
                same_q_limited=bool(np.array_equal(res.q_limited, ref.q_limited)),
                max_dpg_pu=float(np.max(np.abs(res.pg - ref.pg))), max_dqg_pu=float(np.max(np.abs(res.qg - ref.qg))),
                max_dsf_pu=float(np.max(np.abs(res.s_from - ref.s_from))),
                edge_cut=info.edge_cut, interface_unknowns=info.interface_unknowns, linear_solver=info.linear_solver)
    if mpi.Get_rank() == 0:
        with open(out, "w") as fh:
            json.dump(found, fh, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    if sys.argv[2:] == ["singular"]:
        _singular(sys.argv[1])
    else:
        _worker(sys.argv[1])
