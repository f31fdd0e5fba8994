"""A pruning method is one class: what it declares, and its hooks around a state's epochs.

**Declarations** (class attributes and class methods, read without torch by the config, the
Snakemake process, the training loop, tracking and the reports; none of them names a method):

- :attr:`PruningMethod.name`: its name in the config's ``methods`` (the schema's enum lists the
  registered names, :mod:`prunebench.pruning.registry`);
- :attr:`~PruningMethod.settings`: the JSON schema of its own settings section, the config's
  ``<name>:`` block (YAML text or a dict). The config schema gets the section, marked
  ``x-method: <name>``: the section is part of the training hash of this method's experiments only,
  and the shared dense state 0 never reads it; ``x-neutral-default`` and ``x-hashed-as`` work in it
  as anywhere in the schema;
- :attr:`~PruningMethod.trains_own_state0`: whether its state 0 is its own (REPrune prunes from the
  first epoch), or the plain dense state 0 that every such method shares;
- :attr:`~PruningMethod.prunes`, :attr:`~PruningMethod.rounds_widths`: whether it prunes at all
  (``dense`` does not), and whether its widths honour ``prune.round_to``;
- :meth:`~PruningMethod.finetune_epochs`: epochs a pruned state trains after its own
  ``train.epochs`` (RSST's masked fine-tune);
- :meth:`~PruningMethod.check_config`: its own checks of an experiment group's settings;
- :attr:`~PruningMethod.gradient_metrics`: what its gradient hook logs on every metrics row
  (:class:`Metric`: the row's field, its value where no hook ran, its name in logs, TensorBoard / W&B
  and the report's training curves);
- :attr:`~PruningMethod.trains_slim`: whether its pruned states may train the slim model of their
  alive groups (``train.slim``; its hooks then reach the trained parameters through
  ``run.trained_model``), and :attr:`~PruningMethod.masked_reason` why not;
- :attr:`~PruningMethod.summary_columns` and :attr:`~PruningMethod.report_sections`: its own
  ``summary.json`` fields as columns of the reports' per-state table, and its own sections of the
  comparison report (:class:`ReportSection`).

**Hooks.** The state runner (``train/runner.py``) asks the experiment's method for the state's plan,
then calls its hooks around the epoch loop, the way a trainer calls callbacks:

- :meth:`PruningMethod.plan`: at the state's start, which groups are hard-masked while it trains,
  which ones its checkpoint keeps and which ones are penalised on the way;
- :meth:`PruningMethod.start`: once the model, data and masks are in place (also after a resume);
- :meth:`PruningMethod.epoch_start`: before an epoch trains (REPrune's pruning events);
- :meth:`PruningMethod.gradient_hook`: what runs after every backward pass (RSST's penalty), a
  :class:`GradientHook`: called with the step, it returns the metrics it logs;
- :meth:`PruningMethod.epoch_end`: after an epoch trained, before it is evaluated (RSST's mask);
- :meth:`PruningMethod.evaluates`: the epochs it needs evaluated under ``train.eval_every`` > 1;
- :meth:`PruningMethod.summary`: the method's own fields of the state's summary.json.

Whatever a method keeps across epochs goes into :meth:`state_dict`, which the runner stores in the
per-epoch resume checkpoint.

Nothing here imports torch at import time: the config imports the method classes in the Snakemake
process. A hook imports what it computes with (torch, the pruning helpers) in its body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from prunebench.pruning.plan import StatePlan, keep_plan
from prunebench.pruning.schedule import density_at, state_epochs

if TYPE_CHECKING:
    from torch import nn

    from prunebench.pruning.groups import GroupSet, Masks


@dataclass(frozen=True)
class Metric:
    """A value a method's gradient hook logs on every metrics row (``metrics.jsonl``)."""

    field: str  # the row's key, and the key of the hook's returned dict
    label: str  # the y axis of its panel in the report's training curves
    log_name: str  # its name in the epoch's log line
    default: float = 0.0  # its value on a row whose epoch ran no hook (epoch 0, a method without one)
    scalar: str | None = None  # its TensorBoard / W&B name (None: ``method/<field>``)

    @property
    def scalar_name(self) -> str:
        return self.scalar or f"method/{self.field}"


# RSST's penalty strength. Every metrics file has the column: the methods without a penalty log 0.
REG_LAMBDA = Metric("reg_lambda", "penalty lambda", "lambda", 0.0, "optim/rsst_lambda")


class GradientHook(Protocol):
    """What runs after every backward pass of a state (masked gradients in place, before gradient
    clipping and the optimizer step): called with the global learning-rate step, it changes the
    gradients in place and returns the metrics it logs, keyed by the method's
    :attr:`~PruningMethod.gradient_metrics` fields; the epoch's row logs those of its last step.
    It should return Python numbers, not device tensors: reading one back each step stalls the GPU."""

    def __call__(self, step: int) -> dict[str, float]: ...


@dataclass(frozen=True)
class Column:
    """A column of a :class:`ReportSection`'s table."""

    header: str
    field: str  # the column of the section's rows
    format: str = "number"  # number (``digits`` decimals), integer (1,234), whole (1234), list (1, 3), yesno, text
    digits: int = 2
    align: str = "r"  # "l" or "r"


@dataclass(frozen=True)
class ReportSection:
    """A section of its own in each comparison report (under "Damage and recovery"): a heading, the
    paragraph under it, and a table whose rows start with the method, seed and state.

    ``rows(states, epochs)`` picks them from the comparison's pandas frames: ``states`` (one row per
    finished state, with the summary fields of :attr:`PruningMethod.summary_columns` and
    ``event_epochs``) and ``epochs`` (one row per metrics row, with the gradient metrics). It returns
    a frame (or None); an empty one, as for a comparison without the method, shows no section."""

    title: str
    text: str
    columns: tuple[Column, ...]
    rows: Callable[[Any, Any], Any]


