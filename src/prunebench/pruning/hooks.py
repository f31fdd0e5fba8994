"""The interface between the state runner and a pruning method.

The runner (``train/state.py``) knows no method by name. It asks the experiment's method for the
state's plan, then calls its hooks around the epoch loop, the way a trainer calls callbacks:

- :meth:`PruningMethod.plan`: at the state's start, which groups are hard-masked while it trains,
  which ones its checkpoint keeps and which ones are penalised on the way;
- :meth:`PruningMethod.start`: once the model, data and masks are in place (also after a resume);
- :meth:`PruningMethod.epoch_start`: before an epoch trains (REPrune's pruning events);
- :meth:`PruningMethod.gradient_hook`: what runs after every backward pass (RSST's penalty);
- :meth:`PruningMethod.epoch_end`: after an epoch trained, before it is evaluated (RSST's mask);
- :meth:`PruningMethod.evaluates`: the epochs it needs evaluated under ``train.eval_every`` > 1;
- :meth:`PruningMethod.summary`: the method's own fields of the state's summary.json.

Whatever a method keeps across epochs goes into :meth:`state_dict`, which the runner stores in the
per-epoch resume checkpoint. Adding a method is one subclass here in ``pruning/`` plus its entry in
``pruning/registry.py`` and in the config schema's ``methods`` enum.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from prunebench.config import default_budget, state_epochs
from prunebench.pruning.groups import GroupSet, Masks
from prunebench.pruning.methods import RSSTPenalty, StatePlan
from prunebench.pruning.schedule import density_at


def budget_kind(prune_cfg: dict) -> str:
    """What a state's budget counts: ``prune.budget``, or its default for the group kinds."""
    return prune_cfg.get("budget") or default_budget(prune_cfg.get("groups", []))


def keep_plan(prev: Masks, target: float) -> StatePlan:
    """A state that trains on with the masks it inherits."""
    none = {k: torch.zeros_like(v) for k, v in prev.items()}
    return StatePlan(target, prev, prev, none)


class StateRun(Protocol):
    """What the state runner offers a method's hooks."""

    model: nn.Module  # the trained module's parameters (the uncompiled model)
    groupsets: list[GroupSet]
    img_size: int
    steps_per_epoch: int
    epochs: int  # epochs of this state
    plan: StatePlan  # the state's current plan (masks and target)
    rows: list[dict]  # metrics rows so far (epoch 0 first)

    def set_plan(self, plan: StatePlan) -> None:
        """Use new masks from now on (weights of dropped groups are zeroed)."""

    def evaluate(self) -> dict[str, float]:
        """``val_acc`` and ``test_acc`` of the model as its weights are now (no mask applied)."""


class PruningMethod:
    """A method's behaviour inside one prune state; the base class trains on with inherited masks."""

    name: ClassVar[str] = ""
    #: whether the state's masks are chosen by ``choose_masks`` (which needs batches for taylor)
    chooses_masks: ClassVar[bool] = False

    def __init__(self, experiment: dict, state: int, groupsets: list[GroupSet]):
        self.experiment, self.state, self.groupsets = experiment, state, groupsets
        self.prune_cfg = experiment["prune"]

    # --- the state's start ---
    def plan(self, model: nn.Module, prev: Masks, *, batches=None) -> StatePlan:
        """The state's plan from the weights and masks the previous state left (full masks in state 0)."""
        prev = {k: v.cpu() for k, v in prev.items()}
        if self.state == 0:
            return keep_plan(prev, 1.0)
        return self.plan_pruned(model, prev, batches=batches)

    def plan_pruned(self, model: nn.Module, prev: Masks, *, batches=None) -> StatePlan:
        return keep_plan(prev, 1.0)

    @property
    def needs_batches(self) -> bool:
        """Whether :meth:`plan` needs training batches (the taylor importance scores with gradients)."""
        return self.chooses_masks and self.state >= 1 and self.prune_cfg.get("importance") == "taylor"

    def rewinds(self) -> bool:
        """Whether the live weights go back to state 0's starting weights after planning (``prune.rewind: init``)."""
        return self.state >= 1 and self.prune_cfg["rewind"] == "init"

    def lr_window(self, steps_per_epoch: int, state_steps: int) -> tuple[int, int]:
        """(steps before this state, steps of the whole schedule) of the learning-rate schedule:
        by default one schedule per state."""
        return 0, state_steps

    def start(self, run: StateRun, epochs_done: int) -> None:
        """Called once the model, data and masks are in place, ``epochs_done`` > 0 after a resume."""

    # --- the epoch loop ---
    def epoch_start(self, run: StateRun, epoch: int) -> dict[str, Any]:
        """Before ``epoch`` trains; returns extra fields for its metrics row."""
        return {}

    def gradient_hook(self) -> RSSTPenalty | None:
        """The object whose ``apply(step)`` runs after every backward pass (None: nothing)."""
        return None

    def epoch_end(self, run: StateRun, epoch: int) -> dict[str, Any]:
        """After ``epoch`` trained, before it is evaluated; returns extra fields for its metrics row."""
        return {}

    def evaluates(self, epoch: int) -> bool:
        """Whether ``epoch`` must be evaluated whatever ``train.eval_every`` says (the runner always
        evaluates epoch 0 and the state's last epoch)."""
        return False

    # --- the state's end ---
    def event_epochs(self, rows: list[dict]) -> list[int]:
        """The state's epochs whose start carried a pruning event."""
        return []

    def summary(self, run: StateRun) -> dict[str, Any]:
        """The method's own summary.json fields."""
        return {}

    # --- crash-resume ---
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    # --- helpers for subclasses ---
    def schedule_target(self, state: int | None = None) -> float:
        """Fraction of the budget's dense quantity the schedule keeps in ``state`` (this state by default)."""
        p = self.prune_cfg
        return density_at(self.state if state is None else state, p["states"], p["target_sparsity"], p["schedule"])

    def reg_epochs(self) -> int:
        return state_epochs(self.experiment, self.state)


class Dense(PruningMethod):
    """No pruning: the same chain of states, as a control."""

    name = "dense"
