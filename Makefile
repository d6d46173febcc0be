# gat-hpc: `make demo` sets up and runs a power flow on a bundled case; `make test` sets up and runs every test.
SHELL := /bin/bash
VENV := .venv
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export H5PY_ALWAYS_USE_MPI := 1

.PHONY: setup demo test bench peers clean

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/gat-hpc pf ac gat_hpc/data/case118.m --out demo-out/pf-ac-case118
	$(VENV)/bin/python -c "import json; print(json.dumps(json.load(open('demo-out/pf-ac-case118/summary.json')), indent=1))"

test: export GAT_HPC_WITH_SLURM = 1
test: setup
	bash scripts/run-tests.sh

peers:
	bash scripts/setup-peers.sh

bench: setup peers
	$(VENV)/bin/python benchmarks/acpf.py

clean:
	rm -rf demo-out .pytest_cache
