"""RSST: choose the groups to prune as Refill would, penalise them while the state trains, then mask.

The groups R_k stay alive at the start of state k; after every backward pass lambda_t * w is added
to the gradient of their weights (:class:`~prunebench.pruning.penalty.RSSTPenalty`, the method's
gradient hook, which logs lambda_t as ``reg_lambda``), lambda growing to ``reg_granularity_prune``
by the end of the state's ``rsst.peak_at`` share of its epochs. At the end of that epoch the hard
mask is applied, and the rest of the state (and any ``finetune_epochs``) trains under it without
penalty. Evaluations during the state are of the masked model; just before the mask the unmasked
model is evaluated too, so the damage the mask does is measured.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from prunebench.pruning.hooks import Column, ReportSection, StateRun, in_run_order
from prunebench.pruning.plan import StatePlan
from prunebench.pruning.refill import Refill

if TYPE_CHECKING:
    from torch import nn

    from prunebench.pruning.groups import Masks
    from prunebench.pruning.penalty import RSSTPenalty

log = logging.getLogger("prunebench")

SETTINGS = r"""
    type: object
    additionalProperties: false
    # what the other methods' hashes saw here before x-method: the defaults (less the neutral ones)
    x-hashed-as: {lambda_schedule: exp_custom_exponents, reg_granularity_prune: 1, exponents: 4}
    description: RSST's soft regularisation of the groups it will prune at the end of a state.
    properties:
      lambda_schedule:
        enum: [exp_custom_exponents, x, x^2, x^3]
        default: exp_custom_exponents
        description: "Growth of lambda over the whole state, u=(t+1)/T: g*(e^(u^p)-1)/(e-1), g*u, g*u^2 or g*u^3."
      reg_granularity_prune:
        type: number
        minimum: 0
        maximum: 1000000
        default: 1.0
        description: g, the final value of lambda. At most 10^6.
      exponents:
        type: number
        exclusiveMinimum: 0
        maximum: 100
        default: 4
        description: p of exp_custom_exponents. At most 100.
      peak_at:
        type: number
        exclusiveMinimum: 0
        maximum: 1
        default: 1.0
        x-neutral-default: true # added later; the default reproduces the earlier behaviour
        description: >-
          Fraction of a state's train.epochs by whose end lambda reaches g (rounded up to whole
          epochs); the hard mask is applied then and the remaining epochs train under it without
          penalty. 1.0 penalises the whole state and masks at its end. Above 0, at most 1.
      finetune_epochs:
        type: integer
        minimum: 0
        maximum: 10000
        default: 0
        x-neutral-default: true # added later; the default reproduces the earlier behaviour
        description: >-
          Epochs of masked fine-tuning after the train.epochs of every pruned state: lambda reaches
          g at the end of train.epochs, the hard mask is applied, and training goes on with it
          (no penalty) on the same learning-rate schedule, which spans both parts. At most 10000.
"""


def mask_damage(states, epochs):
    """Per RSST state with the ``rsst`` summary field: accuracy just before and just after the hard
    mask, the damage (test points lost to the mask) and the penalised groups' remaining norm."""
    if "rsst_masked_test_acc" not in states:
        return None
    part = states[states["rsst_masked_test_acc"].notna()].copy()
    part["damage"] = part["rsst_unmasked_test_acc"] - part["rsst_masked_test_acc"]
    return in_run_order(part)


DAMAGE = ReportSection(
    title="RSST: damage of the hard mask",
    text=(
        "Accuracy of the unmasked model at the end of the penalised epochs (just before the hard mask) and\n"
        "of the masked model just after it; the damage is the test accuracy the mask costs. The norm ratio\n"
        "is the L2 norm of the penalised groups' weights at the mask relative to the state's start (how far\n"
        "the penalty had shrunk them)."
    ),
    columns=(
        Column("mask epoch", "rsst_mask_epoch", "integer"),
        Column("unmasked val", "rsst_unmasked_val_acc"),
        Column("unmasked test", "rsst_unmasked_test_acc"),
        Column("masked val", "rsst_masked_val_acc"),
        Column("masked test", "rsst_masked_test_acc"),
        Column("damage (test points)", "damage"),
        Column("penalised norm ratio", "rsst_penalized_norm_ratio", digits=4),
    ),
    rows=mask_damage,
)


class RSST(Refill):
    """RSST's hooks: the penalty after backward, the hard mask at the end of the mask epoch."""

    name = "rsst"
    # the penalty binds the trained module's parameters (run.trained_model: the slim model of the
    # training masks, with the penalised groups alive); the hard mask's set_plan re-slims the state
    trains_slim = True
    settings = SETTINGS
    settings_after = "prune"
    # the ``rsst`` summary field (CONTRACTS): accuracy of the unmasked and masked model at the hard mask
    summary_columns = {
        "rsst_mask_epoch": ("rsst", "mask_epoch"),
        "rsst_unmasked_val_acc": ("rsst", "unmasked", "val_acc"),
        "rsst_unmasked_test_acc": ("rsst", "unmasked", "test_acc"),
        "rsst_masked_val_acc": ("rsst", "masked", "val_acc"),
        "rsst_masked_test_acc": ("rsst", "masked", "test_acc"),
        "rsst_penalized_norm_ratio": ("rsst", "penalized_norm_ratio"),
    }
    report_sections = (DAMAGE,)

    @classmethod
    def finetune_epochs(cls, experiment: dict, state: int) -> int:
        """Epochs of masked fine-tune after the hard mask, at the end of every pruned state."""
        if state >= 1:
            return int(experiment.get("rsst", {}).get("finetune_epochs", 0))
        return 0

    def __init__(self, experiment, state, groupsets):
        super().__init__(experiment, state, groupsets)
        self.cfg = experiment["rsst"]
        self.penalty: RSSTPenalty | None = None
        self._weights: RSSTPenalty | None = None  # the penalised weights, until the mask
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
        from prunebench.pruning.penalty import RSSTPenalty

        steps = self.mask_epoch() * run.steps_per_epoch
        groupsets, penalized = run.trained_groups(run.plan.penalized)
        self._weights = RSSTPenalty.for_groups(run.trained_model, groupsets, penalized, self.cfg, steps)
        if epochs_done == 0:
            self.start_norm = self.penalized_norm()
        self.penalty = self._weights if epochs_done < self.mask_epoch() else None

    def penalized_norm(self) -> float:
        """L2 norm of the penalised groups' weights (the trained ones: read only before the hard mask,
        which re-binds the trained module)."""
        return self._weights.norm()

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
            self.penalty = self._weights = None  # its parameters (a slim model's) are no longer trained
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
