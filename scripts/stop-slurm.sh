#!/bin/bash
# Stop the cluster that scripts/start-slurm.sh started in STATE_DIR: cancel its jobs (a job
# step outlives `scontrol shutdown`), shut the daemons down, and stop munged if that script
# started it. Only processes named in STATE_DIR's pid files are signalled. Safe to repeat.
set -uo pipefail
S=$(realpath -m "${1:?usage: stop-slurm.sh STATE_DIR}")
export SLURM_CONF=$S/slurm.conf
running() {  # a live process (a zombie waiting for a PID 1 that does not reap counts as ended)
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
alive() { [ -s "$1" ] && running "$(cat "$1")"; }

if alive "$S/slurmctld.pid"; then
  scancel --user="$(id -un)" 2>/dev/null
  for _ in $(seq 50); do  # jobs end within a moment of SIGTERM; give them 5 s
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
    sleep 0.1
  done
  scontrol shutdown 2>/dev/null
fi
for d in slurmctld slurmd munged; do
  pidfile=$S/$d.pid
  pid=$(cat "$pidfile" 2>/dev/null) || continue  # read once: a daemon removes its file as it ends
  [ -n "$pid" ] && running "$pid" || continue
  [ "$d" = munged ] && kill "$pid" 2>/dev/null  # slurmctld and slurmd end on `scontrol shutdown`
  for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
  running "$pid" && kill -KILL "$pid"
done
rm -f "$S/munged.pid"
exit 0
