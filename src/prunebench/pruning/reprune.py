"""REPrune (Park et al., AAAI 2024): channel pruning by kernel representative selection, as a method.

REPrune trains and prunes concurrently over the whole state chain: the start of every epoch that its
schedule marks prunes the model (one global |BN gamma| threshold for the budget, kernel clustering,
greedy maximum coverage; :mod:`prunebench.pruning.representatives` computes it all and documents how
the concurrent run maps onto the states). Its state 0 is its own, already pruned.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prunebench.errors import ConfigError
from prunebench.pruning.hooks import Column, PruningMethod, ReportSection, StateRun, in_run_order
from prunebench.pruning.plan import StatePlan, alive_fraction, keep_plan
from prunebench.pruning.schedule import chain_epochs

if TYPE_CHECKING:
    from torch import nn

    from prunebench.pruning.groups import GroupSet, Masks

log = logging.getLogger("prunebench")

SETTINGS = r"""
    type: object
    additionalProperties: false
    # keys removed from the section, and what replaces them (named in the error an old config gets)
    x-replaced-keys:
      budget: "prune.budget (groups, params or macs; `channels` is now `groups`)"
      macs_reduction: "prune.target_sparsity with prune.budget: macs"
    # what the other methods' hashes saw here before x-method: the defaults
    x-hashed-as:
      {interval_epochs: 2, prune_until: 0.65, linkage: ward, ramp: linear, min_layer_density: 0, regrowth: 0}
    description: >-
      REPrune (CNN channels): one concurrent train-and-prune run spanning all states, pruning
      every interval_epochs epochs until prune_until of the run, then the architecture is frozen.
      Its budget is prune.budget and prune.target_sparsity, reached in full by the last event.
    properties:
      interval_epochs:
        type: integer
        minimum: 1
        maximum: 10000
        default: 2
        description: >-
          dT: after every dT trained epochs (global numbering over the whole chain) a pruning
          event prunes the model at the start of the next epoch, before it trains. At most 10000.
      prune_until:
        type: number
        exclusiveMinimum: 0
        maximum: 1
        default: 0.65
        description: T_prune as a fraction of all the chain's epochs; no pruning event after it. Above 0, at most 1.
      linkage:
        enum: [ward, single, complete, average]
        default: ward
        description: Agglomerative linkage used to cluster the kernels of each input channel.
      ramp:
        enum: [constant, linear, cubic]
        default: linear
        description: >-
          Share of the budget each event prunes: growing linearly (progressive pruning) or
          cubically to all of it at the last event, or all of it from the first event (constant,
          CHEX style, best with regrowth > 0).
      min_layer_density:
        type: number
        minimum: 0
        exclusiveMaximum: 1
        default: 0.0
        description: >-
          Fraction of each layer's channels the global |BN gamma| threshold must leave (at least
          one channel always stays); guards plain CNNs against emptied layers. At least 0 and below 1.
      regrowth:
        type: number
        minimum: 0
        maximum: 1
        default: 0.0
        description: >-
          Fraction of each event's dropped channels kept back (largest L1 norm first), decaying
          with a cosine to 0 at the last event (CHEX-style regrowth); 0 switches it off. Between 0 and 1.
"""


def pruning_events(states, epochs):
    """Per state with ``event_epochs`` (REPrune): the epochs whose start carried a pruning event, and
    whether the best epoch came after the state's last event (trained, not just pruned)."""
    if "event_epochs" not in states:
        return None
    part = states[[isinstance(e, list) and len(e) > 0 for e in states["event_epochs"]]].copy()
    part["last_event"] = [max(e) for e in part["event_epochs"]]
    # an event is at the START of its epoch, so that epoch trains the pruned model
    part["best_after_event"] = part["best_epoch"] >= part["last_event"]
    return in_run_order(part)


EVENTS = ReportSection(
    title="REPrune: pruning events",
    text=(
        "The epochs of each state whose start carried a pruning event (the epoch then trains the pruned\n"
        "model), and whether the state's best epoch is trained after its last event."
    ),
    columns=(
        Column("event epochs", "event_epochs", "list", align="l"),
        Column("best epoch", "best_epoch", "whole"),
        Column("best trained after the last event", "best_after_event", "yesno", align="l"),
    ),
    rows=pruning_events,
)


