"""One GPU per job: a lease on a lock file per GPU.

Snakemake counts GPUs (``--resources gpu=4``) but does not say which one a job gets. Each training
job therefore leases a device: it takes an exclusive ``flock`` on a lock file named after the
physical GPU. The kernel drops the lock when the process ends, however it ends (even SIGKILL), so
a killed job cannot leave a GPU held. Under SLURM, or when the user sets ``CUDA_VISIBLE_DEVICES``,
only the visible GPUs are candidates, and locks are named by the GPU's UUID (see
``visible_gpu_ids``) so that jobs with different visible sets on one machine still exclude each other.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from prunebench.errors import TrainingError

log = logging.getLogger("prunebench")

LOCK_DIR_ENV = "PRUNEBENCH_GPU_LOCK_DIR"


def default_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "prunebench-gpu-locks")


def visible_gpu_ids(count: int) -> list[str]:
    """Machine-wide ids of the ``count`` visible GPUs, in torch's order.

    The GPU's UUID where the driver gives it: when SLURM confines each job to its GPUs (cgroups),
    every job sees its own GPU as CUDA_VISIBLE_DEVICES=0, so the numbers alone would collide.
    Else the numbers of CUDA_VISIBLE_DEVICES if set, else torch's indices.
    """
    try:
        uuids = [str(torch.cuda.get_device_properties(i).uuid) for i in range(count)]
    except Exception:  # no driver to ask (or an old one): fall back to the numbers
        uuids = []
    if uuids and all(uuids):
        return uuids
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and env.strip():
        ids = [x.strip() for x in env.split(",") if x.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


@dataclass
class Lease:
    """A held GPU: ``index`` is torch's device index, ``gpu_id`` the physical id; None means CPU."""

    index: int | None
    gpu_id: str | None
    _fd: int | None = None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu") if self.index is None else torch.device("cuda", self.index)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def lease_gpu(
    gpu_ids: list[str], lock_dir: Path | None = None, wait_seconds: float = 3600.0, poll: float = 2.0
) -> Lease:
    """Lease the first free GPU of ``gpu_ids`` (waiting while all are held by other jobs)."""
    lock_dir = Path(lock_dir or default_lock_dir())
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    warned = False
    while True:
        for index, gpu_id in enumerate(gpu_ids):
            fd = _try_lock(lock_dir / f"gpu-{gpu_id}.lock")
            if fd is not None:
                return Lease(index, gpu_id, fd)
        if time.monotonic() > deadline:
            raise TrainingError(
                f"all {len(gpu_ids)} GPUs ({', '.join(gpu_ids)}) stayed leased by other jobs for "
                f"{wait_seconds:.0f} s (locks in {lock_dir}); run with --resources gpu=N where N is "
                "the number of GPUs of this machine"
            )
        if not warned:
            log.warning("all GPUs are leased by other jobs; waiting for one to be released")
            warned = True
        time.sleep(poll)


def acquire_device(requested: str = "auto", lock_dir: Path | None = None) -> Lease:
    """The device a training job runs on: a leased GPU when there is one, else the CPU.

    ``requested`` is ``auto`` (lease any visible GPU, fall back to the CPU), ``cpu``, ``cuda`` (lease
    any GPU; fail without one) or ``cuda:N`` (that GPU, leased).
    """
    if requested == "cpu":
        log.info("no GPU in use: training on the CPU (device: cpu in the config)")
        return Lease(None, None)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        if requested != "auto":
            raise TrainingError(
                f"device {requested!r} was asked for but no CUDA GPU is visible; set device: auto or cpu"
            )
        assigned = os.environ.get("CUDA_VISIBLE_DEVICES")
        if assigned:  # e.g. SLURM granted a GPU on a node whose driver torch cannot use
            log.warning("CUDA_VISIBLE_DEVICES=%s is set, but torch sees no usable CUDA GPU", assigned)
        log.info("no GPU in use: training on the CPU")
        return Lease(None, None)
    ids = visible_gpu_ids(count)
    if requested.startswith("cuda:"):
        index = int(requested.split(":", 1)[1])
        if index >= count:
            raise TrainingError(f"device {requested!r} does not exist: {count} GPUs are visible")
        lease = lease_gpu([ids[index]], lock_dir)
        lease.index = index
    else:
        lease = lease_gpu(ids, lock_dir)
    torch.cuda.set_device(lease.index)
    log.info("leased GPU %s (cuda:%d, %s)", lease.gpu_id, lease.index, torch.cuda.get_device_name(lease.index))
    return lease
