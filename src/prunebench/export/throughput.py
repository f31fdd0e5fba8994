"""Measured inference throughput (images/s) of a model at given batch sizes."""

from __future__ import annotations

import platform
import statistics
import time
from contextlib import nullcontext

import torch
from torch import nn

import prunebench


def versions() -> dict[str, str]:
    import timm

    return {
        "prunebench": prunebench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
    }


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@torch.inference_mode()
def images_per_second(
    model: nn.Module,
    shape: tuple[int, int, int],
    batch_size: int,
    *,
    device: torch.device | str = "cpu",
    warmup: int = 2,
    repeats: int = 5,
    amp: bool = False,
) -> float:
    """Median images/s of ``repeats`` timed forward passes after ``warmup`` untimed ones."""
    dev = torch.device(device)
    model = model.to(dev).eval()
    x = torch.randn(batch_size, *shape, device=dev)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp and dev.type == "cuda" else nullcontext()
    with autocast:
        for _ in range(warmup):
            model(x)
        _sync(dev)
        times = []
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            model(x)
            _sync(dev)  # CUDA runs asynchronously: stop the clock only when the kernels are done
            times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def measure_throughput(
    models: dict[str, nn.Module],
    shape: tuple[int, int, int],
    batch_sizes: list[int],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 2,
    repeats: int = 5,
    amp: bool = False,
) -> dict:
    """``{"device", "device_type", "dtype", "threads", "versions", name: {str(batch): images/s}}``."""
    dev = torch.device(device)
    out = {
        "device": device_name(dev),
        "device_type": dev.type,
        "dtype": "bfloat16" if amp and dev.type == "cuda" else "float32",
        "threads": torch.get_num_threads(),
        "versions": versions(),
    }
    for name, model in models.items():
        out[name] = {
            str(b): images_per_second(model, shape, b, device=dev, warmup=warmup, repeats=repeats, amp=amp)
            for b in batch_sizes
        }
    return out
