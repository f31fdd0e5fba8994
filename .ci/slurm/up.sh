#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on this machine (Debian, root): munge, slurmctld and slurmd,
# with 4 fake GPUs as GRES so that `--gpus=1` requests schedule. Prints nothing but errors and a
# final `sinfo`. Stop it with .ci/slurm/down.sh.
set -euo pipefail
root=${PRUNEBENCH_SLURM_DIR:-/tmp/prunebench-slurm}

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurm-wlm slurmctld slurmd slurm-client munge >/dev/null
fi

mkdir -p "$root"/{state,spool,log} /run/munge /etc/slurm
chown munge:munge /run/munge
[ -f /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
pgrep -x munged >/dev/null || { runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1 && touch "$root/munged.started"; }
for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
munge -n | unmunge >/dev/null

# Fake GPUs: slurmd wants character devices behind a GRES File=.
for i in 0 1 2 3; do [ -c "$root/gpu$i" ] || mknod "$root/gpu$i" c 1 3; done

node=$(hostname -s)
cpus=$(nproc)
mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
mem=$((mem * 9 / 10))
cat >"$root/slurm.conf" <<CONF
ClusterName=prunebench-ci
SlurmctldHost=$node
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
StateSaveLocation=$root/state
SlurmdSpoolDir=$root/spool
SlurmctldPidFile=$root/slurmctld.pid
SlurmdPidFile=$root/slurmd.pid
SlurmctldLogFile=$root/log/slurmctld.log
SlurmdLogFile=$root/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$root/jobcomp.log
MinJobAge=600
ReturnToService=2
NodeName=$node CPUs=$cpus RealMemory=$mem Gres=gpu:4 State=UNKNOWN
PartitionName=gpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
cat >"$root/gres.conf" <<CONF
AutoDetect=off
Name=gpu File=$root/gpu[0-3]
CONF
# The plugin's job-step launcher clears SLURM_CONF, so the daemons' config must be the default one.
ln -sf "$root/slurm.conf" /etc/slurm/slurm.conf
ln -sf "$root/gres.conf" /etc/slurm/gres.conf

# detached from this script's output, so that a caller reading it is not held open by the daemons
slurmctld -f "$root/slurm.conf" </dev/null >/dev/null 2>&1
slurmd -f "$root/slurm.conf" </dev/null >/dev/null 2>&1
for _ in $(seq 60); do
  sinfo -h -o %t 2>/dev/null | grep -qx idle && break
  sleep 1
done
sinfo -h -o %t | grep -qx idle || { echo "slurm node did not become idle:"; sinfo; tail -20 "$root"/log/*.log; exit 1; }
sinfo
