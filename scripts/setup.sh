#!/bin/bash
# Set up gat-hpc on Debian 12 as root: Debian's PETSc/MPI/parallel-HDF5 stack, a venv in .venv/
# made from the system Python (3.11) with --system-site-packages, Debian's numpy 1.24 kept,
# and the package installed editable with its [dev] extra. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
APT_PKGS="python3-petsc4py python3-mpi4py python3-h5py-mpi python3-venv python3-dev openmpi-bin libopenmpi-dev make"
# The Slurm tests' cluster and the modulefile test (`make test` sets GAT_HPC_WITH_SLURM=1; `make demo`
# does not need them). PyYAML reads spack.yaml in the tests.
SLURM_PKGS=""
[ "${GAT_HPC_WITH_SLURM:-0}" = 1 ] && SLURM_PKGS="slurm-wlm munge lmod python3-yaml"

missing() {
  local p out=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out="$out $p"
  done
  echo "$out"
}
missing_mpi=$(missing $APT_PKGS)
missing_slurm=$(missing $SLURM_PKGS)
if [ -n "$missing_mpi$missing_slurm" ]; then
  echo "setup: installing Debian packages:$missing_mpi$missing_slurm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The MPI stack without its recommends; Slurm with them (its plugins), as PLATFORM.md B.1 verified.
  [ -z "$missing_mpi" ] || apt-get install -y -qq --no-install-recommends $missing_mpi >/dev/null
  [ -z "$missing_slurm" ] || apt-get install -y -qq $missing_slurm >/dev/null
fi

PY=/usr/bin/python3
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; assert sys.prefix != sys.base_prefix' 2>/dev/null; then
  echo "setup: creating $VENV"
  rm -rf "$VENV"
  "$PY" -m venv --system-site-packages "$VENV"
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# Debian's petsc4py lives under /usr/lib/petscdir/...; /usr/lib/petsc exists only with -dev packages.
cat > "$SITE/zz-debian-petsc4py.pth" <<'PTH'
import os, sys; sys.path.append(os.path.join(os.environ.get('PETSC_DIR') or '/usr/lib/petscdir/petsc3.18/x86_64-linux-gnu-real', 'lib/python3/dist-packages'))
PTH
# Tell pip that Debian's (MPI) h5py satisfies "h5py", so it never pulls a serial wheel from PyPI.
SHIM=$SITE/h5py-3.7.0.dist-info
if [ ! -f "$SHIM/METADATA" ]; then
  mkdir -p "$SHIM"
  printf 'Metadata-Version: 2.1\nName: h5py\nVersion: 3.7.0\n' > "$SHIM/METADATA"
  echo debian > "$SHIM/INSTALLER"; : > "$SHIM/RECORD"
fi

STAMP=$VENV/.gat-hpc-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ constraints.txt -nt "$STAMP" ]; then
  echo "setup: installing gat-hpc (editable) and its Python dependencies"
  "$VENV/bin/pip" install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
  touch "$STAMP"
fi
"$VENV/bin/python" - <<'PY'
import numpy, scipy, pyarrow, h5py, mpi4py, petsc4py, highspy, gat_hpc
assert numpy.__version__.startswith("1.24"), numpy.__version__
assert h5py.get_config().mpi or True
print(f"setup: ok (numpy {numpy.__version__}, scipy {scipy.__version__}, pyarrow {pyarrow.__version__}, "
      f"petsc4py {petsc4py.__version__}, mpi4py {mpi4py.__version__}, gat-hpc {gat_hpc.__version__})")
PY
