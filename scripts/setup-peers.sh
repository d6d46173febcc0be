#!/bin/bash
# Set up the peer tools the benchmarks compare gat-hpc with (pandapower with numba, lightsim2grid)
# in their own venv, .venv-peers/. They need numpy >= 1.26 / numpy 2, while the project's
# venv keeps Debian's numpy 1.24 for PETSc, so the two never share a Python environment.
# Plain venv from the system Python, no system site packages. Safe to run again: installs only
# when a package is missing, and records the versions in .venv-peers/versions.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$PWD/.venv-peers
PEERS="pandapower numba lightsim2grid"

if [ ! -x "$VENV/bin/python" ]; then
  echo "peers: creating $VENV"
  /usr/bin/python3 -m venv "$VENV"
fi

if ! "$VENV/bin/python" -c 'import pandapower, numba, lightsim2grid' 2>/dev/null; then
  echo "peers: installing $PEERS into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check $PEERS
fi

"$VENV/bin/python" - "$VENV/versions.txt" <<'PY'
import sys
from importlib.metadata import version

names = ["pandapower", "numba", "lightsim2grid", "numpy", "scipy", "pandas"]
line = ", ".join(f"{n} {version(n)}" for n in names)
open(sys.argv[1], "w").write(line + "\n")
print(f"peers: ok ({line})")
PY
