"""One GPU per job (N at once for a multi-GPU state): a lease on a lock file per GPU.

Snakemake counts GPUs (``--resources gpu=4``) but does not say which one a job gets. Each training
job therefore leases a device: it takes an exclusive ``flock`` on a lock file named after the
physical GPU. The kernel drops the lock when the process ends, however it ends (even SIGKILL), so
a killed job cannot leave a GPU held. Under SLURM, or when the user sets ``CUDA_VISIBLE_DEVICES``,
only the visible GPUs are candidates, and locks are named by the GPU's UUID (see
``visible_gpu_ids``) so that jobs with different visible sets on one machine still exclude each other.

Several users of a machine exclude each other, and none can break another's lease. The lock files
live in /tmp itself (or $PRUNEBENCH_GPU_LOCK_DIR), a directory that only root or this user may own:
in a sticky world-writable directory a file can still be deleted by the directory's owner, and a
deleted lock file lets the next job lease the GPU beside the one holding it. For the same reason
each user locks a file of their own (``prunebench-gpu-{id}.{uid}.lock``, which only they can
delete) and leases the GPU only while no other user's file for it is locked. No symlink is followed
and no file truncated, so nobody can make a job write through a planted link.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from prunebench.errors import TrainingError
from prunebench.torch_build import MIN_DRIVER, BuildError, choose, detect_driver, driver_major

log = logging.getLogger("prunebench")

LOCK_DIR_ENV = "PRUNEBENCH_GPU_LOCK_DIR"


def _default_lock_dir() -> Path:
    return Path(tempfile.gettempdir())  # /tmp: root's, so no user can delete another's lock file there


def default_lock_dir() -> Path:
    """Where the GPU lock files live: $PRUNEBENCH_GPU_LOCK_DIR, else /tmp (the same for all users)."""
    return Path(os.environ.get(LOCK_DIR_ENV) or _default_lock_dir())


def lock_file_name(gpu_id: str, uid: int) -> str:
    """The lock file of ``gpu_id`` that the jobs of user ``uid`` lock."""
    return f"prunebench-gpu-{gpu_id}.{uid}.lock"


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
        f"GPU lock directory {lock_dir} ({LOCK_DIR_ENV}) {problem}; another user could break the GPU leases "
        f"or make a job write to a file of theirs. Unset {LOCK_DIR_ENV} to use /tmp, or set it to a directory "
        "of your own (mkdir -m 700 DIR) or to one owned by root with mode 1777 (sudo install -d -m 1777 DIR)"
    )


def prepare_lock_dir(lock_dir: Path) -> Path:
    """Create the lock directory (mode 1777 when root creates it, to be shared; else 700) or check the
    existing one: not a symlink, owned by root or by this user, and if world-writable then sticky.
    """
    try:
        lock_dir.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(lock_dir, 0o700)
        if os.geteuid() == 0:
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
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid not in (0, os.geteuid()):
        # its owner may delete any file in it, sticky bit or not: a held lease's lock file included
        raise _lock_dir_error(lock_dir, f"belongs to {_user_name(st.st_uid)} (mode {mode:o}), neither root nor you")
    if mode & (stat.S_IWOTH | stat.S_IWGRP) and not mode & stat.S_ISVTX:
        raise _lock_dir_error(lock_dir, f"is writable by other users without the sticky bit (mode {mode:o})")
    return lock_dir


def _user_name(uid: int) -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name}"
    except (ImportError, KeyError):
        return f"uid {uid}"


_OPEN_FLAGS = os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # never O_TRUNC


def _open_own_lock_file(path: Path) -> int:
    """Open (creating if needed) this user's lock file; refuse a symlink, anything but a plain file, and a
    file of another user (who could delete it while a job of this user holds it)."""
    try:
        fd = os.open(path, os.O_RDWR | _OPEN_FLAGS, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise TrainingError(
                f"GPU lock file {path} is a symbolic link (to {os.readlink(path)}); prunebench does not follow "
                f"links in its lock directory, so that no file can be overwritten through one. Remove the link, "
                f"or set {LOCK_DIR_ENV} to a directory of your own"
            ) from None
        if isinstance(exc, PermissionError) and path.exists():
            fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)  # checked below: someone else's
        else:
            raise TrainingError(
                f"cannot open GPU lock file {path}: {exc.strerror}; set {LOCK_DIR_ENV} to a directory you can write"
            ) from None
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "is not a plain file"
    elif st.st_uid != os.geteuid():
        problem = f"is named for you but belongs to {_user_name(st.st_uid)}, who could delete it while you hold it"
    if problem:
        os.close(fd)
        raise TrainingError(
            f"GPU lock file {path} {problem}; remove it, or set {LOCK_DIR_ENV} to a directory of your own"
        )
    if stat.S_IMODE(st.st_mode) != 0o644:
        os.fchmod(fd, 0o644)  # the umask stripped it: other users' jobs must be able to open it to check it
    return fd


def _leased_by_another_user(lock_dir: Path, gpu_id: str) -> bool:
    """Whether a job of another user holds ``gpu_id``: whether any other user's lock file for it is locked."""
    prefix, mine = f"prunebench-gpu-{gpu_id}.", lock_file_name(gpu_id, os.geteuid())
    with os.scandir(lock_dir) as entries:
        names = [e.name for e in entries if e.name.startswith(prefix) and e.name.endswith(".lock") and e.name != mine]
    for name in names:
        uid, path = name[len(prefix) : -len(".lock")], lock_dir / name
        if not uid.isdigit():
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                continue  # a link: no job locks one (each opens its own file, not following links)
            raise TrainingError(
                f"cannot tell whether another user's job holds GPU {gpu_id}: cannot open {path} ({exc.strerror}); "
                f"ask its owner to chmod 644 it, or set {LOCK_DIR_ENV} to a directory of your own"
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != int(uid):
                continue  # not that user's own plain file: no job of theirs locks it
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
        finally:
            os.close(fd)  # drops the probe's shared lock
    return False


def _try_lock(lock_dir: Path, gpu_id: str) -> int | None:
    """Lease ``gpu_id`` if free: lock this user's file for it, then make sure no other user's is locked.

    Two users' jobs that try at once may both see the other's lock and both back off (to try again at
    their next poll); they never both lease it."""
    fd = _open_own_lock_file(lock_dir / lock_file_name(gpu_id, os.geteuid()))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if _leased_by_another_user(lock_dir, gpu_id):
        os.close(fd)
        return None
    if os.fstat(fd).st_nlink == 1:
        # Who holds it, for a curious user: written over in place, never truncated, and only into a file
        # with no other name (not a hard link to another file of this user's).
        with contextlib.suppress(OSError):  # a full disk: the flock alone is the lease
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
            fd = _try_lock(lock_dir, gpu_id)
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
            fd = _try_lock(lock_dir, gpu_id)
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


driver_version = detect_driver  # the NVIDIA driver's version on this machine (or None)
TORCH_INSTALL = "https://pytorch.org/get-started/locally/"


def _torch_build_advice(driver: str | None) -> str:
    """What to do about it: a torch build for a CUDA this driver runs, or a node with a GPU."""
    if driver is None:
        return (
            "No NVIDIA driver on this node (no nvidia-smi, no /proc/driver/nvidia/version): the job ran on a "
            "node without a GPU; check the partition (slurm_partition in the profile) and that the job asks "
            "for a GPU (the rules' gpu=1 resource)"
        )
    build = driver_major(torch.version.cuda)
    if build is None:
        return "This torch is a CPU-only build: install a CUDA build (./install.sh; docs/cluster.md, 'GPU drivers')"
    try:
        fits = choose(driver)
    except BuildError as exc:
        return str(exc)
    if fits.cuda == build:
        return (
            f"Driver {driver} runs CUDA {torch.version.cuda}: the GPU may be failing, busy in exclusive mode, "
            "or hidden by CUDA_VISIBLE_DEVICES; run nvidia-smi on the node"
        )
    return (
        f"CUDA {build} needs driver >= {MIN_DRIVER.get(build, '?')}: install the torch build for CUDA "
        f"{fits.cuda} in the jobs' environment: ./install.sh --torch {fits.name} (or, under --sdm conda, run "
        f"snakemake with PRUNEBENCH_TORCH={fits.name}), i.e. pip install {' '.join(fits.pip_args())} "
        f"(docs/cluster.md, 'GPU drivers'; the builds: {TORCH_INSTALL})"
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
