"""Studies that run as chunked sweeps: each is planned into ChunkSpecs and run chunk by chunk.

A study class provides:
- ``name`` and ``tables`` ({table: sort keys}): reduce merges the partitions in key order
  (groups of partitions whose leading-key ranges overlap are sorted together), so keep a
  chunk's range of the leading key narrow: the largest group must fit in memory;
- ``context(rundir)``: what every chunk needs (parsed network, profile), built once per process;
- ``run_chunk(ctx, spec) -> (tables, metrics)``: Arrow tables for this chunk's partition;
- ``summarize(rundir, reduced_paths) -> dict``: the study's part of reduce/summary.json.
"""

from __future__ import annotations

from gat_hpc.errors import InputError


def get_study(name):
    if name == "pf-hourly":
        from gat_hpc.studies.pf_hourly import PFHourly
        return PFHourly()
    if name == "contingency":
        from gat_hpc.studies.contingency import Contingency
        return Contingency()
    if name == "adequacy":
        from gat_hpc.studies.adequacy import Adequacy
        return Adequacy()
    if name == "opf-dc":
        from gat_hpc.studies.opf import RollingOPF
        return RollingOPF()
    if name == "trivial":
        from gat_hpc.studies.trivial import Trivial
        return Trivial()
    raise InputError(f"unknown study '{name}' in the run directory")
