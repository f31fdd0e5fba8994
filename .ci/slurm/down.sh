#!/usr/bin/env bash
# Stop the cluster started by .ci/slurm/up.sh, by the PIDs in its pid files.
root=${PRUNEBENCH_SLURM_DIR:-/tmp/prunebench-slurm}
for pidfile in "$root/slurmd.pid" "$root/slurmctld.pid"; do
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
pkill -x munged 2>/dev/null
exit 0
