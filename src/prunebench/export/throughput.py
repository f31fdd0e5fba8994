"""Measured inference throughput (images/s) of models at given batch sizes, eager and compiled.

Timed with ``torch.utils.benchmark`` (``Timer.blocked_autorange``: its own warm-up and block sizing,
CUDA synchronised around every block) in *paired rounds*: each round times every model once, the
order alternating from round to round, so that drift and other processes' load hit all of them alike.
A speedup is the median over rounds of the paired ratio, reported with its spread over the rounds.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from prunebench.accel.settings import allow_recompiles, autocast, compiles
from prunebench.provenance import versions

log = logging.getLogger("prunebench")

COMPILE_CHOICES = ("auto", True, False)
# What "compiled" means per device type: on CUDA, Inductor kernels replayed as CUDA graphs (no launch
# overhead left); on the CPU, Inductor's C++ kernels.
COMPILE_HOW = {"cuda": "torch.compile(mode='reduce-overhead')", "cpu": "torch.compile()"}
TIMER = "torch.utils.benchmark.Timer.blocked_autorange, paired rounds in alternating order"
# Fewest paired rounds: a speedup is outside the noise only when every round agrees on its direction,
# which two identical models do by chance with probability 2 / 2**rounds (3% at 6 rounds, a sign test).
MIN_ROUNDS = 6
ROUND_SECONDS = 0.2  # blocked_autorange's min_run_time: the least time each model runs per round


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


def compile_for_inference(model: nn.Module, dev: torch.device) -> nn.Module:
    """``model`` compiled at static shapes (one graph per batch size), graph-replayed on CUDA."""
    allow_recompiles()
    if dev.type == "cuda":
        return torch.compile(model, mode="reduce-overhead", dynamic=False)
    return torch.compile(model, dynamic=False)


def speedup_spread(dense_seconds: list[float], compact_seconds: list[float]) -> dict:
    """The speedup of compact over dense from paired rounds (round i of one with round i of the
    other): the median of the per-round ratios, their quartiles and range, and ``within_noise``
    when that range covers 1.0 (some rounds found the compact model no faster, or no slower)."""
    ratios = np.asarray(dense_seconds, dtype=float) / np.asarray(compact_seconds, dtype=float)
    lo, q1, median, q3, hi = np.percentile(ratios, [0, 25, 50, 75, 100])
    return {
        "median": float(median), "q1": float(q1), "q3": float(q3), "min": float(lo), "max": float(hi),
        "rounds": len(ratios), "within_noise": bool(lo <= 1.0 <= hi),
    }  # fmt: skip


def speedup_text(s: dict) -> str:
    """``"1.93x (1.85-2.01 over 10 rounds)"``, with ", within noise" where the range covers 1.0."""
    noise = ", within noise" if s["within_noise"] else ""
    return f"{s['median']:.2f}x ({s['min']:.2f}-{s['max']:.2f} over {s['rounds']} rounds{noise})"


def _timer(model: nn.Module, x: torch.Tensor, graphs: bool):
    """A torch.utils.benchmark Timer of one model's forward pass (imported here: importing it warns about
    CUDA_HOME through torch.utils.cpp_extension, a warning about building extensions, irrelevant to timing,
    which every training job would otherwise print, since jobs import this module)."""
    cpp_log = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_log.level
    cpp_log.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        cpp_log.setLevel(level)
    # every model through the same statement: nothing but the model differs between the two sides
    stmt = "mark_step(); model(x)" if graphs else "model(x)"
    return benchmark.Timer(
        stmt=stmt,
        globals={"model": model, "x": x, "mark_step": torch.compiler.cudagraph_mark_step_begin},
        num_threads=torch.get_num_threads(),  # Timer's default is 1 thread: time with the job's threads
    )


def _time_models(
    models: dict[str, nn.Module],
    shape,
    batch_sizes,
    dev,
    fmt,
    warmup: int,
    rounds: int,
    round_seconds: float,
    graphs: bool = False,
) -> dict:
    """Per batch size, ``warmup`` untimed calls of each model, then ``rounds`` paired rounds: per model
    and round the median seconds per call of one ``blocked_autorange``. ``{name: {str(b): [seconds]}}``."""
    seconds: dict[str, dict] = {name: {} for name in models}
    names = list(models)
    for b in batch_sizes:
        x = torch.randn(b, *shape, device=dev).contiguous(memory_format=fmt)  # one input, for every model
        timers = {name: _timer(model, x, graphs) for name, model in models.items()}
        for _ in range(warmup):
            for timer in timers.values():
                timer.timeit(1)
        for name in names:
            seconds[name][str(b)] = []
        for r in range(rounds):
            for name in names if r % 2 == 0 else reversed(names):
                seconds[name][str(b)].append(timers[name].blocked_autorange(min_run_time=round_seconds).median)
    return seconds


def _figures(seconds: dict, rounds: int) -> dict:
    """images/s (median over rounds), every round's images/s, and the speedup of compact over dense."""
    out: dict = {name: {} for name in seconds}
    out["passes"] = {name: {} for name in seconds}  # "passes": the name readers know for per-round figures
    for name, per_batch in seconds.items():
        for b, secs in per_batch.items():
            out[name][b] = int(b) / float(np.median(secs))
            out["passes"][name][b] = [int(b) / s for s in secs]
    if {"dense", "compact"} <= set(seconds):
        out["speedup"] = {b: speedup_spread(seconds["dense"][b], seconds["compact"][b]) for b in seconds["dense"]}
    out["rounds"] = rounds
    return out


