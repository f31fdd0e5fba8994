"""Multi-GPU prune states: one DistributedDataParallel job per state (``train.gpus``, ``train.nodes``).

The process that Snakemake (or ``prunebench train-state``) starts holds the state's lock, adopts a
state an earlier attempt finished, and otherwise launches the state's processes with the standard
tools, then waits for them:

- on one machine, ``torchrun --standalone --nproc-per-node=N`` after leasing N GPUs at once
  (``accel/devices.py``; the children see only those, through CUDA_VISIBLE_DEVICES);
- inside a SLURM allocation, ``srun`` with one task per GPU over ``train.nodes`` nodes; each task
  takes its rank, world size and local rank from SLURM's variables (env:// initialisation, with
  MASTER_ADDR the first node of the step and MASTER_PORT derived from the job id).

Every process runs :func:`main`, which joins the process group (nccl on GPUs, gloo on the CPU) and
trains the state with :func:`prunebench.train.launch.train_on_device`, whose runner the helpers of
:mod:`prunebench.train.ranks` make distributed: each process trains on its equal shard of every
global batch (``DeviceData(shard=...)``, the same permutation and augmentation as one process),
gradients are averaged by DDP, the method's plan and events are computed on every rank and rank 0's
result (masks and the method's state) is adopted by all, evaluations run identically on every rank,
and only rank 0 writes checkpoints, metrics, logs and the summary. A resume restores every rank from what rank 0 read from ``resume.pt``. When one
process dies, torchrun (or srun's --kill-on-bad-exit) stops the others, the launcher exits with an
error and no declared output is written: a rerun resumes from the last finished epoch.

When the launcher itself dies (even by SIGKILL), its processes die with it: torchrun receives SIGKILL
when the launcher ends, and each worker (which torchrun starts in a session of its own, out of reach
of a kill of the job's process group) receives SIGKILL when torchrun ends. Every process holds the
state's ``ranks.lock`` shared while it lives, and a job waits for it before it starts processes of its
own (:func:`prunebench.train.recovery.wait_for_ranks`), so a rerun never trains beside the last
processes of a killed attempt.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from prunebench.accel.devices import acquire_device, acquire_devices, visible_devices_of
from prunebench.errors import StateBusyError, TrainingError
from prunebench.logs import configure_logging
from prunebench.results.layout import SUMMARY, StatePaths
from prunebench.results.summary import read_summary_file
from prunebench.train.ranks import is_main, rank, world, world_of
from prunebench.train.recovery import hold_ranks_lock

log = logging.getLogger("prunebench")

LEASED_ENV = "PRUNEBENCH_DDP_LEASED"  # set by the local launcher: the children's GPUs are leased already
JOB_ENV = "PRUNEBENCH_DDP_JOB"  # the local launcher's PID: torchrun's workers check that it still runs


# --- the launcher: the one process Snakemake starts ---------------------------------------------


def _kill_me_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent ends, however it ends (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _die_with_parent(parent: int) -> None:
    """In the launched child (torchrun), before it runs: die with the launcher ``parent``. A parent that
    died before the prctl took effect sends nothing, hence the check that it is still the parent."""
    _kill_me_with_parent()
    if os.getppid() != parent:
        os._exit(1)


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after the command name, which may hold spaces: state, ppid


def _tie_to_job(recovery_dir: str) -> int:
    """In a state's process, first thing: die with the job that launched it, and hold the state's ranks
    lock for as long as this process lives; returns the lock's descriptor (kept open)."""
    job = os.environ.get(JOB_ENV)  # torchrun's worker; under srun, SLURM ends the tasks of a step whose srun died
    if job:
        _kill_me_with_parent()  # torchrun's end; torchrun dies with the job
    try:
        fd = hold_ranks_lock(recovery_dir)
    except StateBusyError as exc:
        sys.exit(f"prunebench: {exc}")
    # After the lock: a job that ended before this point may have been followed by a rerun that found the
    # lock free. Then the job is gone and torchrun with it, so this process is no grandchild of the job.
    if job and _parent_of(os.getppid()) != int(job):
        sys.exit(f"prunebench: the job (PID {job}) that started this process has ended; this process stops")
    return fd


def _command(experiment: dict, payload: str, threads: int | None, env: dict) -> list[str]:
    gpus, nodes = int(experiment["train"]["gpus"]), int(experiment["train"]["nodes"])
    worker = [sys.executable, "-m", "prunebench.train.distributed", payload]
    if os.environ.get("SLURM_JOB_ID"):
        # one task per GPU in this allocation (the rule asked SLURM for them); the tasks see the
        # job's GPUs of their node and take the one of their local rank
        env["MASTER_PORT"] = str(20000 + int(os.environ["SLURM_JOB_ID"]) % 20000)
        return [
            "srun", f"--ntasks={gpus * nodes}", f"--nodes={nodes}", f"--ntasks-per-node={gpus}",
            f"--cpus-per-task={threads or 1}", "--kill-on-bad-exit=1", "--export=ALL", *worker,
        ]  # fmt: skip
    if nodes > 1:
        raise TrainingError(
            f"train.nodes: {nodes} needs a SLURM allocation (snakemake --profile profiles/slurm); on one "
            "machine set train.nodes: 1 and train.gpus to the GPUs it should use"
        )
    env[JOB_ENV] = str(os.getpid())
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}", *worker[1:]]


