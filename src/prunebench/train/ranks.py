"""Which rank this process is, and what the ranks of a multi-process state share.

A state trained by several processes (``train.gpus`` x ``train.nodes``; launched by
:mod:`prunebench.train.distributed`) runs the same runner in every process: each trains on its equal
shard of every global batch, gradients are averaged by DDP (:func:`wrap`), the method's plan and state
are rank 0's on every rank (:func:`agree`), evaluations are summed over the ranks, and only rank 0
(:func:`is_main`) writes files. In a single process every helper here is the identity.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
import torch.distributed as dist

log = logging.getLogger("prunebench")


def world_of(experiment: dict) -> int:
    """How many processes train a state of ``experiment``: train.gpus x train.nodes."""
    train = experiment["train"]
    return int(train.get("gpus", 1)) * int(train.get("nodes", 1))


# --- which rank this is ---------------------------------------------------------------------------


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes the state's files: rank 0, or the only process."""
    return rank() == 0


def shard() -> tuple[int, int]:
    """(rank, world) for ``DeviceData(shard=...)``."""
    return rank(), world()


def wrap(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``net`` for the training passes: DDP-wrapped in a distributed run (gradients averaged over the
    ranks during backward), else ``net`` itself. Evaluations use ``net`` unwrapped."""
    if not active():
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def _map_tensors(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(
            obj, **{f.name: _map_tensors(getattr(obj, f.name), fn) for f in dataclasses.fields(obj)}
        )
    return obj


def broadcast(obj):
    """Rank 0's ``obj`` on every rank (its tensors arrive on the CPU); ``obj`` itself when not distributed."""
    if not active():
        return obj
    box = [_map_tensors(obj, lambda t: t.detach().cpu()) if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn):
    """``fn()`` run on rank 0 only (it may read and tidy files), its result given to every rank."""
    return broadcast(fn() if is_main() else None)


def agree(plan, method):
    """The plan (masks) every rank continues with: rank 0's, with rank 0's method state loaded into
    ``method`` on the other ranks; returns ``plan`` itself where it already agrees with rank 0's.

    The method's hooks run on every rank with the same weights and batches, so their results agree
    up to the order of floating-point reductions on the device; rank 0's are taken so that ties
    broken differently can never leave the ranks with different masks."""
    if not active():
        return plan
    main_plan, method_state = broadcast((plan, method.state_dict()))
    if is_main():
        return plan
    method.load_state_dict(method_state)
    same = all(
        torch.equal(getattr(main_plan, part)[k], getattr(plan, part)[k].cpu())
        for part in ("train_masks", "final_masks", "penalized")
        for k in main_plan.final_masks
    )
    if same:
        return plan
    log.warning("rank %d: the method's masks differed from rank 0's; rank 0's are used", rank())
    return main_plan


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on any rank (every rank gets the same answer: a decision that starts a
    collective, such as wrapping a module in DDP, must be taken by all ranks or none)."""
    if not active():
        return flag
    box = torch.tensor([int(flag)], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return bool(box.item())


def sum_over_ranks(sums: torch.Tensor) -> None:
    """Sum ``sums`` in place over the ranks (evaluation's per-split counts); nothing when not distributed."""
    if active():
        dist.all_reduce(sums)


def gather_shards(t: torch.Tensor) -> torch.Tensor:
    """The ranks' shares of a split (each evaluated its contiguous share, rank 0 the first), joined in
    rank order, so in the split's order, on the CPU of every rank; ``t`` itself when not distributed."""
    if not active():
        return t.cpu()
    parts: list = [None] * world()
    dist.all_gather_object(parts, t.cpu())
    return torch.cat(parts)


def reduce_train_stats(stats: dict, device: torch.device) -> dict:
    """An epoch's training loss, accuracy and images over all ranks (each saw only its shards)."""
    if not active():
        return stats
    n = stats["images"]
    sums = torch.tensor(
        [stats["train_loss"] * n, stats["train_acc"] * n / 100.0, float(n), stats["seconds"]],
        dtype=torch.float64,
        device=device if device.type == "cuda" else "cpu",
    )
    seconds = sums[3:].clone()
    dist.all_reduce(sums)
    dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    total = float(sums[2])
    return {
        **stats,
        "train_loss": float(sums[0]) / total,
        "train_acc": 100.0 * float(sums[1]) / total,
        "images": int(round(total)),
        "seconds": float(seconds[0]),  # the slowest rank's: the step waits for it
    }
