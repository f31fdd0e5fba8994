"""Refill and the two baselines that prune like it: random groups, and one-shot to the final budget.

All three choose a hard mask at the start of a state, on the weights the previous state trained,
and train the state with it fixed (gradients of masked weights are zero).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prunebench.pruning.hooks import PruningMethod
from prunebench.pruning.plan import StatePlan, keep_plan

if TYPE_CHECKING:
    import torch
    from torch import nn

    from prunebench.pruning.groups import Masks


def _no_penalty(masks: Masks) -> Masks:
    import torch

    return {k: torch.zeros_like(v) for k, v in masks.items()}


class Refill(PruningMethod):
    """Keep the most important live groups for the state's budget; train with the rest masked."""

    name = "refill"
    chooses_masks = True
    rounds_widths = True

    def rng(self) -> torch.Generator | None:
        """Random scores instead of importances (the random baseline); None ranks by importance."""
        return None

    def choose(self, model: nn.Module, prev: Masks, state: int, batches=None) -> tuple[float, Masks]:
        from prunebench.pruning.budget import choose_masks

        return choose_masks(
            model, self.groupsets, prev, self.prune_cfg, state,
            batches=batches, rng=self.rng(), img_size=self.experiment.get("model", {}).get("img_size"),
        )  # fmt: skip

    def plan_pruned(self, model: nn.Module, prev: Masks, *, batches=None) -> StatePlan:
        target, keep = self.choose(model, prev, self.state, batches)
        return StatePlan(target, keep, keep, _no_penalty(keep))


class RandomPruning(Refill):
    """The random baseline: Refill's schedule, budget and training, with random groups.

    The scores come from a generator seeded by the experiment's seed and the state, so a rerun
    picks the same groups."""

    name = "random"

    @property
    def needs_batches(self) -> bool:
        return False

    def rng(self) -> torch.Generator:
        import torch

        from prunebench.seeding import state_seed

        return torch.Generator().manual_seed(state_seed(self.experiment["seed"], self.state))


class OneShot(Refill):
    """The one-shot baseline: prune to the FINAL budget before state 1 (on the dense model state 0
    trained), then train every later state at that cost; the same total epochs as the others."""

    name = "oneshot"

    def plan_pruned(self, model: nn.Module, prev: Masks, *, batches=None) -> StatePlan:
        last = self.prune_cfg["states"] - 1
        if self.state > 1:
            return keep_plan(prev, self.schedule_target(last))
        target, keep = self.choose(model, prev, last, batches)
        return StatePlan(target, keep, keep, _no_penalty(keep))

    @property
    def needs_batches(self) -> bool:
        return self.state == 1 and super().needs_batches

    def rewinds(self) -> bool:
        return self.state == 1 and super().rewinds()