def in_run_order(rows: Any) -> Any:
    """A section's rows (a pandas frame) by method, seed and state, as every report table lists them."""
    return rows.sort_values(["method", "seed", "state"]).reset_index(drop=True)


#: the hooks that run while a state trains; a method overriding one trains masked unless it declares
#: :attr:`PruningMethod.trains_slim`
TRAINING_HOOKS = ("start", "epoch_start", "gradient_hook", "epoch_end")


def slim_refusal(cls: type[PruningMethod]) -> str | None:
    """Why ``cls``'s pruned states train masked whatever their masks (None: they may train slim)."""
    if cls.trains_slim is False:
        return cls.masked_reason or f"{cls.name} trains masked"
    if cls.trains_slim is None:
        hooks = [h for h in TRAINING_HOOKS if getattr(cls, h) is not getattr(PruningMethod, h)]
        if hooks:
            return f"{cls.name} has its own {', '.join(hooks)} hook(s) and does not declare trains_slim"
    return None


class StateRun(Protocol):
    """What the state runner offers a method's hooks."""

    model: nn.Module  # the dense-shaped model (uncompiled), up to date whenever a hook runs
    trained_model: nn.Module  # the module whose parameters train: the slim model, or ``model`` itself
    groupsets: list[GroupSet]
    img_size: int
    steps_per_epoch: int
    epochs: int  # epochs of this state
    plan: StatePlan  # the state's current plan (masks and target)
    rows: list[dict]  # metrics rows so far (epoch 0 first)

    def trained_groups(self, masks: Masks) -> tuple[list[GroupSet], Masks]:
        """``trained_model``'s GroupSets, and the dense model's per-group ``masks`` as they index them."""

    def set_plan(self, plan: StatePlan) -> None:
        """Use new masks from now on (weights of dropped groups are zeroed). New training masks may
        replace ``trained_model`` (re-slimmed): a hook bound to its parameters binds them again."""

    def evaluate(self) -> dict[str, float]:
        """``val_acc`` and ``test_acc`` of the model as its weights are now (no mask applied)."""


def _short(value) -> str:
    return "-" if value is None else f"{value:.3g}"


class PruningMethod:
    """A method's declarations, and its behaviour inside one prune state; the base class trains on
    with inherited masks."""

    # --- declarations ---
    name: ClassVar[str] = ""
    #: JSON schema of its settings section ``<name>:`` (YAML text or a dict; None: no settings)
    settings: ClassVar[str | dict | None] = None
    #: the settings section after which its own sits in a resolved experiment (the key order of a
    #: summary's config); None: after every other section
    settings_after: ClassVar[str | None] = None
    #: whether its state 0 is its own; False: the plain dense state 0 every such method shares
    trains_own_state0: ClassVar[bool] = False
    #: whether it prunes anything (the dense control does not)
    prunes: ClassVar[bool] = True
    #: whether its layer widths are rounded to ``prune.round_to``
    rounds_widths: ClassVar[bool] = False
    #: whether the state's masks are chosen by ``choose_masks`` (which needs batches for taylor)
    chooses_masks: ClassVar[bool] = False
    #: what its gradient hook logs (every method logs ``reg_lambda``, a column of every metrics file)
    gradient_metrics: ClassVar[tuple[Metric, ...]] = (REG_LAMBDA,)
    #: its summary.json fields as report columns: column -> path in the summary
    summary_columns: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: its sections of the comparison report
    report_sections: ClassVar[tuple[ReportSection, ...]] = ()
    #: whether a pruned state may train the slim model of its alive groups (``train.slim: auto``): no
    #: hook steps or binds ``run.model``'s parameters (``run.model`` is the dense model, brought up to
    #: date before every hook; the trained parameters are ``run.trained_model``'s, indexed by
    #: ``run.trained_groups``, bound again after a ``set_plan`` with new training masks, which re-slims
    #: the state). None: slim unless the class overrides one of :data:`TRAINING_HOOKS` (a plugin's
    #: hook may bind the parameters)
    trains_slim: ClassVar[bool | None] = None
    #: why its states train masked where :attr:`trains_slim` is False (summary.json's ``run.training_reason``)
    masked_reason: ClassVar[str] = ""

    @classmethod
    def finetune_epochs(cls, experiment: dict, state: int) -> int:
        """Epochs ``state`` trains after its ``train.epochs`` (see :func:`~prunebench.pruning.schedule.state_epochs`)."""
        return 0

    @classmethod
    def check_config(cls, where: str, models: dict[str, dict], settings: dict) -> None:
        """Refuse (raise :class:`~prunebench.errors.ConfigError` with ``where`` before the message) an
        experiment group whose ``settings`` (defaults and overrides merged) and ``models`` (its models'
        resolved entries by key) this method cannot run."""

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

    def gradient_hook(self) -> GradientHook | None:
        """What runs after every backward pass of the coming epoch (None: nothing)."""
        return None

    def logged_defaults(self) -> dict[str, float]:
        """The gradient metrics of a row whose epoch ran no hook."""
        return {m.field: m.default for m in self.gradient_metrics}

    def logged_text(self, row: dict) -> str:
        """The gradient metrics of a metrics ``row`` as the epoch's log line shows them: " lambda 0.5"."""
        return "".join(f" {m.log_name} {_short(row.get(m.field))}" for m in self.gradient_metrics)

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
    prunes = False
