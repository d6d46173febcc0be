#!/bin/bash
# Start a single-node Slurm cluster (slurmctld + slurmd + munge) in STATE_DIR, as root, without
# systemd (Debian 12, Slurm 22.05). Prints `export SLURM_CONF=STATE_DIR/slurm.conf` on stdout.
#
#   eval "$(bash scripts/start-slurm.sh /tmp/gat-slurm)"    # then sbatch, squeue, ... work
#   bash scripts/stop-slurm.sh /tmp/gat-slurm
#
# Restarting over a live instance of the same STATE_DIR cancels its jobs and starts afresh.
# The cluster listens on two free TCP ports of its own, so several clusters (one per checkout
# or test run) can live on one host. SLURM_CI_CPUS=N advertises N CPUs (N > nproc
# oversubscribes the cores, so more short tasks start at once).
set -euo pipefail
S=$(realpath -m "${1:?usage: start-slurm.sh STATE_DIR}")
H=$(hostname -s)
NP=${SLURM_CI_CPUS:-$(nproc)}
MEM=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) * 8 / 10 ))
for tool in slurmctld slurmd munged sinfo scontrol; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "start-slurm: $tool not found; install slurm-wlm and munge (make test does)" >&2; exit 2; }
done

if [ -s "$S/slurmctld.pid" ]; then  # a previous instance in STATE_DIR: stop it
  bash "$(dirname "$0")/stop-slurm.sh" "$S" >&2 || true
fi
rm -rf "$S"
mkdir -p "$S"/{state,spool,log}

# munge: the Debian postinst made the key; munged must run as user munge. One munged serves
# every cluster on the host; remember whether we started it so stop-slurm.sh stops only ours.
[ -s /etc/munge/munge.key ] || mungekey --create
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 20); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$S/munged.pid"
fi

# Two free ports (controller, node daemon); the kernel picks them.
read -r CTLD_PORT SLURMD_PORT < <(/usr/bin/python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
# A host name that does not resolve (some containers) is reached through the loopback address.
ADDR=$H
getent hosts "$H" >/dev/null || ADDR=127.0.0.1

cat > "$S/slurm.conf" <<CONF
# Written by gat-hpc scripts/start-slurm.sh: one node, one partition, no accounting database.
ClusterName=gatci
SlurmctldHost=$H($ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
JobCompType=jobcomp/filetxt
JobCompLoc=$S/log/jobcomp.txt
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
SlurmdParameters=config_overrides
MpiDefault=pmix
ReturnToService=2
NodeName=$H NodeAddr=$ADDR CPUs=$NP RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$S/slurm.conf
slurmctld -f "$SLURM_CONF"          # both fork into the background and write their pid files
slurmd -f "$SLURM_CONF" -N "$H"
for _ in $(seq 100); do
  [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && break
  sleep 0.1
done
if [ "$(sinfo -h -o %t 2>/dev/null)" != idle ]; then
  echo "start-slurm: the node did not become idle in 10 s; last log lines:" >&2
  tail -n 20 "$S"/log/*.log >&2
  exit 1
fi
echo "export SLURM_CONF=$SLURM_CONF"
