"""Measured inference throughput (images/s) of a model at given batch sizes, eager and compiled."""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable

import torch
from torch import nn

from prunebench.provenance import versions
from prunebench.train.loop import autocast, compiles

log = logging.getLogger("prunebench")

COMPILE_CHOICES = ("auto", True, False)
# What "compiled" means per device type: on CUDA, Inductor kernels replayed as CUDA graphs (no launch
# overhead left); on the CPU, Inductor's C++ kernels.
COMPILE_HOW = {"cuda": "torch.compile(mode='reduce-overhead')", "cpu": "torch.compile()"}


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def compile_enabled(setting, dev: torch.device | str) -> bool:
    """``measure.compile``: ``"auto"`` times compiled inference on CUDA only (on the CPU the compile
    costs minutes per state for little), ``True``/``False`` on every device / never."""
    if not (setting == "auto" or isinstance(setting, bool)):
        raise ValueError(f"measure.compile is {setting!r}; use auto, true or false")
    return compiles(setting, torch.device(dev))  # the rule train.compile follows


def allow_recompiles(limit: int = 64) -> None:
    """Let dynamo keep ``limit`` graphs per code object. Every timm ViT runs the same ``forward``, so
    dense and compact models at 3 batch sizes (and a training graph) share dynamo's default 8 entries;
    past them it silently runs eager, and "compiled" figures would be eager ones."""
    import torch._dynamo

    for key in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, max(getattr(torch._dynamo.config, key), limit))


def compile_for_inference(model: nn.Module, dev: torch.device) -> nn.Module:
    """``model`` compiled at static shapes (one graph per batch size), graph-replayed on CUDA."""
    allow_recompiles()
    if dev.type == "cuda":
        return torch.compile(model, mode="reduce-overhead", dynamic=False)
    return torch.compile(model, dynamic=False)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _forward_seconds(model: nn.Module, x: torch.Tensor, dev: torch.device, graphs: bool = False) -> float:
    if graphs:  # a new inference step for CUDA graph trees: earlier outputs may be overwritten
        torch.compiler.cudagraph_mark_step_begin()
    start = time.perf_counter()
    model(x)
    _sync(dev)  # CUDA runs asynchronously: stop the clock only when the kernels are done
    return time.perf_counter() - start


def _time_models(
    models: dict[str, nn.Module], shape, batch_sizes, dev, fmt, warmup: int, repeats: int, graphs: bool = False
) -> tuple[dict, dict]:
    """Fastest-pass images/s and every timed pass, per model and batch size (models take turns)."""
    best: dict[str, dict] = {name: {} for name in models}
    passes: dict[str, dict] = {name: {} for name in models}
    for b in batch_sizes:
        x = torch.randn(b, *shape, device=dev).contiguous(memory_format=fmt)
        times: dict[str, list[float]] = {name: [] for name in models}
        for i in range(warmup + max(1, repeats)):
            for name, model in models.items():
                seconds = _forward_seconds(model, x, dev, graphs)
                if i >= warmup:
                    times[name].append(seconds)
        for name in models:
            best[name][str(b)] = b / min(times[name])
            passes[name][str(b)] = [b / t for t in times[name]]
    return best, passes


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
    compile: bool | str = False,
    compiler: Callable[[nn.Module, torch.device], nn.Module] | None = None,
) -> dict:
    """Images/s of each model per batch size: ``{"device", ..., "mode": "eager", name: {str(batch): images/s}}``.

    The models take turns pass by pass (``warmup`` untimed, then ``repeats`` timed passes each), so a
    burst of load from other processes hits all of them alike, and each reports its fastest pass:
    other processes can only ever add time, so the minimum is the least disturbed estimate. Every
    timed pass is kept too, ``"passes": {name: {str(batch): [images/s of pass 1, 2, ...]}}``, so a
    speedup can be shown with its spread (pass i of one model paired with pass i of another).

    With ``compile`` (True, or "auto": on CUDA only, see :func:`compile_enabled`) the models are also
    timed compiled (``compiler``, default :func:`compile_for_inference`), after at least 3 warm-up
    passes per batch size (compilation, CUDA graph recording): ``"compiled": {"mode": "compiled",
    "how", "compile_seconds", name: {...}, "passes": {...}}``. With "auto" a compile that fails is
    logged and recorded as ``"compiled": {"mode": "compiled", "error": ...}``; with True it raises.
    """
    dev = torch.device(device)
    want_compiled = compile_enabled(compile, dev)
    out = {
        "device": device_name(dev),
        "device_type": dev.type,
        "dtype": "bfloat16" if amp and dev.type == "cuda" else "float32",
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "mode": "eager",
        **{name: {} for name in models},
        "passes": {name: {} for name in models},
    }
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for model in models.values():
        model.to(dev, memory_format=fmt).eval()
    with torch.inference_mode(), autocast(dev, amp):
        best, passes = _time_models(models, shape, batch_sizes, dev, fmt, warmup, repeats)
    out.update(best)
    out["passes"] = passes
    if want_compiled:
        out["compiled"] = _measure_compiled(
            models, shape, batch_sizes, dev, fmt, warmup, repeats, amp, compiler, strict=compile is True
        )
    return out


def _measure_compiled(models, shape, batch_sizes, dev, fmt, warmup, repeats, amp, compiler, *, strict) -> dict:
    compiler = compiler or compile_for_inference
    info: dict = {"mode": "compiled", "how": COMPILE_HOW.get(dev.type, "torch.compile()")}
    graphs = compiler is compile_for_inference and dev.type == "cuda"
    try:
        compiled = {name: compiler(model, dev) for name, model in models.items()}
        # compilation happens at the first call per batch size: those first calls, timed alone
        with torch.no_grad(), autocast(dev, amp):
            seconds = {}
            for name, model in compiled.items():
                start = time.perf_counter()
                for b in batch_sizes:
                    x = torch.randn(b, *shape, device=dev).contiguous(memory_format=fmt)
                    _forward_seconds(model, x, dev, graphs)
                seconds[name] = time.perf_counter() - start
            best, passes = _time_models(compiled, shape, batch_sizes, dev, fmt, max(3, warmup), repeats, graphs)
    except Exception as exc:  # noqa: BLE001 (any compiler failure: the eager figures still stand)
        if strict:
            raise RuntimeError(
                f"compiled timing failed on {device_name(dev)}: {type(exc).__name__}: {exc}; set "
                f"measure.compile: auto or false to time eager only"
            ) from exc
        log.warning("compiled timing failed, eager figures only: %s: %s", type(exc).__name__, exc)
        info["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return info
    info["compile_seconds"] = seconds
    info.update(best)
    info["passes"] = passes
    return info
