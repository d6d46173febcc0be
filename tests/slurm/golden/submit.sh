#!/bin/bash
# Submit run @RUN_ID@ (pf-hourly): the array job, then the reduce job, which starts only when
# every array task succeeded (--dependency=afterok). Prints both job ids and records them in
# run.json. Arguments go to the array's sbatch: `submit.sh --array=3,7` runs only those tasks.
# Written by `gat-hpc emit-sbatch`.
set -euo pipefail
RUN='@RUN@'
array=$(sbatch --parsable "$@" "$RUN/array.sbatch")
array=${array%%;*}
echo "array job $array"
reduce=$(sbatch --parsable --dependency="afterok:$array" "$RUN/reduce.sbatch")
reduce=${reduce%%;*}
echo "reduce job $reduce"
record=(--array-job "$array" --reduce-job "$reduce")
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
