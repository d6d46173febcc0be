#!/bin/bash
# Run every gat-hpc test: serial tests with pytest (tests/slurm among them, against a local
# Slurm cluster started here), then the MPI tests under `mpirun -n 2`. Arguments go to the
# serial pytest run (`bash scripts/run-tests.sh tests/slurm`).
# GAT_HPC_REQUIRE (comma list: mpi, petsc, slurm, lmod) turns a missing component into a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 H5PY_ALWAYS_USE_MPI=1
export OMPI_MCA_rmaps_base_oversubscribe=1 PYTHONDONTWRITEBYTECODE=1

fail=0
check() {  # check NAME COMMAND...: fail when a required component is missing
  local name=$1; shift
  if "$@" >/tmp/gat-hpc-check.$$ 2>&1; then echo "component $name: ok"
  else
    if [[ ",${GAT_HPC_REQUIRE:-}," == *",$name,"* ]]; then
      echo "component $name: MISSING but required by GAT_HPC_REQUIRE:"; cat /tmp/gat-hpc-check.$$; fail=1
    else echo "component $name: missing (tests that need it will skip)"; fi
  fi
  rm -f /tmp/gat-hpc-check.$$
}
check petsc $PY -c "from petsc4py import PETSc; assert PETSc.Sys.hasExternalPackage('mumps')"
check mpi mpirun -n 2 $PY -c "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2"

# Slurm: a single-node cluster of the tests' own (never the SLURM_CONF of the caller's cluster),
# started in a scratch folder and stopped when this script exits. It advertises 8 CPUs on this
# small machine so the short test tasks start together (scripts/start-slurm.sh).
unset SLURM_CONF
SLURM_STATE=""
stop_slurm() { [ -n "$SLURM_STATE" ] && bash scripts/stop-slurm.sh "$SLURM_STATE" && rm -rf "$SLURM_STATE"; }
if [[ ",${GAT_HPC_REQUIRE:-}," == *",slurm,"* ]] || command -v slurmctld >/dev/null || [ -x /usr/sbin/slurmctld ]; then
  SLURM_STATE=$(mktemp -d "${TMPDIR:-/tmp}/gat-hpc-slurm.XXXXXX")
  trap stop_slurm EXIT
  if conf=$(SLURM_CI_CPUS=${SLURM_CI_CPUS:-8} bash scripts/start-slurm.sh "$SLURM_STATE"); then
    eval "$conf"
  fi
fi
check slurm sinfo -h -o %t
check lmod test -r /usr/share/lmod/lmod/init/bash
[ $fail = 0 ] || exit 1

echo "== serial tests"
$PY -m pytest -q -rs -p no:cacheprovider --durations=15 --ignore=tests/mpi "$@"
rc=$?
[ $rc = 5 ] && { echo "no serial tests were collected"; rc=1; }
[ $rc = 0 ] || fail=1

echo "== MPI tests (mpirun -n 2)"
GAT_HPC_EXPECT_RANKS=2 mpirun -n 2 $PY -m pytest -q -p no:cacheprovider --color=no tests/mpi
rc=$?
[ $rc = 0 ] || fail=1
exit $fail
