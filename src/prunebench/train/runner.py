"""The state runner: one prune state in progress, on one device (one rank of several, or the only one).

:class:`StateRunner` sets the state up in named steps (the previous state's model, the data on the
device, the plan, the schedule, the progress of a killed run of it), then trains its epochs. What the
experiment's method does during the state (its plan, a penalty after backward, events at epoch starts,
a mask at an epoch's end) sits behind its hooks (``pruning/hooks.py``); this module names no method.
Its summary and outputs are written by :mod:`prunebench.train.finish`.

**Slim training** (``train.slim: auto``, issue 23): where it computes what masked training computes
(:meth:`StateRunner._choose_training`), a pruned state trains the slim model of the groups alive at its
start (:func:`prunebench.export.slim.slim_model`), and its optimizer holds the slim parameters.
``self.model`` stays the dense-shaped model that checkpoints, ``resume.pt``, the summary and the
method's hooks see: :meth:`StateRunner.sync_dense` writes the slim model back into it (pruned weights
zero, BN statistics replayed) before any of them reads it; the method's hooks reach the trained
parameters through :attr:`StateRunner.trained_model` and :meth:`StateRunner.trained_groups` (RSST's
penalty acts on the slim model's parameters, with slim-shaped masks).

Where the training masks differ from the final ones (RSST's penalty phase), the slim model of the
training masks trains, and evaluations see it under the final masks cut to its shape
(:attr:`StateRunner.eval_view`). New training masks during the state (RSST's hard mask, a REPrune
event: a method's ``set_plan``) **re-slim** it (:meth:`StateRunner._retrain`): the dense model brought
up to date, a new slim model of the new masks, the optimizer state carried over (expanded to the
dense shape, then cut to the new widths), the net prepared (compiled) again and wrapped (DDP) again
when the next epoch trains. Masks that only shrink keep this exact: the dropped entries' optimizer
state is never read again, as their weights stay zero. A state that trained masked (nothing was
pruned at its start: RSST's state 1, REPrune's state 0) turns slim the same way once its masks
narrow. Only where the new masks revive groups pruned while the state trained slim (their optimizer
state was not kept) does it go on masked, and ``run.training_reason`` says so.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time

import torch

from prunebench.accel.compile_stats import compile_counts
from prunebench.accel.settings import (
    allow_recompiles,
    compile_mode_for,
    compiles,
    configure_device,
    prepare_model,
    use_compile_cache,
    uses_channels_last,
)
from prunebench.config import finetune_epochs, state_epochs
from prunebench.data import make_data, open_dataset
from prunebench.errors import CheckpointError, TrainingError
from prunebench.export.slim import (
    expand_model,
    expand_optimizer_state,
    inexact_reasons,
    optimizer_param_names,
    plan_slimming,
    slim_groupsets,
    slim_model,
    slim_optimizer_state,
)
from prunebench.models import build_model, model_spec
from prunebench.provenance import now_iso, reset_peak_memory
from prunebench.pruning.groups import MaskedParams, alive_params, full_masks, groupsets_of, param_masks
from prunebench.pruning.hooks import slim_refusal
from prunebench.pruning.plan import StatePlan, alive_fraction
from prunebench.pruning.registry import method_for
from prunebench.results.layout import StatePaths
from prunebench.results.metrics import EVAL_FIELDS, append_row, experiment_ids, make_row, write_rows
from prunebench.seeding import seed_everything, state_seed
from prunebench.train import ranks
from prunebench.train.checkpoint import load_trained, make_checkpoint
from prunebench.train.loop import evaluate, make_optimizer, masked_view, train_one_epoch
from prunebench.train.recovery import check_recorded
from prunebench.train.resume import Progress, save_resume, try_resume
from prunebench.train.tracking import Tracker
from prunebench.train.writer import CheckpointWriter

log = logging.getLogger("prunebench")


def fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def load_weights(model, state_dict, path) -> None:
    """``state_dict`` (read from ``path``) into ``model``; one that does not fit is a CheckpointError."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the model ({exc}); delete it and rerun") from None