def measure_throughput(
    models: dict[str, nn.Module],
    shape: tuple[int, int, int],
    batch_sizes: list[int],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 2,
    repeats: int = 10,
    amp: bool = False,
    channels_last: bool = False,
    compile: bool | str = False,
    compiler: Callable[[nn.Module, torch.device], nn.Module] | None = None,
    round_seconds: float = ROUND_SECONDS,
    min_rounds: int = MIN_ROUNDS,
) -> dict:
    """Images/s of each model per batch size: ``{"device", ..., "mode": "eager", name: {str(batch): images/s}}``.

    Per batch size, ``warmup`` untimed calls of each model, then ``max(repeats, min_rounds)`` paired
    rounds: in each, every model is timed by one ``blocked_autorange`` (at least ``round_seconds``,
    the median seconds per call of its blocks), in an order that alternates from round to round. A
    model's images/s is its median over rounds; ``"passes": {name: {str(batch): [images/s of round 1,
    2, ...]}}`` keeps every round. With models named dense and compact, ``"speedup": {str(batch):
    {"median", "q1", "q3", "min", "max", "rounds", "within_noise"}}`` is compact over dense, round by
    round (:func:`speedup_spread`). Every model runs the same way: one input tensor in one memory
    format, eval mode, inference mode, the same autocast, the same timed statement.

    With ``compile`` (True, or "auto": on CUDA only, see :func:`compile_enabled`) the models are also
    timed compiled (``compiler``, default :func:`compile_for_inference`), after at least 3 warm-up
    calls per batch size (compilation, CUDA graph recording): ``"compiled": {"mode": "compiled",
    "how", "compile_seconds", name: {...}, "passes": {...}, "speedup": {...}}``. With "auto" a compile
    that fails is logged and recorded as ``"compiled": {"mode": "compiled", "error": ...}``; with
    True it raises.
    """
    dev = torch.device(device)
    want_compiled = compile_enabled(compile, dev)
    rounds = max(int(repeats), int(min_rounds))
    out = {
        "device": device_name(dev),
        "device_type": dev.type,
        "dtype": "bfloat16" if amp and dev.type == "cuda" else "float32",
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "mode": "eager",
        "timer": TIMER,
        "round_seconds": round_seconds,
    }
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for model in models.values():
        model.to(dev, memory_format=fmt).eval()
    with torch.inference_mode(), autocast(dev, amp):
        seconds = _time_models(models, shape, batch_sizes, dev, fmt, warmup, rounds, round_seconds)
    out.update(_figures(seconds, rounds))
    if want_compiled:
        out["compiled"] = _measure_compiled(
            models, shape, batch_sizes, dev, fmt, warmup, rounds, amp, compiler, strict=compile is True,
            round_seconds=round_seconds,
        )  # fmt: skip
    return out


def _measure_compiled(
    models, shape, batch_sizes, dev, fmt, warmup, rounds, amp, compiler, *, strict, round_seconds=ROUND_SECONDS
) -> dict:
    compiler = compiler or compile_for_inference
    info: dict = {"mode": "compiled", "how": COMPILE_HOW.get(dev.type, "torch.compile()")}
    graphs = compiler is compile_for_inference and dev.type == "cuda"
    try:
        compiled = {name: compiler(model, dev) for name, model in models.items()}
        # compilation happens at the first call per batch size: those first calls, timed alone
        with torch.no_grad(), autocast(dev, amp):
            compile_seconds = {}
            for name, model in compiled.items():
                start = time.perf_counter()
                for b in batch_sizes:
                    x = torch.randn(b, *shape, device=dev).contiguous(memory_format=fmt)
                    if graphs:
                        torch.compiler.cudagraph_mark_step_begin()
                    model(x)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                compile_seconds[name] = time.perf_counter() - start
            seconds = _time_models(
                compiled, shape, batch_sizes, dev, fmt, max(3, warmup), rounds, round_seconds, graphs
            )
    except Exception as exc:  # noqa: BLE001 (any compiler failure: the eager figures still stand)
        if strict:
            raise RuntimeError(
                f"compiled timing failed on {device_name(dev)}: {type(exc).__name__}: {exc}; set "
                f"measure.compile: auto or false to time eager only"
            ) from exc
        log.warning("compiled timing failed, eager figures only: %s: %s", type(exc).__name__, exc)
        info["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return info
    info["compile_seconds"] = compile_seconds
    info.update(_figures(seconds, rounds))
    return info
