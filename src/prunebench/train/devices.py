"""One GPU per job (N at once for a multi-GPU state): a lease on a lock file per GPU.

Snakemake counts GPUs (``--resources gpu=4``) but does not say which one a job gets. Each training
job therefore leases a device: it takes an exclusive ``flock`` on a lock file named after the
physical GPU. The kernel drops the lock when the process ends, however it ends (even SIGKILL), so
a killed job cannot leave a GPU held. Under SLURM, or when the user sets ``CUDA_VISIBLE_DEVICES``,
only the visible GPUs are candidates, and locks are named by the GPU's UUID (see
``visible_gpu_ids``) so that jobs with different visible sets on one machine still exclude each other.

The lock directory is shared by every user of the machine, like /tmp: created with mode 1777, lock
files 0666, no symlink followed and no file truncated, so that users exclude each other and nobody
can make a job write through a planted link (see :func:`prepare_lock_dir`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from prunebench.errors import TrainingError

log = logging.getLogger("prunebench")

LOCK_DIR_ENV = "PRUNEBENCH_GPU_LOCK_DIR"


def _default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "prunebench-gpu-locks"


def default_lock_dir() -> Path:
    """Where the GPU lock files live: $PRUNEBENCH_GPU_LOCK_DIR, else one directory in /tmp for all users."""
    return Path(os.environ.get(LOCK_DIR_ENV) or _default_lock_dir())


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


def _lock_dir_error(lock_dir: Path, problem: str) -> TrainingError:
    return TrainingError(
        f"GPU lock directory {lock_dir} {problem}; another user could break the GPU leases or make a job "
        f"write to a file of theirs. Set {LOCK_DIR_ENV} to a directory of your own (mkdir -m 700 DIR), "
        "or to one shared by all users of this machine with mode 1777 (world-writable and sticky, like /tmp)"
    )


def prepare_lock_dir(lock_dir: Path) -> Path:
    """Create the lock directory shareable by every user (mode 1777, like /tmp) or check the existing one.

    An existing directory must not be a symlink, and must be owned by this user or be world-writable
    with the sticky bit (so that no other user can delete or replace this user's lock files).
    """
    try:
        lock_dir.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(lock_dir, 0o700)
        os.chmod(lock_dir, 0o1777)  # after mkdir, so that the umask does not strip it
    except FileExistsError:
        pass  # made by another job or user: checked below like any existing directory
    except OSError as exc:
        raise TrainingError(
            f"cannot create the GPU lock directory {lock_dir}: {exc.strerror}; set {LOCK_DIR_ENV} "
            "to a directory this user can write"
        ) from None
    st = os.lstat(lock_dir)
    if stat.S_ISLNK(st.st_mode):
        raise _lock_dir_error(lock_dir, f"is a symbolic link (to {os.readlink(lock_dir)})")
    if not stat.S_ISDIR(st.st_mode):
        raise _lock_dir_error(lock_dir, "is not a directory")
    shared = st.st_mode & stat.S_ISVTX and st.st_mode & stat.S_IWOTH
    if st.st_uid != os.geteuid() and not shared:
        owner = _user_name(st.st_uid)
        raise _lock_dir_error(
            lock_dir,
            f"belongs to {owner} and is not world-writable with the sticky bit "
            f"(mode {stat.S_IMODE(st.st_mode):o}: ask {owner} to run chmod 1777 {lock_dir})",
        )
    if st.st_uid == os.geteuid() and not shared and lock_dir == _default_lock_dir():
        os.chmod(lock_dir, 0o1777)  # made 0755 by an older prunebench: let other users share it
    return lock_dir


def _user_name(uid: int) -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name}"
    except (ImportError, KeyError):
        return f"uid {uid}"


_OPEN_FLAGS = os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # never O_TRUNC


def _open_lock_file(path: Path) -> int:
    """Open (creating if needed, mode 0666) the lock file; refuse a symlink or anything but a plain file."""
    try:
        try:
            fd = os.open(path, os.O_RDWR | _OPEN_FLAGS, 0o666)
        except PermissionError:  # another user's lock file without write permission: flock needs none
            fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise TrainingError(
                f"GPU lock file {path} is a symbolic link (to {os.readlink(path)}); prunebench does not follow "
                f"links in its lock directory, so that no file can be overwritten through one. Remove the link, "
                f"or set {LOCK_DIR_ENV} to a directory of your own"
            ) from None
        raise TrainingError(
            f"cannot open GPU lock file {path}: {exc.strerror}; set {LOCK_DIR_ENV} to a directory "
            "that every user of this machine can write (mode 1777)"
        ) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise TrainingError(
            f"GPU lock file {path} is not a plain file; remove it, or set {LOCK_DIR_ENV} to a directory of your own"
        )
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != 0o666:
        os.fchmod(fd, 0o666)  # the umask stripped it: let other users' jobs open it too
    return fd


def _try_lock(path: Path) -> int | None:
    fd = _open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    st = os.fstat(fd)
    if st.st_uid == os.geteuid() and st.st_nlink == 1:
        # Who holds it, for a curious user: written over in place, never truncated, and only into
        # this user's own file with no other name (not a hard link planted to another file).
        with contextlib.suppress(OSError):  # opened read-only, or a full disk: the flock alone is the lease
            os.pwrite(fd, f"{os.getpid():>10d}\n".encode(), 0)
    return fd


def lease_gpu(
    gpu_ids: list[str], lock_dir: Path | None = None, wait_seconds: float = 3600.0, poll: float = 2.0
) -> Lease:
    """Lease the first free GPU of ``gpu_ids`` (waiting while all are held by other jobs)."""
    lock_dir = prepare_lock_dir(Path(lock_dir or default_lock_dir()))
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


def lease_gpus(
    gpu_ids: list[str], count: int, lock_dir: Path | None = None, wait_seconds: float = 3600.0, poll: float = 2.0
) -> list[Lease]:
    """Lease ``count`` GPUs of ``gpu_ids`` at once (a multi-GPU state), waiting while fewer are free.

    All or none: a job that finds fewer free GPUs than it needs releases those it got and tries
    again later, so two multi-GPU jobs never hold part of what the other waits for.
    """
    if count > len(gpu_ids):
        raise TrainingError(
            f"a state with train.gpus: {count} needs {count} GPUs, but {len(gpu_ids)} are visible "
            f"({', '.join(gpu_ids) or 'none'}); lower train.gpus or run it where {count} GPUs are visible"
        )
    lock_dir = prepare_lock_dir(Path(lock_dir or default_lock_dir()))
    deadline = time.monotonic() + wait_seconds
    warned = False
    while True:
        held: list[Lease] = []
        for index, gpu_id in enumerate(gpu_ids):
            fd = _try_lock(lock_dir / f"gpu-{gpu_id}.lock")
            if fd is not None:
                held.append(Lease(index, gpu_id, fd))
                if len(held) == count:
                    return held
        for lease in held:
            lease.release()
        if time.monotonic() > deadline:
            raise TrainingError(
                f"fewer than {count} of the {len(gpu_ids)} GPUs were free for {wait_seconds:.0f} s (locks in "
                f"{lock_dir}); give Snakemake --resources gpu=N with N the number of GPUs of this machine"
            )
        if not warned:
            log.warning("fewer than %d GPUs are free; waiting for other jobs to release theirs", count)
            warned = True
        time.sleep(poll)


def acquire_devices(requested: str, count: int, lock_dir: Path | None = None) -> list[Lease]:
    """The devices of a multi-GPU state's ``count`` processes on this machine: ``count`` leased GPUs,
    or no lease at all (an empty list) when it trains on the CPU. As :func:`acquire_device` decides
    between GPU and CPU; ``cuda:N`` names one GPU and is refused here."""
    if requested.startswith("cuda:"):
        raise TrainingError(
            f"device: {requested} names one GPU, but the state trains on train.gpus: {count} GPUs; "
            "set device: cuda (or auto) to lease any free ones, and CUDA_VISIBLE_DEVICES to choose among them"
        )
    if requested == "cpu":
        log.info("no GPU in use: %d processes train on the CPU (device: cpu in the config)", count)
        return []
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible == 0:
        acquire_device(requested, lock_dir)  # stops or warns as for one GPU; leases nothing
        return []
    leases = lease_gpus(visible_gpu_ids(visible), count, lock_dir)
    log.info("leased GPUs %s", ", ".join(f"{x.gpu_id} (cuda:{x.index})" for x in leases))
    return leases


def visible_devices_of(leases: list[Lease]) -> str:
    """CUDA_VISIBLE_DEVICES for child processes that are to see just the leased GPUs, in lease order."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    current = [x.strip() for x in env.split(",") if x.strip()] if env and env.strip() else None
    return ",".join(current[x.index] if current else str(x.index) for x in leases)


def driver_version() -> str | None:
    """The NVIDIA driver's version on this machine (nvidia-smi, else /proc/driver/nvidia/version), or None."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        versions = sorted(set(out.stdout.split()))
        if out.returncode == 0 and versions:
            return versions[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]+)", text)
    return match.group(1) if match else text.splitlines()[0].strip()


# The oldest Linux driver each CUDA major version runs on (NVIDIA's minor-version compatibility table)
MIN_DRIVER = {13: 580, 12: 525, 11: 450}
TORCH_INSTALL = "https://pytorch.org/get-started/locally/"


def _major(version: str | None) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def _torch_build_advice(driver: str | None) -> str:
    """What to do about it: a torch build for a CUDA this driver runs, or a node with a GPU."""
    if driver is None:
        return (
            "No NVIDIA driver on this node (no nvidia-smi, no /proc/driver/nvidia/version): the job ran on a "
            "node without a GPU; check the partition (slurm_partition in the profile) and that the job asks "
            "for a GPU (the rules' gpu=1 resource)"
        )
    build, driver_major = _major(torch.version.cuda), _major(driver) or 0
    runs = [cuda for cuda, oldest in sorted(MIN_DRIVER.items(), reverse=True) if driver_major >= oldest]
    if build is None:
        return f"This torch is a CPU-only build: install a CUDA build ({TORCH_INSTALL}; README: 'GPU drivers')"
    if build in runs:
        return (
            f"Driver {driver} runs CUDA {torch.version.cuda}: the GPU may be failing, busy in exclusive mode, "
            "or hidden by CUDA_VISIBLE_DEVICES; run nvidia-smi on the node"
        )
    index = {12: "cu126", 11: "cu118"}.get(runs[0]) if runs else None
    if index is None:
        return f"Driver {driver} is too old for any current torch: ask the cluster's admins for a newer one"
    return (
        f"CUDA {build} needs driver >= {MIN_DRIVER.get(build, '?')}: install a torch build for CUDA {runs[0]} "
        f"in the jobs' environment, e.g. pip install --force-reinstall torch=={torch.__version__.split('+')[0]} "
        f"torchvision --index-url https://download.pytorch.org/whl/{index} (check the versions built for it "
        f"at {TORCH_INSTALL}; README: 'GPU drivers')"
    )


def no_gpu_error(requested: str) -> TrainingError:
    """Why a job that needs a GPU has none usable: the driver, torch's CUDA build, and what to do."""
    slurm = os.environ.get("SLURM_JOB_ID")
    why = f"device: {requested}" if requested != "auto" else f"a SLURM job ({slurm}) with device: auto"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = f"CUDA_VISIBLE_DEVICES={visible} is set but " if visible else ""
    driver = driver_version()
    return TrainingError(
        f"no usable CUDA GPU for {why}: {seen}torch {torch.__version__} (CUDA build {torch.version.cuda}) "
        f"sees none; NVIDIA driver: {driver or 'none found'}. {_torch_build_advice(driver)}. Stopped at once "
        "instead of training on the CPU until the time limit; to train on the CPU on purpose, set device: cpu"
    )


def acquire_device(requested: str = "auto", lock_dir: Path | None = None) -> Lease:
    """The device a training job runs on: a leased GPU when there is one, else the CPU.

    ``requested`` is ``auto`` (lease any visible GPU; outside SLURM fall back to the CPU with a
    warning, in a SLURM job stop), ``cpu``, ``cuda`` (lease any GPU; stop without one) or ``cuda:N``
    (that GPU, leased). Stopping names the driver and torch's CUDA build (:func:`no_gpu_error`).
    """
    if requested == "cpu":
        log.info("no GPU in use: training on the CPU (device: cpu in the config)")
        return Lease(None, None)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        if requested != "auto" or os.environ.get("SLURM_JOB_ID"):
            raise no_gpu_error(requested)
        assigned = os.environ.get("CUDA_VISIBLE_DEVICES")
        if assigned:  # a GPU granted on a machine whose driver torch cannot use
            log.warning("CUDA_VISIBLE_DEVICES=%s is set, but torch sees no usable CUDA GPU", assigned)
        log.warning(
            "no GPU in use: training on the CPU (device: auto found no usable CUDA GPU; set device: cpu to say so)"
        )
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
