"""What produced a result: versions, source commit, host, device, job and time, recorded in summaries.

Every probe here is best effort: a missing ``git`` or ``nvidia-smi``, a source tree that is not a
git checkout, a job outside SLURM give ``None`` for that field, never an error, so that recording
provenance can never fail a finished state.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

import prunebench
from prunebench.config import training_hash

# SLURM's variables for the job, its array and the node (recorded when set)
SLURM_VARS = {
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "node": "SLURMD_NODENAME",
    "partition": "SLURM_JOB_PARTITION",
}
_PROBE_TIMEOUT = 10  # seconds for one git / nvidia-smi call


def versions() -> dict[str, str]:
    import timm

    return {
        "prunebench": prunebench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
    }


def package_versions() -> dict[str, str | None]:
    """Versions of the packages a result depends on, and the CUDA / cuDNN builds torch uses."""
    import numpy
    import torchvision

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        **versions(),
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        **{name: _installed(name) for name in ("scikit-learn", "pillow")},  # the demo's digits; JPEG decoding
        "cuda": torch.version.cuda,
        "cudnn": str(cudnn) if cudnn else None,
    }


def _installed(distribution: str) -> str | None:
    """The installed version of a package, read from its metadata without importing it; None if absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def now_iso() -> str:
    """The current time, ISO 8601 in UTC to the second (``2026-12-01T07:02:41Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    """stdout of a command, or None when it is missing, fails or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_PROBE_TIMEOUT, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def source_info() -> dict:
    """The prunebench source that ran: its git commit and whether tracked files were modified, when
    the package is imported from a git checkout; else (an installed package) its version only."""
    root = Path(prunebench.__file__).resolve().parent.parent.parent  # src/prunebench -> the checkout
    info = {"version": prunebench.__version__, "git_commit": None, "git_dirty": None}
    if not (root / ".git").exists():  # a directory, or a file in a git worktree
        return {**info, "location": "installed package"}
    commit = _run(["git", "rev-parse", "HEAD"], cwd=root)
    if commit:
        status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root)
        info.update(git_commit=commit, git_dirty=None if status is None else bool(status))
    return {**info, "location": str(root)}


def _driver_version() -> str | None:
    # every GPU of a node runs the same driver, so the first line answers for the device in use
    out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return out.splitlines()[0].strip() if out else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_info(dev: torch.device) -> dict:
    """The device a state ran on: its name, and for a GPU the driver, capability and memory."""
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        return {
            "type": "cuda",
            "name": props.name,
            "driver": _driver_version(),
            "capability": f"{props.major}.{props.minor}",
            "memory_mb": round(props.total_memory / 2**20),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
    # The instruction set ATen's CPU kernels use (AVX512, AVX2...): it changes floating-point rounding,
    # so the same seed gives bit-identical runs on one CPU type and somewhat different numbers on another.
    return {
        "type": dev.type, "name": _cpu_name(), "driver": None, "cpu_count": os.cpu_count(),
        "capability": torch.backends.cpu.get_cpu_capability(),
    }  # fmt: skip


def slurm_info() -> dict[str, str | None]:
    """SLURM's job id (and array job / task ids, node, partition) when the state ran in a SLURM job."""
    return {key: os.environ.get(var) for key, var in SLURM_VARS.items()}


def reset_peak_memory(dev: torch.device) -> None:
    """Start counting the GPU's peak memory from here (one process may run several states)."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_memory(dev: torch.device) -> dict[str, float | None]:
    """Peak GPU memory allocated by tensors (and reserved by the allocator) since
    :func:`reset_peak_memory`, and the peak resident memory of this process, in MB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    gpu = reserved = None
    if dev.type == "cuda":
        gpu = torch.cuda.max_memory_allocated(dev) / 2**20
        reserved = torch.cuda.max_memory_reserved(dev) / 2**20
    return {"peak_gpu_mb": gpu, "peak_gpu_reserved_mb": reserved, "peak_host_mb": rss_mb}


def provenance(dev: torch.device, experiment: dict, *, started_at: str, process_started_at: str) -> dict:
    """Everything a summary records about how it was produced (its ``provenance`` field): the state ran
    ``experiment`` (the resolved experiment, stored whole) on ``dev``."""
    return {
        "source": source_info(),
        "config_hash": training_hash(experiment),  # the summary's top-level config_hash, the same function
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": device_info(dev),
        "packages": package_versions(),
        "slurm": slurm_info(),
        "started_at": started_at,  # the state's first attempt
        "process_started_at": process_started_at,  # this attempt (later when the state was resumed)
        "finished_at": now_iso(),
        **peak_memory(dev),
        "experiment": experiment,
    }