class StateRunner:
    """One prune state in progress: set up -> plan -> epochs.

    It holds the model, its data and masks, the method's hooks and the progress so far; the hooks
    see it through :class:`prunebench.pruning.hooks.StateRun`.
    """

    def __init__(
        self, experiment: dict, state: int, paths: StatePaths, dev: torch.device, *, data_dir, download, tracking=None
    ):
        self.wall_start, self.process_started_at = time.time(), now_iso()
        reset_peak_memory(dev)
        self.experiment, self.state, self.paths, self.dev = experiment, state, paths, dev
        self.tcfg = experiment["train"]
        self.seed = state_seed(experiment["seed"], state)
        seed_everything(self.seed)
        splits = self._open_data(data_dir, download)
        prev_masks = self._start_model()
        self.method = method_for(experiment, state, self.groupsets)
        self._place_on_device(splits)
        self.writer = CheckpointWriter(background=self.tcfg.get("background_checkpoints", True))
        self._blocked_mark = self._hook_eval_seconds = 0.0
        resume = self._plan(prev_masks)
        self._schedule()
        self._restore_progress(resume)
        self.tracker = (
            Tracker.open(paths.out_dir, paths.recovery_dir, experiment, state, tracking, self.prog.rows)
            if ranks.is_main()
            else Tracker()  # records nothing: ranks > 0 write no file
        )
        self.method.start(self, self.prog.epoch)

    # --- setting the state up, in this order (each step may draw from the seeded RNGs) ---
    def _open_data(self, data_dir, download):
        """The dataset's splits (in memory, or an image folder's file list), and the model spec for them."""
        splits = open_dataset(self.experiment, data_dir, download)
        log.info("data %s: %s", splits.name, splits.sizes())
        self.test_size = splits.sizes()["test"]  # the reports' test-set intervals need it
        self.spec = model_spec(self.experiment["model"], splits.num_classes)
        return splits

    def _start_model(self):
        """The model as the previous state left it (state 0: as built); returns the masks it inherits."""
        experiment, state, paths, spec = self.experiment, self.state, self.paths, self.spec
        if state == 0:
            self.model = build_model(spec, pretrained=experiment["model"]["pretrained"])
            self.groupsets = groupsets_of(self.model, experiment["prune"]["groups"])
            prev_masks = full_masks(self.groupsets)
        else:
            # refused unless it is of this experiment, method and model, trained under the settings it has now
            prev = load_trained(paths.previous, experiment, state - 1, spec)
            self.model = build_model(spec)
            load_weights(self.model, prev["state_dict"], paths.previous)
            self.groupsets = groupsets_of(self.model, experiment["prune"]["groups"])
            if set(prev["masks"]) != {gs.name for gs in self.groupsets}:
                raise CheckpointError(
                    f"masks in {paths.previous} do not match the model's prunable groups; delete it and rerun"
                )
            prev_masks = prev["masks"]
        # a copy: state_dict() shares storage with the parameters, which training then changes in place
        self.init_state_dict = (
            {k: v.detach().clone() for k, v in self.model.state_dict().items()} if state == 0 else None
        )
        return prev_masks

    def _place_on_device(self, splits) -> None:
        """The data and the model on the device, in its memory format, compiled where it pays; how evaluations batch."""
        dev, tcfg, spec = self.dev, self.tcfg, self.spec
        configure_device(dev)
        self.channels_last = uses_channels_last(spec["family"], dev)
        self.data = make_data(
            splits, self.experiment, dev, spec["img_size"], channels_last=self.channels_last, shard=ranks.shard(),
        )  # fmt: skip
        self.img_size = self.data.img_size
        self.compiled = compiles(tcfg.get("compile", False), dev)
        self.compile_mode = (
            compile_mode_for(tcfg.get("compile_mode", "auto"), self.img_size, dev) if self.compiled else None
        )
        self.compile_backend = tcfg.get("compile_backend", "inductor") if self.compiled else None
        self.compile_cache = use_compile_cache(tcfg.get("compile_cache_dir")) if self.compiled else None
        # the process's compile totals now: the state's compile time, graphs and cache hits are counted from here
        self.compile_start = compile_counts() if self.compiled else None
        if self.compiled:
            log.info(
                "compiling with torch.compile at static shapes, backend %s, mode %s, cache %s",
                self.compile_backend, self.compile_mode, self.compile_cache,
            )  # fmt: skip
        self.net = self.prepared(self.model)
        self.graphed = self.compile_mode == "reduce-overhead"
        self.eval_every = int(tcfg.get("eval_every", 1))
        self.eval_test = tcfg.get("eval_test", "best_and_final")
        # evaluation at one batch shape where it pays (a compiled model, a GPU), no larger than the
        # largest split share, so that a small val split is not padded to train.eval_batch_size
        self.eval_padded = self.compiled or dev.type == "cuda"
        sizes = splits.sizes()
        largest = max(-(-sizes[s] // ranks.world()) for s in ("val", "test"))  # a rank's share, rounded up
        self.eval_batch = max(1, min(tcfg["eval_batch_size"], largest))

    def prepared(self, model):
        """``model`` on the device in its memory format, compiled as the state's settings say (the
        module to call for training and evaluation; it shares ``model``'s parameters)."""
        return prepare_model(
            model, self.spec["family"], self.dev, compile=self.compiled, mode=self.compile_mode,
            backend=self.compile_backend,
        )  # fmt: skip

    def _plan(self, prev_masks):
        """The state's masks, or those a killed run of it had reached; returns that run's resume
        checkpoint (None: the state starts afresh)."""
        experiment, state, paths = self.experiment, self.state, self.paths
        resume = ranks.on_main(lambda: try_resume(paths, experiment, state))  # every rank: rank 0's
        if resume is not None:
            r = resume["plan"]
            plan = StatePlan(r["density"], r["train"], r["final"], r["penalized"])
            load_weights(self.model, resume["model"], paths.resume)
            self.method.load_state_dict(resume["method"])
        else:
            plan = self.method.plan(self.model, prev_masks, batches=self._importance_batches())
            if self.method.rewinds():
                check_recorded(paths.init, 0, experiment["name"], f"state {state} of {experiment['name']}")
                init = load_trained(paths.init, experiment, 0)
                load_weights(self.model, init["state_dict"], paths.init)
        self.plan = plan
        self.slim = self.slimming = self.optimizer = None  # no optimizer yet: the masks' first binding
        self.bind_masks()
        self.agree()
        self._choose_training()
        self.train_net = ranks.wrap(self.net, self.dev)  # the training passes' module (DDP with several ranks)
        return resume

    def _masked_reason(self) -> str | None:
        """Why this state trains masked (None: the slim model may train, if it is exact)."""
        if self.tcfg.get("slim", "auto") == "off":
            return "train.slim is off"
        refusal = slim_refusal(type(self.method))
        if refusal:
            return refusal
        slimming = plan_slimming(self.model, self.plan.train_masks)
        if not slimming.narrows:
            return "nothing is pruned"
        inexact = inexact_reasons(self.model, slimming)
        return "; ".join(inexact) if inexact else None

    def _choose_training(self) -> None:
        """Slim or masked training (``train.slim``). Slim: the slim model of the plan's training masks,
        prepared (device, memory format, torch.compile) as the dense one was; it draws no random number,
        so the global RNG, the batch order and the learning-rate schedule go on as masked training's."""
        reason = self._masked_reason()
        self._phases: list[tuple[int, str, str | None]] = []  # (from step, slim or masked, why masked)
        if reason is None:
            self.slim, self.slimming = slim_model(self.model, self.plan.train_masks)
            self.net = self.prepared(self.slim)
        self._synced_step = 0
        self._trained_masks = self._cpu_masks(self.plan.train_masks)
        self._bind_eval_view()
        self._record("masked" if reason else "slim", reason)

    @staticmethod
    def _cpu_masks(masks) -> dict:
        return {k: v.detach().cpu().bool().clone() for k, v in masks.items()}

    def _record(self, mode: str, why: str | None) -> None:
        """The state trains ``mode`` from the current step on (a new phase only when the mode changes)."""
        if self._phases and self._phases[-1][1] == mode:
            return
        step = max(self.prog_step, 0)
        self._phases.append((step, mode, why))
        log.info("state %d trains %s%s from step %d", self.state, mode, f" ({why})" if why else "", step)

    @property
    def training(self) -> str:
        """How the state trains now (its last part, at its end): ``slim`` or ``masked``."""
        return self._phases[-1][1]

    @property
    def training_reason(self) -> str | None:
        """Why it trained masked (None: slim throughout); a state that changed way names each part,
        e.g. ``masked until step 8 (nothing is pruned), then slim``."""
        if len(self._phases) == 1:
            return self._phases[0][2]
        parts = []
        for i, (_, mode, why) in enumerate(self._phases):
            until = f" until step {self._phases[i + 1][0]}" if i + 1 < len(self._phases) else ""
            parts.append(f"{mode}{until}{f' ({why})' if why else ''}")
        return ", then ".join(parts)

    @property
    def trained_model(self):
        """The module whose parameters the optimizer steps: the slim model, or the dense one."""
        return self.slim if self.slim is not None else self.model

    def trained_groups(self, masks) -> tuple[list, dict]:
        """The trained module's GroupSets, and the dense model's per-group ``masks`` as they index them
        (the groups alive in the slim model, in order; the masks themselves when the dense model trains)."""
        if self.slim is None:
            return self.groupsets, masks
        return slim_groupsets(self.slim, self.slimming), self.slimming.slim_masks(masks)

    def _bind_eval_view(self) -> None:
        """The trained module under the plan's final masks, for evaluations (None: they equal the training masks)."""
        if not self.eval_masked:
            self.eval_view = None
        elif self.slim is None:
            self.eval_view = self.final
        else:
            groupsets, final = self.trained_groups(self.plan.final_masks)
            self.eval_view = MaskedParams(self.slim, param_masks(self.slim, groupsets, final))

    def sync_dense(self) -> None:
        """Bring the dense-shaped ``self.model`` up to the slim model's training (nothing when masked)."""
        if self.slim is None or self._synced_step == self.prog_step:
            return
        expand_model(self.model, self.slim, self.slimming)
        self._synced_step = self.prog_step

    @property
    def prog_step(self) -> int:
        prog = getattr(self, "prog", None)
        return -1 if prog is None else prog.step

    def dense_optimizer_state(self) -> dict:
        """The optimizer's state in the dense model's shapes (as masked training's optimizer holds it)."""
        state = self.optimizer.state_dict()
        if self.slim is None:
            return state
        return expand_optimizer_state(state, optimizer_param_names(self.optimizer, self.slim), self.slimming)

    def _leave_slim(self) -> dict | None:
        """Before new training masks bind: the dense model brought up to date and the optimizer's state
        in its shape (as masked training holds it), the slim model dropped. None when the dense model trains."""
        if self.slim is None:
            return None
        self._synced_step = None
        self.sync_dense()
        state = self.dense_optimizer_state()
        self.slim = self.slimming = None
        return state

    def _retrain(self, state: dict | None, revived: bool) -> None:
        """Go on training under the plan's new training masks (the dense model already hard-masked by
        them): the slim model of those masks where that is exact, its optimizer holding ``state`` (the
        dense-shaped state :meth:`_leave_slim` returned; None: the dense model's optimizer trained) cut
        to the new widths; else the dense model under hard masks. The net is prepared again, and wrapped
        (DDP) when the next epoch trains, so every rank wraps it at the same point."""
        why = (
            "the method revived groups pruned while the state trained slim, whose optimizer state was not kept"
            if revived
            else self._masked_reason()
        )
        if why is not None and state is None:  # masked, and masked on: the same optimizer and net
            self._record("masked", why)
            return
        if state is None:
            state = self.optimizer.state_dict()
        if why is None:
            self.slim, self.slimming = slim_model(self.model, self.plan.train_masks)
            self.optimizer = make_optimizer(self.slim, self.tcfg)
            names = optimizer_param_names(self.optimizer, self.slim)
            state = slim_optimizer_state(state, names, self.slimming)
        else:
            self.optimizer = make_optimizer(self.model, self.tcfg)
        self.optimizer.load_state_dict(state)
        if self.compiled:  # every re-slim compiles new widths: past dynamo's default 8 graphs per code
            allow_recompiles()  # object it would silently run eager
        self.net = self.prepared(self.trained_model)
        self.train_net = None
        self._synced_step = self.prog_step
        self._record("masked" if why else "slim", why)

    def _schedule(self) -> None:
        """The state's epochs, learning-rate schedule, optimizer and batch order."""
        experiment, state, tcfg = self.experiment, self.state, self.tcfg
        self.epochs = state_epochs(experiment, state) + finetune_epochs(experiment, state)
        self.steps_per_epoch = self.data.steps_per_epoch(tcfg["batch_size"])
        self.warmup_steps = int(round(tcfg["warmup_epochs"] * self.steps_per_epoch))
        self.lr_offset, self.lr_total = self.method.lr_window(self.steps_per_epoch, self.epochs * self.steps_per_epoch)
        self.optimizer = make_optimizer(self.trained_model, tcfg)
        self.generator = torch.Generator(device=self.dev).manual_seed(self.seed)
        self.ids = experiment_ids(experiment, state)

    def _restore_progress(self, resume) -> None:
        """The progress so far: none, or a killed run's (its optimizer, batch order, RNG and metrics)."""
        paths = self.paths
        paths.recovery_dir.mkdir(parents=True, exist_ok=True)
        self.prog = Progress(started_at=self.process_started_at)
        self.resumed_after = resume["progress"]["epoch"] if resume is not None else None
        # the test set's predicted classes at the best and the final evaluation (predictions.npz)
        self.predictions: dict = {"targets": None, "final": None, "best": None}
        if resume is not None:
            self.predictions.update(resume.get("predictions") or {})  # none in a resume.pt of an older version
            state = resume["optimizer"]  # dense-shaped, also when the killed run trained slim
            if self.slim is not None:
                state = slim_optimizer_state(state, optimizer_param_names(self.optimizer, self.slim), self.slimming)
            self.optimizer.load_state_dict(state)
            self.generator.set_state(resume["generator"].to(self.generator.get_state().device))
            torch.set_rng_state(resume["torch_rng"])
            self.prog = Progress(**resume["progress"])
            self.prog.rows = resume["rows"]
            if ranks.is_main():
                write_rows(paths.progress_metrics, self.prog.rows)
            self.wall_start -= self.prog.wall_seconds  # the state's wall time counts the processes before this one
            log.info(
                "resuming state %d after epoch %d of %d from %s", self.state, self.prog.epoch, self.epochs, paths.resume
            )
        elif ranks.is_main():
            paths.progress_metrics.unlink(missing_ok=True)

    # --- what the method's hooks use (pruning.hooks.StateRun) ---
    @property
    def rows(self) -> list[dict]:
        return self.prog.rows

    def set_plan(self, plan: StatePlan) -> None:
        """Train with ``plan``'s masks from now on; new final masks restart the choice of the best epoch,
        which is made among epochs with the state's latest architecture."""
        changed = any(not torch.equal(plan.final_masks[k], self.plan.final_masks[k]) for k in plan.final_masks)
        self.plan = plan
        self.bind_masks()
        if changed:
            self.prog.best_val, self.prog.best_epoch = -1.0, -1

    def agree(self) -> None:
        """Continue with rank 0's plan and method state (the same ones in a single process)."""
        plan = ranks.agree(self.plan, self.method)
        if plan is not self.plan:
            self.plan = plan
            self.bind_masks()

    def evaluate(self) -> dict[str, float]:
        start = time.perf_counter()
        scores = self._evaluate()
        self._hook_eval_seconds += time.perf_counter() - start  # counted in the epoch's eval_seconds
        return {"val_acc": scores["val"][1], "test_acc": scores["test"][1]}

    def _evaluate(
        self, predictions: dict | None = None, splits: tuple[str, ...] = ("val", "test")
    ) -> dict[str, tuple[float, float]]:
        """(loss, accuracy) of ``splits`` in one pass; with several ranks each evaluates its share.
        ``predictions`` receives this rank's test predictions (:func:`prunebench.train.loop.evaluate`)."""
        return evaluate(
            self.net, self.data, splits, self.eval_batch, self.tcfg["amp"],
            shard=ranks.shard(), reduce=ranks.sum_over_ranks, graphed=self.graphed, pad=self.eval_padded,
            predictions=predictions,
        )  # fmt: skip

    def _keep_predictions(self, which: str, test: dict) -> None:
        """Keep the evaluation's test predictions as the state's ``which`` (best, final), all ranks' shares
        joined in the test set's order (every rank calls this: it gathers)."""
        predicted, labels = (ranks.gather_shards(t).to(torch.int16) for t in test["test"])
        self.predictions.update({which: predicted, "targets": labels})

    # --- the parts of a state ---
    def _importance_batches(self) -> list | None:
        """A few un-augmented training batches on the device, for importances that need gradients."""
        if not self.method.needs_batches:
            return None
        n = self.experiment["prune"].get("taylor_batches", 4)
        batches = self.data.eval_batches("train", self.tcfg["batch_size"], pad=False)
        return [(b.x, b.y) for b in itertools.islice(batches, n)]

    def bind_masks(self) -> None:
        """Hard-mask the model by the plan's training masks; evaluations and checkpoints use its final ones.
        New training masks during the state (once the optimizer exists) re-choose how it trains
        (:meth:`_retrain`: re-slimmed, where that is exact)."""
        plan = self.plan
        new = self._cpu_masks(plan.train_masks)
        changed = self.optimizer is not None and any(not torch.equal(new[k], self._trained_masks[k]) for k in new)
        state, revived = None, False
        if changed:
            revived = self.slim is not None and any(bool((new[k] & ~self.slimming.masks[k]).any()) for k in new)
            state = self._leave_slim()
            self._trained_masks = new
        self.hard = MaskedParams(self.model, param_masks(self.model, self.groupsets, plan.train_masks))
        final_pm = param_masks(self.model, self.groupsets, plan.final_masks)
        self.final = MaskedParams(self.model, final_pm)
        # evaluations and checkpoints are of the model under its final masks (RSST trains without them)
        self.eval_masked = any(not torch.equal(plan.train_masks[k], plan.final_masks[k]) for k in plan.final_masks)
        self.params_alive = alive_params(self.model, final_pm)
        self.density = alive_fraction(plan.final_masks)
        self.hard.mask_weights()
        if changed:
            self._retrain(state, revived)
        if self.optimizer is not None:
            self._bind_eval_view()

    def evaluates(self, epoch: int) -> bool:
        """Whether ``epoch`` is evaluated: epoch 0, the state's last, every ``train.eval_every``-th and
        those the method needs (its hook :meth:`~prunebench.pruning.hooks.PruningMethod.evaluates`)."""
        return epoch == 0 or epoch == self.epochs or epoch % self.eval_every == 0 or self.method.evaluates(epoch)

    def tests(self, epoch: int) -> bool:
        """Whether an evaluated ``epoch`` evaluates the test split beside val. ``train.eval_test: every``:
        always. ``best_and_final``: epoch 0 (the damage of the pruning), the state's last and the epochs
        the method needs; the best epoch's test is evaluated at the state's end (:meth:`_test_best`)."""
        return self.eval_test == "every" or epoch in (0, self.epochs) or self.method.evaluates(epoch)

    def _eval_row(self, epoch: int, values: dict) -> dict:
        """The epoch's metrics row, evaluated (val, and test where :meth:`tests` says so, in one pass)
        when :meth:`evaluates` says so; a better validation accuracy makes it the best checkpoint so
        far. The state's last epoch also evaluates the best epoch's test where that was left for later.
        Appended to the progress."""
        prog = self.prog
        if not self.evaluates(epoch):
            row = make_row(self.ids, epoch, {
                **values, "evaluated": False, "density": self.density, "params_alive": self.params_alive,
            })  # fmt: skip
            for key in EVAL_FIELDS:
                del row[key]  # not measured: absent, not null
            return self._append(row, eval_seconds=0.0)
        start = time.perf_counter()
        test: dict = {}
        tested = self.tests(epoch)
        with masked_view(self.eval_view):
            scores = self._evaluate(test, ("val", "test") if tested else ("val",))
            eval_seconds = time.perf_counter() - start
            val_loss, val_acc = scores["val"]
            row = make_row(self.ids, epoch, {
                **values, "evaluated": True, "val_loss": val_loss, "val_acc": val_acc,
                "test_acc": scores["test"][1] if tested else None, "density": self.density,
                "params_alive": self.params_alive,
            })  # fmt: skip
            if not tested:
                del row["test_acc"]  # not measured: absent, not null
            if epoch > 0 and val_acc > prog.best_val:
                prog.best_val, prog.best_epoch = val_acc, epoch
                if tested:
                    self._keep_predictions("best", test)
                else:
                    self.predictions["best"] = None  # the state's end evaluates them (_test_best)
                if ranks.is_main():  # copied into the writer's reused buffers now; written while training goes on
                    self.writer.save(self.paths.best_at(epoch), self.checkpoint(epoch, row, copy=False), slot="best")
            if epoch == self.epochs:
                self._keep_predictions("final", test)
        if epoch == self.epochs:
            start = time.perf_counter()
            self._test_best()
            eval_seconds += time.perf_counter() - start
        return self._append(row, eval_seconds=eval_seconds)

    def _test_best(self) -> None:
        """The best epoch's test accuracy and predictions where its evaluation left them out
        (``train.eval_test: best_and_final``): evaluated once, at the state's end, on the weights of
        its best checkpoint, with the net and masks its own evaluation used, so the numbers it would
        have had. Written into the best epoch's row, in the progress metrics too; a resumed state reads
        the same checkpoint file, so it gets the same numbers."""
        prog = self.prog
        best = next((i for i, r in enumerate(prog.rows) if r["epoch"] == prog.best_epoch), None)
        if best is None or ("test_acc" in prog.rows[best] and self.predictions["best"] is not None):
            return  # the best is the last epoch (tested with it), or was tested at its epoch
        path = self.paths.best_at(prog.best_epoch)
        if ranks.is_main():
            self.writer.wait_for(path)
        weights = ranks.on_main(lambda: torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        test: dict = {}
        with self._holding(weights), masked_view(self.eval_view):
            test_acc = self._evaluate(test, ("test",))["test"][1]
        self._keep_predictions("best", test)
        row = {}
        for key, value in prog.rows[best].items():  # test_acc in its place among the fields
            if key != "test_acc":
                row[key] = value
            if key == "val_acc":
                row["test_acc"] = test_acc
        prog.rows[best] = row
        if ranks.is_main():
            write_rows(self.paths.progress_metrics, prog.rows)

    @contextlib.contextmanager
    def _holding(self, state_dict: dict):
        """The evaluated net holding the dense-shaped ``state_dict`` (its alive part, when the slim
        model trains), its own weights restored afterwards."""
        model = self.trained_model
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if self.slim is not None:
            state_dict = {k: self.slimming.slim_tensor(k, state_dict[k]) for k in own}
        model.load_state_dict(state_dict)
        try:
            yield
        finally:
            model.load_state_dict(own)

    def _append(self, row: dict, *, eval_seconds: float) -> dict:
        """Add the epoch's timing split to ``row`` (checkpoint_seconds: the training thread's time in
        checkpoint writes since the previous row) and append it to the progress."""
        prog = self.prog
        eval_seconds += self._hook_eval_seconds
        self._hook_eval_seconds = 0.0
        blocked = self.writer.blocked_seconds - self._blocked_mark
        self._blocked_mark = self.writer.blocked_seconds
        prog.eval_seconds += eval_seconds
        prog.checkpoint_seconds += blocked
        row.update(train_seconds=row.get("epoch_seconds") or 0.0, eval_seconds=eval_seconds, checkpoint_seconds=blocked)
        prog.rows.append(row)
        if ranks.is_main():
            append_row(self.paths.progress_metrics, row)
            self.tracker.epoch(row, prog.rows)
        return row

    def checkpoint(self, epoch: int, metrics: dict, *, copy: bool = True) -> dict:
        """A checkpoint of the model now, dense-shaped, under the final masks: its tensors copied to the
        CPU (training may go on), or with ``copy=False`` the live ones, for the checkpoint writer to copy.
        When the slim model trains under other final masks (an evaluation's masked view covers only the
        slim model), the dense model is masked here, and copied now whatever ``copy`` says: its weights
        are restored when this returns, before a writer could copy them."""
        self.sync_dense()
        masked = self.eval_masked and self.slim is not None
        with masked_view(self.final if masked else None):
            return make_checkpoint(
                experiment=self.experiment, model_spec=self.spec, model=self.model, masks=self.plan.final_masks,
                state=self.state, epoch=epoch, metrics=dict(metrics), copy=copy or masked,
            )  # fmt: skip

    def train(self) -> None:
        """The state's epochs (those a killed run of it did not finish), then its final masks made permanent.

        Checkpoints are written on a background thread (train.background_checkpoints); every write is
        on disk when this returns, or raises, and a failed write stops the state."""
        try:
            self._epochs()
        except BaseException:
            self.writer.close(quiet=True)  # what was queued reaches the disk: a rerun resumes from it
            raise
        before = self.writer.blocked_seconds
        self.writer.close()
        self.prog.checkpoint_seconds += self.writer.blocked_seconds - before
        self.sync_dense()
        self.final.mask_weights()  # the plan's final masks become permanent

    def _epochs(self) -> None:
        prog = self.prog
        if prog.epoch == 0 and not prog.rows:
            row = self._eval_row(0, {"lr": 0.0, **self.method.logged_defaults(), "epoch_seconds": 0.0})
            log.info(
                "state %d epoch 0/%d (before training) val %.2f test %.2f (%.1f s)",
                self.state, self.epochs, row["val_acc"], row["test_acc"], row["eval_seconds"],
            )  # fmt: skip
        first_epoch, resumed_at = prog.epoch + 1, time.time()
        for epoch in range(first_epoch, self.epochs + 1):
            row = self._epoch(epoch)
            prog.epoch = epoch
            prog.wall_seconds = time.time() - self.wall_start
            eta = (time.time() - resumed_at) / (epoch - first_epoch + 1) * (self.epochs - epoch)
            self._log_epoch(row, eta)
            save_resume(self.paths, self, prog)

    def _epoch(self, epoch: int) -> dict:
        """One epoch: the method's events, a training pass, its end hook, then the epoch's metrics row."""
        prog, method = self.prog, self.method
        self.sync_dense()  # the hooks see the dense model as training left it
        extra = method.epoch_start(self, epoch)
        self.agree()
        # re-slimmed since the last epoch trained, on this rank or another (one that took other masks
        # before it agreed on rank 0's): all ranks wrap again, since building a DDP wrapper is collective
        if ranks.any_rank(self.train_net is None, self.dev):
            self.train_net = ranks.wrap(self.net, self.dev)
        stats = train_one_epoch(
            self.train_net, self.data, self.optimizer, self.tcfg, step0=self.lr_offset + prog.step,
            total_steps=self.lr_total, warmup_steps=self.warmup_steps, generator=self.generator,
            hard=self.hard if self.slim is None else None, gradient_hook=method.gradient_hook(), logged=method.logged_defaults(),
            graphed=self.graphed,
        )  # fmt: skip
        stats = ranks.reduce_train_stats(stats, self.dev)
        self._stop_if_diverged(epoch, stats["train_loss"])
        prog.step += stats["steps"]
        prog.train_seconds += stats["seconds"]
        self.sync_dense()
        extra.update(method.epoch_end(self, epoch))
        self.agree()
        return self._eval_row(epoch, {
            "train_loss": stats["train_loss"], "train_acc": stats["train_acc"], "lr": stats["lr"],
            **stats["logged"], "epoch_seconds": stats["seconds"],
            "images_per_second": stats["images"] / max(stats["seconds"], 1e-9), **extra,
        })  # fmt: skip

    def _stop_if_diverged(self, epoch: int, loss: float) -> None:
        tcfg = self.tcfg
        if math.isnan(loss) or loss > tcfg["divergence_loss"]:
            msg = (
                f"state {self.state} of {self.experiment['name']} stopped at epoch {epoch}: training loss is {loss} "
                f"(limit train.divergence_loss={tcfg['divergence_loss']}); no checkpoint was written. "
                "Lower train.lr or set train.grad_clip, then rerun."
            )
            log.error(msg)
            raise TrainingError(msg)

    def _log_epoch(self, row: dict, eta: float) -> None:
        scores = "not evaluated"
        if row["evaluated"]:
            scores = f"val {row['val_acc']:.2f}" + (f" test {row['test_acc']:.2f}" if "test_acc" in row else "")
        log.info(
            "state %d epoch %d/%d loss %.4f acc %.2f %s lr %.5f%s %.0f img/s "
            "(train %.1f s, eval %.1f s, checkpoints %.2f s) ETA %s",
            self.state, row["epoch"], self.epochs, row["train_loss"], row["train_acc"], scores, row["lr"],
            self.method.logged_text(row), row["images_per_second"], row["train_seconds"], row["eval_seconds"],
            row["checkpoint_seconds"], fmt_eta(eta),
        )  # fmt: skip
