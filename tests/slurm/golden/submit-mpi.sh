#!/bin/bash
# Submit distributed AC power flow of case9.m as one MPI job; prints its id and
# records it in run.json (jobs.json outside a run directory). Arguments go to sbatch.
# Written by `gat-hpc emit-sbatch`.
set -euo pipefail
RUN=@RUN@
job=$(sbatch --parsable "$@" "$RUN/mpi.sbatch")
job=${job%%;*}
echo "mpi job $job"
record=(--mpi-job "$job")
(
  set +eu
  # Site modules (Lmod or Environment Modules); a batch shell that is not a login shell may lack
  # the `module` command, so it is set up first.
  if ! type module >/dev/null 2>&1; then
    for init in /etc/profile.d/lmod.sh /usr/share/lmod/lmod/init/bash /etc/profile.d/modules.sh; do
      if [ -r "$init" ]; then . "$init"; break; fi
    done
  fi
  module load openmpi/4.1 petsc/3.18 gat-hpc/@VERSION@ || exit 2
  . /opt/gat-hpc/venv/bin/activate || exit 2
  gat-hpc record-jobs --run-dir "$RUN" "${record[@]}" -- "$@"
) || echo "submit.sh: submitted, but the job ids could not be recorded in $RUN" >&2