class REPrune(PruningMethod):
    """REPrune's hooks: a state trains on with the masks it inherits, and the start of every epoch
    that the chain's schedule marks prunes the model before that epoch trains."""

    name = "reprune"
    # its events read run.model (dense, brought up to date) and only shrink the masks (they stay
    # nested): every event's set_plan re-slims the state exactly
    trains_slim = True
    settings = SETTINGS
    settings_after = "measure"
    trains_own_state0 = True  # it prunes from its first epoch: its state 0 is its own
    report_sections = (EVENTS,)

    @classmethod
    def check_config(cls, where: str, models: dict[str, dict], settings: dict) -> None:
        """REPrune prunes CNN channels during training: refuse setups where it could not."""
        from prunebench.archs import family_of

        for model_key, model in models.items():
            if family_of(model["arch"]) != "cnn":
                raise ConfigError(
                    f"{where}: method reprune prunes CNN channels, but model {model_key!r} "
                    f"({model['arch']}) is not a prunebench CNN; run reprune in a group of CNNs"
                )
        if "channels" not in settings["prune"]["groups"]:
            raise ConfigError(
                f"{where}: method reprune needs `channels` in prune.groups (set it in the group's overrides)"
            )
        if settings["prune"].get("round_to", 1) > 1:
            raise ConfigError(
                f"{where}: prune.round_to = {settings['prune']['round_to']}, but reprune keeps any number of "
                "channels per layer (its counts come from one |BN gamma| threshold), so its widths would not be "
                "rounded like the other methods'; set round_to: 1 in this group, or run reprune in a group of its own"
            )
        rcfg, total = settings["reprune"], chain_epochs(settings)
        if round(rcfg["prune_until"] * total) < rcfg["interval_epochs"] or rcfg["interval_epochs"] >= total:
            raise ConfigError(
                f"{where}: reprune would never prune: its first event comes after {rcfg['interval_epochs']} trained "
                f"epochs, which must be within prune_until x {total} epochs and before the chain's last epoch; "
                "raise reprune.prune_until or lower reprune.interval_epochs"
            )

    def __init__(self, experiment: dict, state: int, groupsets: list[GroupSet]):
        from prunebench.pruning.representatives import REPruneRun

        super().__init__(experiment, state, groupsets)
        self.schedule = REPruneRun(experiment, groupsets)
        self.offset = self.schedule.offset(state)

    def plan(self, model: nn.Module, prev: Masks, *, batches=None) -> StatePlan:
        prev = {k: v.cpu() for k, v in prev.items()}
        return keep_plan(prev, self.schedule.target_at(self.offset))

    def rewinds(self) -> bool:
        return False  # one concurrent run: nothing to rewind to

    def lr_window(self, steps_per_epoch: int, state_steps: int) -> tuple[int, int]:
        # one concurrent run spans the chain, so its learning-rate schedule does too
        return self.offset * steps_per_epoch, self.schedule.total_epochs * steps_per_epoch

    def epoch_start(self, run: StateRun, epoch: int) -> dict:
        global_epoch = self.offset + epoch
        extra = {"global_epoch": global_epoch, "coverage": None, "reprune_event": None}
        if self.schedule.is_event(global_epoch):
            masks, event = self.schedule.prune(run.model, run.plan.final_masks, global_epoch, run.img_size)
            run.set_plan(keep_plan(masks, event["target"]))
            # the pruned model before it trains again (one evaluation per event): the damage the event
            # does, which the epoch's own evaluation, after it trained, no longer shows
            after = run.evaluate()
            event["after_prune"] = after
            log.info(
                "state %d: REPrune event before epoch %d, %.4f of the dense %s kept (target %.4f), "
                "density %.4f, mean coverage %.3f; right after it val %.2f test %.2f",
                self.state, epoch, event["reached"], self.schedule.kind, event["target"],
                alive_fraction(masks), event["coverage"], after["val_acc"], after["test_acc"],
            )  # fmt: skip
            extra.update(
                coverage=event["coverage"], reprune_event=event,
                after_prune_val_acc=after["val_acc"], after_prune_test_acc=after["test_acc"],
            )  # fmt: skip
        return extra

    def event_epochs(self, rows: list[dict]) -> list[int]:
        return [r["epoch"] for r in rows if r.get("reprune_event")]

    def evaluates(self, epoch: int) -> bool:
        # the last epoch of each architecture: an event before the next epoch restarts the best's choice
        return self.schedule.is_event(self.offset + epoch + 1)

    def summary(self, run: StateRun) -> dict:
        return {"reprune": self.schedule.state_summary(self.state, run.rows)}
