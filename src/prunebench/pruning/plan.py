"""The plan of a prune state: which groups are masked while it trains, which ones its checkpoint
keeps, and which ones a penalty pushes towards zero on the way.

A :class:`StatePlan` is what a method's :meth:`~prunebench.pruning.hooks.PruningMethod.plan` returns;
the training loop executes any plan the same way. Nothing here imports torch at import time (the
method classes, which the config reads, import this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prunebench.pruning.groups import Masks


@dataclass
class StatePlan:
    """What one prune state does with its groups."""

    density: float  # the schedule's target: fraction of the budget's dense quantity kept (1.0 unpruned)
    train_masks: Masks  # hard masks while training (fixed for the state)
    final_masks: Masks  # masks of the state's checkpoint and of its evaluations
    penalized: Masks  # groups a penalty (RSST's) pushes towards zero during the state

    @property
    def has_penalty(self) -> bool:
        return any(bool(m.any()) for m in self.penalized.values())


def alive_fraction(masks: Masks) -> float:
    """Fraction of all groups that the masks keep."""
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total if total else 1.0


def keep_plan(prev: Masks, target: float) -> StatePlan:
    """A state that trains on with the masks it inherits."""
    import torch

    none = {k: torch.zeros_like(v) for k, v in prev.items()}
    return StatePlan(target, prev, prev, none)
