"""Which PyTorch build a machine's NVIDIA driver runs, and how to install it (standard library only).

``install.sh`` runs this file before torch exists (``python src/prunebench/torch_build.py``) to pick
the build: PyPI's torch is a CUDA 13 build, which needs a driver >= 580; a CUDA 12 driver (>= 525)
needs PyTorch's cu126 build; a machine without an NVIDIA driver gets PyPI's build (it runs on the
CPU too, and PyPI is the one index every machine here reaches) unless ``cpu`` is asked for. The jobs
name the same table when a node's driver is too old for the torch it has (accel/devices.py).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TORCH, TORCHVISION = "2.14.1", "0.29.1"
TORCH_INDEX = "https://download.pytorch.org/whl"

# The oldest Linux driver each CUDA major version runs on (NVIDIA's minor-version compatibility table)
MIN_DRIVER = {13: 580, 12: 525}


@dataclass(frozen=True)
class Build:
    """A torch build: its name, the CUDA major it needs (None: CPU only), where pip finds it, its DALI."""

    name: str
    cuda: int | None
    index: str | None  # an extra index for pip; None: PyPI's own wheels
    dali_extra: str | None  # prunebench's pip extra with the DALI built for the same CUDA

    def requirements(self) -> list[str]:
        local = "" if self.index is None else f"+{self.name}"
        return [f"torch=={TORCH}{local}", f"torchvision=={TORCHVISION}{local}"]

    def pip_args(self) -> list[str]:
        """What follows `pip install` to install this build."""
        return [*self.requirements(), *(["--extra-index-url", self.index] if self.index else [])]


BUILDS = {
    "cu130": Build("cu130", 13, None, "dali"),  # PyPI's torch 2.14.1 is built for CUDA 13.0
    "cu126": Build("cu126", 12, f"{TORCH_INDEX}/cu126", "dali-cu126"),
    "cpu": Build("cpu", None, f"{TORCH_INDEX}/cpu", None),
}


# The jobs' conda environment file (envs/, for `snakemake --sdm conda`) of each CUDA build
CONDA_ENVS = {"cu130": "prunebench.yaml", "cu126": "prunebench-cu126.yaml"}


def conda_env(name: str) -> str:
    """The conda environment file of the jobs for torch build ``name`` (PRUNEBENCH_TORCH)."""
    name = "cu130" if name == "auto" else name  # install.sh's default, read from the same variable
    if name not in CONDA_ENVS:
        raise BuildError(
            f"PRUNEBENCH_TORCH={name!r}: the jobs' conda environments are for {' and '.join(CONDA_ENVS)} "
            "(the CUDA of the nodes' NVIDIA driver: cu126 for drivers 525-579, cu130 for 580 and newer)"
        )
    return CONDA_ENVS[name]


class BuildError(Exception):
    """No torch build fits (a driver too old for every build), or an unknown build was asked for."""


def driver_major(version: str | None) -> int | None:
    match = re.match(r"\s*(\d+)", version or "")
    return int(match.group(1)) if match else None


def choose(driver: str | None, forced: str = "auto") -> Build:
    """The build for a machine whose NVIDIA driver is ``driver`` (None: no NVIDIA driver), or ``forced``."""
    if forced != "auto":
        if forced not in BUILDS:
            raise BuildError(f"unknown torch build {forced!r}: choose one of auto, {', '.join(BUILDS)}")
        return BUILDS[forced]
    major = driver_major(driver)
    if major is None:  # no GPU here: PyPI's build runs on the CPU as well, and every machine reaches PyPI
        return BUILDS["cu130"]
    for build in BUILDS.values():  # newest CUDA first
        if build.cuda is not None and major >= MIN_DRIVER[build.cuda]:
            return build
    raise BuildError(
        f"NVIDIA driver {driver} is older than any torch {TORCH} build supports (CUDA 12 needs >= "
        f"{MIN_DRIVER[12]}): ask the machine's admins for a newer driver, or install the CPU build with "
        "./install.sh --torch cpu"
    )


def detect_driver() -> str | None:
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
    return match.group(1) if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", default="auto", help=f"auto (by the driver) or one of {', '.join(BUILDS)}")
    parser.add_argument("--driver", help="the driver version to decide for (default: this machine's)")
    parser.add_argument("--print", choices=("pip-args", "name", "dali-extra"), default="pip-args")
    args = parser.parse_args(argv)
    driver = args.driver or detect_driver()
    try:
        build = choose(driver, args.torch)
    except BuildError as exc:
        print(f"torch_build: {exc}", file=sys.stderr)
        return 2
    print(
        f"torch build: {build.name} (NVIDIA driver: {driver or 'none'}; "
        f"{'chosen' if args.torch != 'auto' else 'by the driver'})",
        file=sys.stderr,
    )
    if args.print == "name":
        print(build.name)
    elif args.print == "dali-extra":
        if build.dali_extra is None:
            print(f"torch_build: DALI needs a CUDA build of torch, not {build.name}", file=sys.stderr)
            return 2
        print(build.dali_extra)
    else:
        print(" ".join(build.pip_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
