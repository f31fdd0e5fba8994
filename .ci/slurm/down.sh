#!/usr/bin/env bash
# Stop the cluster started by .ci/slurm/up.sh, by the PIDs in its pid files.
root=${PRUNEBENCH_SLURM_DIR:-/tmp/prunebench-slurm}
for pidfile in "$root/slurmd.pid" "$root/slurmctld.pid"; do
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
# munged only if up.sh started it (its pid file); a munged the machine already ran stays.
[ -f "$root/munged.started" ] && [ -f /run/munge/munged.pid ] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null
rm -f "$root/munged.started"
exit 0
