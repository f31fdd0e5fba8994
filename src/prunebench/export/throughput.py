"""Measured inference throughput (images/s) of a model at given batch sizes."""

from __future__ import annotations

import platform
import time

import torch
from torch import nn

from prunebench.provenance import versions
from prunebench.train.loop import autocast


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _forward_seconds(model: nn.Module, x: torch.Tensor, dev: torch.device) -> float:
    start = time.perf_counter()
    model(x)
    _sync(dev)  # CUDA runs asynchronously: stop the clock only when the kernels are done
    return time.perf_counter() - start


@torch.inference_mode()
def measure_throughput(
    models: dict[str, nn.Module],
    shape: tuple[int, int, int],
    batch_sizes: list[int],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 2,
    repeats: int = 5,
    amp: bool = False,
    channels_last: bool = False,
) -> dict:
    """Images/s of each model per batch size: ``{"device", ..., name: {str(batch): images/s}}``.

    The models take turns pass by pass (``warmup`` untimed, then ``repeats`` timed passes each), so a
    burst of load from other processes hits all of them alike, and each reports its fastest pass:
    other processes can only ever add time, so the minimum is the least disturbed estimate. Every
    timed pass is kept too, ``"passes": {name: {str(batch): [images/s of pass 1, 2, ...]}}``, so a
    speedup can be shown with its spread (pass i of one model paired with pass i of another).
    """
    dev = torch.device(device)
    cast = autocast(dev, amp)
    out = {
        "device": device_name(dev),
        "device_type": dev.type,
        "dtype": "bfloat16" if amp and dev.type == "cuda" else "float32",
        "threads": torch.get_num_threads(),
        "versions": versions(),
        **{name: {} for name in models},
        "passes": {name: {} for name in models},
    }
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for model in models.values():
        model.to(dev, memory_format=fmt).eval()
    with cast:
        for b in batch_sizes:
            x = torch.randn(b, *shape, device=dev).contiguous(memory_format=fmt)
            times: dict[str, list[float]] = {name: [] for name in models}
            for i in range(warmup + max(1, repeats)):
                for name, model in models.items():
                    seconds = _forward_seconds(model, x, dev)
                    if i >= warmup:
                        times[name].append(seconds)
            for name in models:
                out[name][str(b)] = b / min(times[name])
                out["passes"][name][str(b)] = [b / t for t in times[name]]
    return out
