"""What pruning methods share: the plan of a state, the choice of masks, RSST's penalty.

A :class:`StatePlan` says which groups are hard-masked while the state trains, which groups the
state's checkpoint keeps, and which groups RSST penalises on the way. Each method is a class with
hooks (``pruning/hooks.py``; the classes by name in ``pruning/registry.py``); the training loop
executes any plan the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from prunebench.pruning.budget import choose_masks  # noqa: F401  (the methods' one way to choose masks)
from prunebench.pruning.groups import GroupSet, Masks, bind_masks, param_masks


@dataclass
class StatePlan:
    """What one prune state does with its groups."""

    density: float  # the schedule's target: fraction of the budget's dense quantity kept (1.0 unpruned)
    train_masks: Masks  # hard masks while training (fixed for the state)
    final_masks: Masks  # masks of the state's checkpoint and of its evaluations
    penalized: Masks  # groups RSST pushes towards zero during the state

    @property
    def has_penalty(self) -> bool:
        return any(bool(m.any()) for m in self.penalized.values())


def alive_fraction(masks: Masks) -> float:
    """Fraction of all groups that the masks keep."""
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total if total else 1.0


def plan_state(
    method: str, model: nn.Module, groupsets: list[GroupSet], prev: Masks, prune_cfg: dict, state: int, **context
) -> StatePlan:
    """The plan of ``state`` (>= 1) for ``method``, from the weights the previous state trained
    (``context``: the experiment's other settings, e.g. ``rsst``, ``seed``, and ``batches``)."""
    from prunebench.pruning.registry import METHODS  # the method classes import this module

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    batches = context.pop("batches", None)
    experiment = {"name": method, "method": method, "seed": 0, "rsst": {}, **context, "prune": prune_cfg}
    return METHODS[method](experiment, state, groupsets).plan(model, prev, batches=batches)


def rsst_lambda(step: int, total_steps: int, schedule: str, g: float, p: float) -> float:
    """RSST's penalty strength at ``step`` (0-based) of a state of ``total_steps`` steps: u = (step+1)/T."""
    u = (step + 1) / total_steps
    if schedule == "exp_custom_exponents":
        return g * (math.exp(u**p) - 1.0) / (math.e - 1.0)
    if schedule == "x":
        return g * u
    if schedule == "x^2":
        return g * u**2
    if schedule == "x^3":
        return g * u**3
    raise ValueError(f"unknown lambda schedule {schedule!r}")


class RSSTPenalty:
    """Adds lambda_t * w to the gradient of every weight of the penalised groups, before the optimizer step.

    ``pen_pmasks`` are 0/1 masks (1: penalised) broadcastable to their parameters, as
    :func:`~prunebench.pruning.groups.param_masks` makes them: the penalty reads no weight-sized mask.
    """

    def __init__(self, model: nn.Module, pen_pmasks: dict[str, torch.Tensor], rsst_cfg: dict, total_steps: int):
        self.names, self.params, self.masks = bind_masks(model, pen_pmasks)
        self.cfg = rsst_cfg
        self.total_steps = total_steps

    @classmethod
    def for_groups(
        cls, model: nn.Module, groupsets: list[GroupSet], penalized: Masks, rsst_cfg: dict, total_steps: int
    ) -> RSSTPenalty:
        """The penalty on the weights of the ``penalized`` groups (True = to be pruned at the state's end)."""
        spared = {k: ~v for k, v in penalized.items()}
        weights = {k: 1 - m for k, m in param_masks(model, groupsets, spared).items()}
        return cls(model, weights, rsst_cfg, total_steps)

    def lam(self, step: int) -> float:
        c = self.cfg
        return rsst_lambda(step, self.total_steps, c["lambda_schedule"], c["reg_granularity_prune"], c["exponents"])

    @torch.no_grad()
    def apply(self, step: int) -> float:
        lam = self.lam(step)
        pairs = [(p.grad, p, m) for p, m in zip(self.params, self.masks) if p.grad is not None]
        if pairs and lam != 0.0:
            grads, ws, ms = (list(t) for t in zip(*pairs))
            # grad += lam * w * m in one pass per parameter (m broadcast), without allocating a w * m copy.
            torch._foreach_addcmul_(grads, ws, ms, value=lam)
        return lam
