"""RSST: choose the groups to prune as Refill would, penalise them while the state trains, then mask.

The groups R_k stay alive at the start of state k; after every backward pass lambda_t * w is added
to the gradient of their weights (:class:`~prunebench.pruning.methods.RSSTPenalty`), lambda growing
to ``reg_granularity_prune`` by the end of the state's ``rsst.peak_at`` share of its epochs. At the
end of that epoch the hard mask is applied, and the rest of the state (and any ``finetune_epochs``)
trains under it without penalty. Evaluations during the state are of the masked model; just
before the mask the unmasked model is evaluated too, so the damage the mask does is measured.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from prunebench.pruning.groups import Masks
from prunebench.pruning.hooks import StateRun
from prunebench.pruning.methods import RSSTPenalty, StatePlan
from prunebench.pruning.refill import Refill

log = logging.getLogger("prunebench")


class RSST(Refill):
    """RSST's hooks: the penalty after backward, the hard mask at the end of the mask epoch."""

    name = "rsst"

    def __init__(self, experiment, state, groupsets):
        super().__init__(experiment, state, groupsets)
        self.cfg = experiment["rsst"]
        self.penalty: RSSTPenalty | None = None
        self._weights: RSSTPenalty | None = None  # the penalised weights, also after the mask
        self.start_norm: float | None = None
        self.at_mask: dict | None = None

    def plan_pruned(self, model: nn.Module, prev: Masks, *, batches=None) -> StatePlan:
        target, keep = self.choose(model, prev, self.state, batches)
        return StatePlan(target, prev, keep, {k: prev[k] & ~keep[k] for k in prev})

    def mask_epoch(self) -> int:
        """The last epoch trained with the penalty: by its end lambda reaches g and the mask applies."""
        reg = self.reg_epochs()
        return max(1, min(reg, math.ceil(self.cfg.get("peak_at", 1.0) * reg - 1e-9)))

    def start(self, run: StateRun, epochs_done: int) -> None:
        if not run.plan.has_penalty:
            return
        steps = self.mask_epoch() * run.steps_per_epoch
        self._weights = RSSTPenalty.for_groups(run.model, self.groupsets, run.plan.penalized, self.cfg, steps)
        if epochs_done == 0:
            self.start_norm = self.penalized_norm()
        self.penalty = self._weights if epochs_done < self.mask_epoch() else None

    @torch.no_grad()
    def penalized_norm(self) -> float:
        """L2 norm of the penalised groups' weights."""
        w = self._weights
        return math.sqrt(sum(float((p * m).pow(2).sum()) for p, m in zip(w.params, w.masks)))

    def gradient_hook(self) -> RSSTPenalty | None:
        return self.penalty

    def epoch_end(self, run: StateRun, epoch: int) -> dict:
        if self.penalty is None:
            return {}
        ratio = self.penalized_norm() / self.start_norm if self.start_norm else None
        extra = {"penalized_norm_ratio": ratio}
        if epoch == self.mask_epoch():
            unmasked = run.evaluate()
            self.at_mask = {"unmasked": unmasked, "penalized_norm_ratio": ratio}
            plan = run.plan
            run.set_plan(StatePlan(plan.density, plan.final_masks, plan.final_masks, plan.penalized))
            self.penalty = None
            log.info(
                "state %d epoch %d: before the hard mask val %.2f test %.2f, penalised groups at %.3g of "
                "their norm at the state's start; the epoch's evaluation is of the masked model",
                self.state, epoch, unmasked["val_acc"], unmasked["test_acc"], ratio if ratio is not None else float("nan"),
            )  # fmt: skip
            extra.update(unmasked_val_acc=unmasked["val_acc"], unmasked_test_acc=unmasked["test_acc"])
        return extra

    def evaluates(self, epoch: int) -> bool:
        return epoch == self.mask_epoch()  # the masked model's accuracy at the mask, beside the unmasked one

    def summary(self, run: StateRun) -> dict:
        if self.at_mask is None:
            return {}
        row = next(r for r in run.rows if r["epoch"] == self.mask_epoch())
        return {
            "rsst": {
                "mask_epoch": self.mask_epoch(),
                "unmasked": self.at_mask["unmasked"],
                "masked": {"val_acc": row["val_acc"], "test_acc": row["test_acc"]},
                "penalized_norm_ratio": self.at_mask["penalized_norm_ratio"],
            }
        }

    def state_dict(self) -> dict:
        return {"start_norm": self.start_norm, "at_mask": self.at_mask}

    def load_state_dict(self, state: dict) -> None:
        self.start_norm, self.at_mask = state.get("start_norm"), state.get("at_mask")