def train_distributed(
    experiment: dict, state: int, paths: StatePaths, *, data_dir, download, device, threads, tracking
) -> dict:
    """Train the state with its train.gpus x train.nodes processes; returns its summary.

    Called with the state's lock held, once the processes of earlier attempts have ended; the
    processes' output goes to this process's stderr (the job's log). Raises TrainingError when any
    process fails; the state's recovery files stay for the rerun."""
    n = world_of(experiment)
    payload = json.dumps({
        "experiment": experiment, "state": state, "out_dir": str(paths.out_dir),
        "recovery_dir": str(paths.recovery_dir), "previous": paths.previous and str(paths.previous),
        "init": paths.init and str(paths.init), "data_dir": str(data_dir), "download": download,
        "device": device, "threads": threads, "tracking": tracking,
    })  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads or 1)}
    cmd = _command(experiment, payload, threads, env)
    leases = [] if os.environ.get("SLURM_JOB_ID") else acquire_devices(device, n)
    if leases:
        env.update({"CUDA_VISIBLE_DEVICES": visible_devices_of(leases), LEASED_ENV: "1"})
    log.info("state %d of %s: %d processes (%s)", state, experiment["name"], n, " ".join(cmd[: cmd.index("-m")]))
    try:  # SIGTERM (Snakemake, SLURM) raises here, so that the finally below stops the children
        previous = signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread: signals are not ours to handle
        previous = None
    proc = None
    try:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),
        )
        for line in proc.stdout:
            sys.stderr.write(line)
        code = proc.wait()
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        for lease in leases:
            lease.release()
    if code != 0:
        raise TrainingError(
            f"state {state} of {experiment['name']}: a process of its {n}-process run failed (exit {code}; its "
            "error is above); the others were stopped and no output was written. Rerun to resume from the "
            f"last finished epoch ({paths.recovery_dir})"
        )
    return read_summary_file(Path(paths.out_dir) / SUMMARY)


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


# --- a state's process ------------------------------------------------------------------------------


def _first_host(nodelist: str) -> str:
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def _from_slurm() -> None:
    """torch's env:// variables from those srun gives each task (torchrun sets them itself)."""
    env = os.environ
    if "RANK" in env or "SLURM_PROCID" not in env:
        return
    env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"] = env["SLURM_PROCID"], env["SLURM_NTASKS"], env["SLURM_LOCALID"]
    if "MASTER_ADDR" not in env:
        env["MASTER_ADDR"] = _first_host(env.get("SLURM_STEP_NODELIST") or env["SLURM_JOB_NODELIST"])


def _device(requested: str, local_rank: int):
    """This process's device and its lease (None where the launcher leased, or on the CPU)."""
    count = torch.cuda.device_count() if requested != "cpu" and torch.cuda.is_available() else 0
    if count == 0:
        return acquire_device(requested).device, None  # the CPU (said in the log), or stop without a GPU
    index = local_rank if count > local_rank else 0 if count == 1 else None
    if index is None:
        raise TrainingError(f"process of local rank {local_rank} sees {count} GPUs: fewer than the processes per node")
    if os.environ.get(LEASED_ENV):
        torch.cuda.set_device(index)
        return torch.device("cuda", index), None
    lease = acquire_device(f"cuda:{index}")  # under SLURM: the GPU of this task, leased like any job's
    return lease.device, lease


def main(argv: list[str] | None = None) -> None:
    """One process of a multi-GPU state (started by :func:`train_distributed` through torchrun or srun)."""
    job = json.loads((argv or sys.argv[1:])[0])  # the job environment (weights, data) is the launcher's
    _tie_to_job(job["recovery_dir"])  # its descriptor stays open: the lock goes when this process ends
    configure_logging()
    _from_slurm()
    dev, lease = _device(job["device"], int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", init_method="env://")
    try:
        placement = " ".join(
            f"{k}={os.environ[k]}" for k in ("SLURM_JOB_ID", "SLURM_GPUS", "CUDA_VISIBLE_DEVICES") if k in os.environ
        )
        log.info("rank %d of %d on %s, %s %s", rank(), world(), socket.gethostname(), dev, placement)
        if not is_main():
            log.setLevel(logging.WARNING)  # rank 0 tells the state's progress
        # late: the model, data and pruning code load once this process is tied to its job
        from prunebench.train.launch import train_on_device

        if job["threads"]:
            torch.set_num_threads(job["threads"])
        paths = StatePaths(job["out_dir"], job["recovery_dir"], job["previous"], job["init"])
        train_on_device(
            job["experiment"], job["state"], paths, dev, data_dir=job["data_dir"], download=job["download"],
            threads=job["threads"], tracking=job["tracking"],
        )  # fmt: skip
        # Leave together: no rank tears its process group down (and exits) while rank 0 still writes
        # the outputs. Once, in a fresh-clone test run, rank 1 aborted in gloo's teardown ("terminate
        # called without an active exception") while rank 0 was finishing; it did not recur in 18 tries.
        dist.barrier(**({"device_ids": [dev.index]} if dev.type == "cuda" else {}))
    finally:
        dist.destroy_process_group()
        if lease is not None:
            lease.release()


if __name__ == "__main__":
    main()
