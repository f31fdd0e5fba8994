"""RSST's penalty: lambda_t * w added to the gradient of the penalised groups' weights after every
backward pass, lambda_t growing over the penalised epochs (:func:`rsst_lambda`).

An :class:`RSSTPenalty` is RSST's gradient hook (:class:`~prunebench.pruning.hooks.GradientHook`):
called with the step, it applies the penalty and returns what it logs, ``{"reg_lambda": lambda_t}``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from prunebench.pruning.groups import GroupSet, Masks, bind_masks, param_masks


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
    :func:`~prunebench.pruning.groups.param_masks` makes them; the penalty holds them expanded to their
    parameters' shape (:func:`~prunebench.pruning.groups.dense_masks`), so that its one
    ``_foreach_addcmul_`` per step is one multi-tensor kernel on CUDA rather than one per parameter.
    """

    def __init__(self, model: nn.Module, pen_pmasks: dict[str, torch.Tensor], rsst_cfg: dict, total_steps: int):
        self.names, self.params, self.masks = bind_masks(model, pen_pmasks, dense=True)
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
            # grad += lam * w * m in one pass, without allocating a w * m copy.
            torch._foreach_addcmul_(grads, ws, ms, value=lam)
        return lam

    def __call__(self, step: int) -> dict[str, float]:
        """The gradient hook: the penalty of ``step``, and its lambda as the metrics rows log it."""
        return {"reg_lambda": self.apply(step)}

    @torch.no_grad()
    def norm(self) -> float:
        """L2 norm of the penalised groups' weights."""
        return math.sqrt(sum(float((p * m).pow(2).sum()) for p, m in zip(self.params, self.masks)))
