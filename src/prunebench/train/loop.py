"""The epoch loop: one training pass and one evaluation pass, metrics kept on the device."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from prunebench.accel.settings import autocast
from prunebench.data.batches import PAD_LABEL
from prunebench.data.loader import DeviceData
from prunebench.pruning.groups import MaskedParams
from prunebench.pruning.hooks import GradientHook


def fast_optimizer_kwargs(device: torch.device) -> dict:
    """One fused kernel per step on CUDA; elsewhere the multi-tensor (foreach) implementation."""
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def make_optimizer(model: nn.Module, cfg: dict, *, fused: bool | None = None) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW, using the fused/foreach kernels where available.

    ``fused``: None picks by the parameters' device (:func:`fast_optimizer_kwargs`); True asks for the
    fused kernels on any device torch has them for (the launch benchmark counts CUDA's step on the CPU).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if fused is None:
        fast = fast_optimizer_kwargs(params[0].device)
    else:
        fast = {"fused": True} if fused else {"foreach": True}
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(
            params, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"] and cfg["momentum"] > 0,
            weight_decay=cfg["weight_decay"], **fast,
        )  # fmt: skip
    return torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], **fast)


def lr_at(step: int, total_steps: int, warmup_steps: int, cfg: dict) -> float:
    """Learning rate at ``step``: linear warmup to ``lr``, then cosine/linear decay to ``min_lr`` (or constant)."""
    base, low = cfg["lr"], cfg["min_lr"]
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if cfg["lr_schedule"] == "constant" or total_steps <= warmup_steps:
        return base
    frac = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if cfg["lr_schedule"] == "linear":
        return low + (base - low) * (1 - frac)
    return low + (base - low) * 0.5 * (1 + math.cos(math.pi * frac))


def _step_begins() -> None:
    """Tell CUDA graph trees that a new step starts, so the previous replay's outputs may be reused
    (a no-op for eager and non-graphed modules)."""
    torch.compiler.cudagraph_mark_step_begin()


def train_one_epoch(
    model: nn.Module,
    data: DeviceData,
    optimizer: torch.optim.Optimizer,
    cfg: dict,
    *,
    step0: int,
    total_steps: int,
    warmup_steps: int,
    generator: torch.Generator,
    hard: MaskedParams | None = None,
    gradient_hook: GradientHook | None = None,
    logged: dict[str, float] | None = None,
    graphed: bool = False,
    compiled_region: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> dict:
    """Train one epoch; returns loss, accuracy, last lr, images seen, seconds and ``logged``: what the
    method's ``gradient_hook`` (run after every backward pass) returned at the epoch's last step, over
    ``logged`` as given (the values of an epoch that runs no hook; default ``reg_lambda`` 0).

    No step reads a tensor back to the host (loss and accuracy are summed on the device, lr and the
    hook's metrics are Python floats), so the CPU queues steps ahead of the GPU; the epoch ends with one
    sync. ``graphed``: ``model`` replays CUDA graphs (torch.compile's reduce-overhead mode).
    ``compiled_region``: a context entered around ``model(x)`` and ``loss.backward()``, the work that
    torch.compile turns into graphs, e.g. :meth:`~prunebench.accel.launches.LaunchCounter.paused` to
    count the kernels the step launches outside them.
    """
    region = compiled_region or contextlib.nullcontext
    model.train()
    device = data.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    lr = 0.0
    defaults = {"reg_lambda": 0.0} if logged is None else dict(logged)
    hooked: dict[str, float] = {}
    step = step0
    start = time.perf_counter()
    for x, y in data.train_batches(cfg["batch_size"], generator):
        lr = lr_at(step, total_steps, warmup_steps, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if graphed:
            _step_begins()
        with autocast(device, cfg["amp"]):
            with region():
                logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg["label_smoothing"])
        optimizer.zero_grad(set_to_none=True)
        with region():
            loss.backward()
        if hard:
            hard.mask_grads()
        if gradient_hook is not None:
            hooked = gradient_hook(step)
        if cfg["grad_clip"]:
            nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        optimizer.step()
        if hard:
            hard.mask_weights()
        loss_sum += loss.detach().float() * len(y)
        correct += (logits.detach().argmax(-1) == y).sum()
        seen += len(y)
        step += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "train_loss": float(loss_sum) / seen,
        "train_acc": 100.0 * float(correct) / seen,
        "lr": lr,
        "logged": {**defaults, **hooked},
        "images": seen,
        "seconds": seconds,
        "steps": step - step0,
    }


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    data: DeviceData,
    splits: str | tuple[str, ...] = ("val", "test"),
    batch_size: int = 1024,
    amp: bool = True,
    *,
    shard: tuple[int, int] | None = None,
    reduce: Callable[[torch.Tensor], None] | None = None,
    graphed: bool = False,
    pad: bool = True,
    predictions: dict | None = None,
) -> dict[str, tuple[float, float]]:
    """Mean loss and accuracy (%) of every split in ``splits``, evaluated in one pass over them.

    With ``pad`` batches have one fixed shape (the last one padded, the padding counted nowhere), so a
    compiled model compiles once; without, the last batch of a split is its leftover (no wasted work
    for an eager model). ``shard=(rank, world)`` evaluates this process's share only; ``reduce`` then
    sums the per-split ``[loss, correct, images]`` tensor over the processes, in place. One read-back
    at the end, none per batch. ``predictions``: a dict that receives ``"test"``: (predicted classes,
    labels), int64 tensors of this process's share of the test split in its order (from the same pass).
    """
    model.eval()
    names = (splits,) if isinstance(splits, str) else tuple(splits)
    row_of = {name: i for i, name in enumerate(names)}
    sums = torch.zeros(len(names), 3, dtype=torch.float64, device=data.device)
    predicted, labels = [], []
    for x, y, split in data.eval_batches(names, batch_size, shard=shard, pad=pad):
        if graphed:
            _step_begins()
        with autocast(data.device, amp):
            logits = model(x)
        row = sums[row_of[split]]
        pred = logits.argmax(-1)
        row[0] += F.cross_entropy(logits.float(), y, ignore_index=PAD_LABEL, reduction="sum")
        row[1] += (pred == y).sum()
        row[2] += (y != PAD_LABEL).sum()
        if predictions is not None and split == "test":
            predicted.append(pred)
            labels.append(y.clone())  # a graphed or reused batch buffer may be overwritten by the next
    if predictions is not None and labels:
        y_all = torch.cat(labels)
        real = y_all != PAD_LABEL  # padding rows are only at the end of the share: order is kept
        predictions["test"] = (torch.cat(predicted)[real], y_all[real])
    if reduce is not None:
        reduce(sums)
    loss, correct, n = sums.cpu().unbind(1)
    return {name: (float(loss[i] / n[i]), 100.0 * float(correct[i] / n[i])) for i, name in enumerate(names)}


@contextlib.contextmanager
def masked_view(masks: MaskedParams | None):
    """Temporarily apply ``masks`` to their parameters, restoring the weights afterwards."""
    if not masks:
        yield
        return
    saved = [p.detach().clone() for p in masks.params]
    masks.mask_weights()
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(masks.params, saved):
                p.copy_(s)
