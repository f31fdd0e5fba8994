"""What produced a result: the versions recorded in summaries and throughput measurements."""

from __future__ import annotations

import platform

import torch

import prunebench


def versions() -> dict[str, str]:
    import timm

    return {
        "prunebench": prunebench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
    }
