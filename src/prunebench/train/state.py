"""Run one prune state: load the previous state, plan the pruning, train, write the state's files.

What the experiment's method does during the state (its plan, a penalty after backward, events at
epoch starts, a mask at an epoch's end) sits behind its hooks (``pruning/hooks.py``); this module
names no method.

Declared outputs (``last.pt``, ``best.pt``, ``metrics.jsonl``, ``summary.json``, and ``init.pt``
for state 0) are written only when the state has finished, each atomically, with
``predictions.npz`` (the test set's predicted classes at the final and the best evaluation, taken
from those evaluations; published with the outputs, not declared to Snakemake). While it runs, the
state keeps its progress in a recovery folder outside the declared outputs: the metrics so far, the
best checkpoint so far and a resume checkpoint written after every epoch, from which a rerun of a
killed state continues. The same folder holds the lock that keeps a second trainer out and the
sealed copy of the finished outputs that a rerun adopts instead of training (prunebench.train.recovery).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from prunebench.config import finetune_epochs, state_epochs, training_hash
from prunebench.data import make_data, open_dataset
from prunebench.errors import CheckpointError, TrainingError
from prunebench.export.measure import state_measures
from prunebench.models import build_model, model_spec
from prunebench.provenance import now_iso, provenance, reset_peak_memory, versions
from prunebench.pruning.groups import (
    MaskedParams,
    alive_params,
    full_masks,
    groupsets_of,
    kept_counts,
    param_masks,
)
from prunebench.pruning.plan import StatePlan, alive_fraction
from prunebench.pruning.registry import method_for
from prunebench.pruning.schedule import budget_kind
from prunebench.train import distributed as ddp
from prunebench.train.checkpoint import load_trained, make_checkpoint
from prunebench.train.devices import acquire_device
from prunebench.train.loop import (
    compile_mode_for,
    compiles,
    configure_device,
    evaluate,
    make_optimizer,
    masked_view,
    prepare_model,
    train_one_epoch,
    use_compile_cache,
    uses_channels_last,
)
from prunebench.train.metrics import EVAL_FIELDS, append_row, experiment_ids, make_row, read_rows, write_rows
from prunebench.train.recovery import (
    adopt_finished,
    check_recorded,
    drop_optional,
    drop_progress,
    finish_state,
    lock_state,
    release_finished,
    wait_for_ranks,
)
from prunebench.train.seeding import seed_everything, state_seed
from prunebench.train.tracking import Tracker, write_csvs
from prunebench.train.writer import CheckpointWriter

log = logging.getLogger("prunebench")

RESUME_VERSION = 3  # 2: best checkpoints named by epoch; 3: the method's own state


@dataclass
class StatePaths:
    """Where one state's files go."""

    out_dir: Path
    recovery_dir: Path
    previous: Path | None = None  # the previous state's last.pt (states >= 1)
    init: Path | None = None  # state 0's init.pt (rewind: init)

    def __post_init__(self):
        self.out_dir, self.recovery_dir = Path(self.out_dir), Path(self.recovery_dir)

    @classmethod
    def under(cls, results: str | Path, experiment: str, state: int) -> StatePaths:
        """The layout of a results folder (the workflow's rules/common.smk spells out the same paths)."""
        base = Path(results) / experiment
        return cls(
            base / f"state{state}",
            base / "recovery" / f"state{state}",
            base / f"state{state - 1}" / "last.pt" if state else None,
            base / "state0" / "init.pt",
        )

    @property
    def progress_metrics(self) -> Path:
        return self.recovery_dir / "metrics.jsonl"

    def best_at(self, epoch: int) -> Path:
        """The best checkpoint so far, named by its epoch: ``resume.pt`` says which one is current, so
        a kill between writing a new best and the next ``resume.pt`` cannot leave the two disagreeing."""
        return self.recovery_dir / f"best-epoch{epoch}.pt"

    def drop_best_except(self, epoch: int) -> None:
        for path in self.recovery_dir.glob("best-epoch*.pt"):
            if path != self.best_at(epoch):
                path.unlink(missing_ok=True)

    @property
    def resume(self) -> Path:
        return self.recovery_dir / "resume.pt"


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class _Progress:
    epoch: int = 0
    step: int = 0
    best_val: float = -1.0
    best_epoch: int = -1
    train_seconds: float = 0.0
    eval_seconds: float = 0.0  # evaluations (epoch 0's included)
    checkpoint_seconds: float = 0.0  # the training thread blocked on checkpoint writes
    wall_seconds: float = 0.0  # of the processes before a resume, up to their last resume.pt
    started_at: str = ""  # when the state's first attempt started (ISO 8601 UTC)
    rows: list = field(default_factory=list)


def _load_previous(paths: StatePaths, experiment: dict, state: int, spec: dict):
    """State k-1's last checkpoint, refused unless it is of this experiment, method and model, trained
    under the settings the experiment has now."""
    return load_trained(paths.previous, experiment, state - 1, spec)


def _load_into(model, state_dict, path) -> None:
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the model ({exc}); delete it and rerun") from None


def _previous_stamp(paths: StatePaths) -> list[int] | None:
    """Size and mtime of the previous state's checkpoint: a rebuilt predecessor makes a resume stale."""
    if paths.previous is None:
        return None
    st = os.stat(paths.previous)
    return [st.st_size, st.st_mtime_ns]


def _try_resume(paths: StatePaths, experiment: dict, state: int):
    """The resume checkpoint of this very state, config and predecessor, or None (a stale one is set aside)."""
    if not paths.resume.exists():
        return None
    try:
        res = torch.load(paths.resume, map_location="cpu", weights_only=True)
    except Exception as exc:
        why = f"is unreadable ({exc})"
    else:
        if (
            res.get("version") != RESUME_VERSION
            or not _same_training(res.get("config"), experiment)
            or res.get("state") != state
        ):
            why = "is for another run or config"
        elif res.get("previous") != _previous_stamp(paths):
            why = f"continues an older {paths.previous}, which was rebuilt since"
        elif res["progress"]["best_epoch"] > 0 and not paths.best_at(res["progress"]["best_epoch"]).is_file():
            why = f"names a best checkpoint {paths.best_at(res['progress']['best_epoch'])} that is missing"
        else:
            # rows after the resume point belong to an epoch that reruns (killed before its resume.pt)
            epoch = res["progress"]["epoch"]
            rows = [r for r in read_rows(paths.progress_metrics) if r["epoch"] <= epoch]
            if [r["epoch"] for r in rows] == list(range(epoch + 1)):
                paths.drop_best_except(res["progress"]["best_epoch"])  # a best of a rerun epoch goes too
                return {**res, "rows": rows}
            why = f"has no complete metrics in {paths.progress_metrics}"
    log.warning("recovery checkpoint %s %s; starting the state afresh", paths.resume, why)
    drop_progress(paths)  # not the lock: this process holds it
    return None


def _same_training(config, experiment: dict) -> bool:
    """Whether a resume checkpoint's config trains what ``experiment`` trains (torch.compile or the
    tracking may differ: a resume goes on under the settings of now)."""
    if not isinstance(config, dict) or config.get("name") != experiment["name"]:
        return False
    return config == experiment or training_hash(config) == training_hash(experiment)


def run_state(
    experiment: dict,
    state: int,
    paths: StatePaths,
    *,
    data_dir: str = "data",
    download: bool = True,
    device: str = "auto",
    threads: int | None = None,
    logging: dict | None = None,
) -> dict:
    """Train prune state ``state`` of ``experiment`` and write its files; returns the summary.

    The state's recovery folder is locked for as long as this runs (a second trainer of the state
    stops with StateBusyError). The previous state's ``last.pt`` must have the sha256 its summary
    records (CheckpointError otherwise). A state an earlier attempt finished is adopted, not trained again.
    ``logging`` is the config's tracking settings (prunebench.train.tracking).
    """
    label = f"state {state} of {experiment['name']}"
    lock = lock_state(paths.recovery_dir, label)
    try:
        # the processes of a killed multi-process attempt may still be leaving (writing the bundle, say)
        wait_for_ranks(paths.recovery_dir, label)
        if paths.previous is not None:  # first: a damaged input stops the state before anything is set aside
            check_recorded(paths.previous, state - 1, experiment["name"], label)
        done = adopt_finished(paths, experiment, state)
        if paths.previous is not None:
            release_finished(Path(paths.previous).parent)  # this job started: Snakemake recorded it
        if done is not None:
            write_csvs(paths.out_dir, experiment, state, read_rows(paths.out_dir / "metrics.jsonl"))
            return done
        drop_optional(paths.out_dir)  # an earlier run's predictions.npz must not stand beside this run's files
        if ddp.world_of(experiment) > 1:  # train.gpus x train.nodes processes (train/distributed.py)
            return ddp.launch(
                experiment, state, paths, data_dir=data_dir, download=download, device=device, threads=threads,
                tracking=logging,
            )  # fmt: skip
        return _train_state(
            experiment, state, paths, data_dir=data_dir, download=download, device=device, threads=threads,
            tracking=logging,
        )  # fmt: skip
    finally:
        lock.release()


def _train_state(
    experiment: dict, state: int, paths: StatePaths, *, data_dir, download, device, threads, tracking
) -> dict:
    if threads:
        torch.set_num_threads(threads)
    log.info(
        "experiment %s, state %d (%s), %d CPU threads",
        experiment["name"],
        state,
        experiment["method"],
        torch.get_num_threads(),
    )
    placement = [
        f"{k}={os.environ[k]}" for k in ("SLURM_JOB_ID", "SLURMD_NODENAME", "CUDA_VISIBLE_DEVICES") if k in os.environ
    ]
    if placement:
        log.info("placement: %s", " ".join(placement))
    lease = acquire_device(device)
    try:
        return _run_state(
            experiment, state, paths, lease.device, data_dir=data_dir, download=download, threads=threads,
            tracking=tracking,
        )  # fmt: skip
    finally:
        lease.release()


def _run_state(
    experiment: dict, state: int, paths: StatePaths, dev: torch.device, *, data_dir, download, threads, tracking
) -> dict:
    run = _StateRun(experiment, state, paths, dev, data_dir=data_dir, download=download, tracking=tracking)
    try:
        run.train()
    finally:
        run.tracker.close()
    if not ddp.is_main():
        return None  # rank 0 writes the state's files
    summary = _summary(run, threads)
    _write_outputs(run, summary)
    log.info(
        "state %d done: best val %.2f (epoch %d), test at best %.2f, final test %.2f, %d/%d params alive",
        state, summary["best_val_acc"], summary["best_epoch"], summary["best_test_acc"],
        summary["final_test_acc"], summary["params_alive"], summary["params_dense"],
    )  # fmt: skip
    return summary


class _StateRun:
    """One prune state in progress: plan -> epochs -> finish.

    It holds the model, its data and masks, the method's hooks and the progress so far; the hooks
    see it through :class:`prunebench.pruning.hooks.StateRun`.
    """

    def __init__(
        self, experiment: dict, state: int, paths: StatePaths, dev: torch.device, *, data_dir, download, tracking=None
    ):
        self.wall_start, self.process_started_at = time.time(), now_iso()
        reset_peak_memory(dev)
        self.experiment, self.state, self.paths, self.dev = experiment, state, paths, dev
        self.tcfg = tcfg = experiment["train"]
        self.seed = state_seed(experiment["seed"], state)
        seed_everything(self.seed)
        splits = open_dataset(experiment, data_dir, download)  # in memory, or an image folder's file list
        log.info("data %s: %s", splits.name, splits.sizes())
        self.test_size = splits.sizes()["test"]  # the reports' test-set intervals need it
        self.spec = spec = model_spec(experiment["model"], splits.num_classes)

        # --- the model as the previous state left it ---
        if state == 0:
            self.model = build_model(spec, pretrained=experiment["model"]["pretrained"])
            self.groupsets = groupsets_of(self.model, experiment["prune"]["groups"])
            prev_masks = full_masks(self.groupsets)
        else:
            prev = _load_previous(paths, experiment, state, spec)
            self.model = build_model(spec)
            _load_into(self.model, prev["state_dict"], paths.previous)
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
        self.method = method_for(experiment, state, self.groupsets)
        configure_device(dev)
        self.channels_last = uses_channels_last(spec["family"], dev)
        self.data = make_data(
            splits, experiment, dev, spec["img_size"], channels_last=self.channels_last, shard=ddp.shard(),
        )  # fmt: skip
        self.img_size = self.data.img_size
        self.compiled = compiles(tcfg.get("compile", False), dev)
        self.compile_mode = (
            compile_mode_for(tcfg.get("compile_mode", "auto"), self.img_size, dev) if self.compiled else None
        )
        self.compile_cache = use_compile_cache(tcfg.get("compile_cache_dir")) if self.compiled else None
        if self.compiled:
            log.info("compiling with torch.compile, mode %s, cache %s", self.compile_mode, self.compile_cache)
        self.net = prepare_model(self.model, spec["family"], dev, compile=self.compiled, mode=self.compile_mode)
        self.graphed = self.compile_mode == "reduce-overhead"
        self.eval_every = int(tcfg.get("eval_every", 1))
        # evaluation at one batch shape where it pays (a compiled model, a GPU), no larger than the
        # largest split share, so that a small val split is not padded to train.eval_batch_size
        self.eval_padded = self.compiled or dev.type == "cuda"
        sizes = splits.sizes()
        largest = max(-(-sizes[s] // ddp.world()) for s in ("val", "test"))  # a rank's share, rounded up
        self.eval_batch = max(1, min(tcfg["eval_batch_size"], largest))
        self.writer = CheckpointWriter(background=tcfg.get("background_checkpoints", True))
        self._blocked_mark = self._hook_eval_seconds = 0.0

        # --- the plan: this state's masks, or those a killed run of it had reached ---
        resume = ddp.on_main(lambda: _try_resume(paths, experiment, state))  # every rank: rank 0's
        if resume is not None:
            r = resume["plan"]
            plan = StatePlan(r["density"], r["train"], r["final"], r["penalized"])
            _load_into(self.model, resume["model"], paths.resume)
            self.method.load_state_dict(resume["method"])
        else:
            plan = self.method.plan(self.model, prev_masks, batches=self._importance_batches())
            if self.method.rewinds():
                check_recorded(paths.init, 0, experiment["name"], f"state {state} of {experiment['name']}")
                init = load_trained(paths.init, experiment, 0)
                _load_into(self.model, init["state_dict"], paths.init)
        self.plan = plan
        self._bind_masks()
        ddp.agree(self)
        self.train_net = ddp.wrap(self.net, dev)  # the training passes' module (DDP with several ranks)

        self.epochs = state_epochs(experiment, state) + finetune_epochs(experiment, state)
        self.steps_per_epoch = self.data.steps_per_epoch(tcfg["batch_size"])
        self.warmup_steps = int(round(tcfg["warmup_epochs"] * self.steps_per_epoch))
        self.lr_offset, self.lr_total = self.method.lr_window(self.steps_per_epoch, self.epochs * self.steps_per_epoch)
        self.optimizer = make_optimizer(self.model, tcfg)
        self.generator = torch.Generator(device=dev).manual_seed(self.seed)
        self.ids = experiment_ids(experiment, state)
        paths.recovery_dir.mkdir(parents=True, exist_ok=True)
        self.prog = _Progress(started_at=self.process_started_at)
        self.resumed_after = resume["progress"]["epoch"] if resume is not None else None
        # the test set's predicted classes at the best and the final evaluation (predictions.npz)
        self.predictions: dict = {"targets": None, "final": None, "best": None}
        if resume is not None:
            self.predictions.update(resume.get("predictions") or {})  # none in a resume.pt of an older version
            self.optimizer.load_state_dict(resume["optimizer"])
            self.generator.set_state(resume["generator"].to(self.generator.get_state().device))
            torch.set_rng_state(resume["torch_rng"])
            self.prog = _Progress(**resume["progress"])
            self.prog.rows = resume["rows"]
            if ddp.is_main():
                write_rows(paths.progress_metrics, self.prog.rows)
            self.wall_start -= self.prog.wall_seconds  # the state's wall time counts the processes before this one
            log.info(
                "resuming state %d after epoch %d of %d from %s", state, self.prog.epoch, self.epochs, paths.resume
            )
        elif ddp.is_main():
            paths.progress_metrics.unlink(missing_ok=True)
        self.tracker = (
            Tracker.open(paths.out_dir, paths.recovery_dir, experiment, state, tracking, self.prog.rows)
            if ddp.is_main()
            else Tracker()  # records nothing: ranks > 0 write no file
        )
        self.method.start(self, self.prog.epoch)

    # --- what the method's hooks use (pruning.hooks.StateRun) ---
    @property
    def rows(self) -> list[dict]:
        return self.prog.rows

    def set_plan(self, plan: StatePlan) -> None:
        """Train with ``plan``'s masks from now on; new final masks restart the choice of the best epoch,
        which is made among epochs with the state's latest architecture."""
        changed = any(not torch.equal(plan.final_masks[k], self.plan.final_masks[k]) for k in plan.final_masks)
        self.plan = plan
        self._bind_masks()
        if changed:
            self.prog.best_val, self.prog.best_epoch = -1.0, -1

    def evaluate(self) -> dict[str, float]:
        start = time.perf_counter()
        scores = self._evaluate()
        self._hook_eval_seconds += time.perf_counter() - start  # counted in the epoch's eval_seconds
        return {"val_acc": scores["val"][1], "test_acc": scores["test"][1]}

    def _evaluate(self, predictions: dict | None = None) -> dict[str, tuple[float, float]]:
        """(loss, accuracy) of val and test in one pass; with several ranks each evaluates its share.
        ``predictions`` receives this rank's test predictions (:func:`prunebench.train.loop.evaluate`)."""
        return evaluate(
            self.net, self.data, ("val", "test"), self.eval_batch, self.tcfg["amp"],
            shard=ddp.shard(), reduce=ddp.sum_over_ranks, graphed=self.graphed, pad=self.eval_padded,
            predictions=predictions,
        )  # fmt: skip

    def _keep_predictions(self, which: str, test: dict) -> None:
        """Keep the evaluation's test predictions as the state's ``which`` (best, final), all ranks' shares
        joined in the test set's order (every rank calls this: it gathers)."""
        predicted, labels = (ddp.gather_shards(t).to(torch.int16) for t in test["test"])
        self.predictions.update({which: predicted, "targets": labels})

    # --- the parts of a state ---
    def _importance_batches(self) -> list | None:
        """A few un-augmented training batches on the device, for importances that need gradients."""
        if not self.method.needs_batches:
            return None
        n = self.experiment["prune"].get("taylor_batches", 4)
        batches = self.data.eval_batches("train", self.tcfg["batch_size"], pad=False)
        return [(b.x, b.y) for b in itertools.islice(batches, n)]

    def _bind_masks(self) -> None:
        plan = self.plan
        self.hard = MaskedParams(self.model, param_masks(self.model, self.groupsets, plan.train_masks))
        final_pm = param_masks(self.model, self.groupsets, plan.final_masks)
        self.final = MaskedParams(self.model, final_pm)
        # evaluations and checkpoints are of the model under its final masks (RSST trains without them)
        self.eval_masked = any(not torch.equal(plan.train_masks[k], plan.final_masks[k]) for k in plan.final_masks)
        self.params_alive = alive_params(self.model, final_pm)
        self.density = alive_fraction(plan.final_masks)
        self.hard.mask_weights()

    def evaluates(self, epoch: int) -> bool:
        """Whether ``epoch`` is evaluated: epoch 0, the state's last, every ``train.eval_every``-th and
        those the method needs (its hook :meth:`~prunebench.pruning.hooks.PruningMethod.evaluates`)."""
        return epoch == 0 or epoch == self.epochs or epoch % self.eval_every == 0 or self.method.evaluates(epoch)

    def _eval_row(self, epoch: int, values: dict) -> dict:
        """The epoch's metrics row, evaluated (val and test in one pass) when :meth:`evaluates` says so;
        a better validation accuracy makes it the best checkpoint so far. Appended to the progress."""
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
        with masked_view(self.final if self.eval_masked else None):
            scores = self._evaluate(test)
            eval_seconds = time.perf_counter() - start
            (val_loss, val_acc), test_acc = scores["val"], scores["test"][1]
            row = make_row(self.ids, epoch, {
                **values, "evaluated": True, "val_loss": val_loss, "val_acc": val_acc, "test_acc": test_acc,
                "density": self.density, "params_alive": self.params_alive,
            })  # fmt: skip
            if epoch > 0 and val_acc > prog.best_val:
                prog.best_val, prog.best_epoch = val_acc, epoch
                self._keep_predictions("best", test)
                if ddp.is_main():  # a copy of the weights now; written while training goes on
                    self.writer.save(self.paths.best_at(epoch), self.checkpoint(epoch, row), copied=True)
            if epoch == self.epochs:
                self._keep_predictions("final", test)
        return self._append(row, eval_seconds=eval_seconds)

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
        if ddp.is_main():
            append_row(self.paths.progress_metrics, row)
            self.tracker.epoch(row, prog.rows)
        return row

    def checkpoint(self, epoch: int, metrics: dict) -> dict:
        """A checkpoint of the model now (its tensors copied to the CPU: training may go on)."""
        return make_checkpoint(
            experiment=self.experiment, model_spec=self.spec, model=self.model, masks=self.plan.final_masks,
            state=self.state, epoch=epoch, metrics=dict(metrics),
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
        self.final.mask_weights()  # the plan's final masks become permanent

    def _epochs(self) -> None:
        prog, state, tcfg, method = self.prog, self.state, self.tcfg, self.method
        if prog.epoch == 0 and not prog.rows:
            row = self._eval_row(0, {"lr": 0.0, **method.logged_defaults(), "epoch_seconds": 0.0})
            log.info(
                "state %d epoch 0/%d (before training) val %.2f test %.2f (%.1f s)",
                state, self.epochs, row["val_acc"], row["test_acc"], row["eval_seconds"],
            )  # fmt: skip
        first_epoch, resumed_at = prog.epoch + 1, time.time()
        for epoch in range(first_epoch, self.epochs + 1):
            extra = method.epoch_start(self, epoch)
            ddp.agree(self)
            stats = train_one_epoch(
                self.train_net, self.data, self.optimizer, tcfg, step0=self.lr_offset + prog.step,
                total_steps=self.lr_total, warmup_steps=self.warmup_steps, generator=self.generator,
                hard=self.hard, gradient_hook=method.gradient_hook(), logged=method.logged_defaults(),
                graphed=self.graphed,
            )  # fmt: skip
            stats = ddp.reduce_train_stats(stats, self.dev)
            loss = stats["train_loss"]
            if math.isnan(loss) or loss > tcfg["divergence_loss"]:
                msg = (
                    f"state {state} of {self.experiment['name']} stopped at epoch {epoch}: training loss is {loss} "
                    f"(limit train.divergence_loss={tcfg['divergence_loss']}); no checkpoint was written. "
                    "Lower train.lr or set train.grad_clip, then rerun."
                )
                log.error(msg)
                raise TrainingError(msg)
            prog.step += stats["steps"]
            prog.train_seconds += stats["seconds"]
            ips = stats["images"] / max(stats["seconds"], 1e-9)
            extra.update(method.epoch_end(self, epoch))
            ddp.agree(self)
            row = self._eval_row(epoch, {
                "train_loss": loss, "train_acc": stats["train_acc"], "lr": stats["lr"],
                **stats["logged"], "epoch_seconds": stats["seconds"], "images_per_second": ips,
                **extra,
            })  # fmt: skip
            prog.epoch = epoch
            prog.wall_seconds = time.time() - self.wall_start
            eta = (time.time() - resumed_at) / (epoch - first_epoch + 1) * (self.epochs - epoch)
            scores = f"val {row['val_acc']:.2f} test {row['test_acc']:.2f}" if row["evaluated"] else "not evaluated"
            log.info(
                "state %d epoch %d/%d loss %.4f acc %.2f %s lr %.5f%s %.0f img/s "
                "(train %.1f s, eval %.1f s, checkpoints %.2f s) ETA %s",
                state, epoch, self.epochs, loss, row["train_acc"], scores, row["lr"], method.logged_text(row), ips,
                row["train_seconds"], row["eval_seconds"], row["checkpoint_seconds"], _fmt_eta(eta),
            )  # fmt: skip
            _save_resume(self.paths, self, prog)


def _save_resume(paths: StatePaths, run: _StateRun, prog: _Progress) -> None:
    """Queue the epoch's resume checkpoint (a copy of everything now), after the best checkpoint it names."""
    if not ddp.is_main():
        return
    plan = run.plan
    run.writer.save(paths.resume, {
        "version": RESUME_VERSION,
        "config": run.experiment,
        "state": run.state,
        "previous": _previous_stamp(paths),
        "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        "optimizer": run.optimizer.state_dict(),
        "generator": run.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "plan": {"density": plan.density, "train": plan.train_masks, "final": plan.final_masks, "penalized": plan.penalized},
        "method": run.method.state_dict(),  # what the method keeps across epochs
        "predictions": dict(run.predictions),  # CPU tensors, replaced (never changed in place) when kept
        "progress": {k: v for k, v in vars(prog).items() if k != "rows"},
    })  # fmt: skip
    best = prog.best_epoch
    run.writer.then(lambda: paths.drop_best_except(best))  # only once it is on disk is an earlier best unneeded


def _summary(run: _StateRun, threads: int | None) -> dict:
    prog, model, plan, dev = run.prog, run.model, run.plan, run.dev
    trained = [r for r in prog.rows if r["epoch"] > 0]
    evaluated = [r for r in trained if r.get("evaluated", True)]
    best = next(r for r in trained if r["epoch"] == prog.best_epoch)
    last = trained[-1]
    wall = time.time() - run.wall_start
    return {
        **experiment_ids(run.experiment, run.state),
        "epoch": last["epoch"],
        "epochs": len(trained),
        "density": alive_fraction(plan.final_masks),  # measured: the fraction of prunable groups kept
        "budget": {"kind": budget_kind(run.experiment["prune"]), "target": plan.density},
        "event_epochs": run.method.event_epochs(prog.rows),
        "test_size": run.test_size,
        "best_epoch": best["epoch"],
        "best_val_acc": best["val_acc"],
        "best_test_acc": best["test_acc"],
        "final_val_acc": last["val_acc"],
        "final_test_acc": last["test_acc"],
        "max_test_acc": max(r["test_acc"] for r in evaluated),
        "acc_after_pruning": prog.rows[0]["test_acc"],
        "params_dense": sum(p.numel() for p in model.parameters()),
        "params_alive": alive_params(model, param_masks(model, run.groupsets, plan.final_masks)),
        "kept": kept_counts(run.groupsets, plan.final_masks),
        "group_sizes": _sizes(run.groupsets),
        "model_spec": run.spec,
        "wall_seconds": wall,
        "train_seconds": prog.train_seconds,
        "eval_seconds": prog.eval_seconds,
        "checkpoint_seconds": prog.checkpoint_seconds,
        "evaluated_epochs": len(evaluated),
        "time_split": _time_split(prog, wall),
        "compile": {
            "setting": run.tcfg.get("compile", False),
            "compiled": run.compiled,
            "mode": run.compile_mode,
            "cache_dir": run.compile_cache,
        },
        "images_per_second": sum(r["images_per_second"] for r in trained) / len(trained),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "threads": threads or torch.get_num_threads(),
        "processes": ddp.world(),  # train.gpus x train.nodes: the ranks that trained it together (DDP)
        "run": _run_settings(run),
        "versions": versions(),
        # params/MACs of the dense and the physically slimmed model; their throughput is timed apart
        # (the workflow's measure_state, into throughput.json), so `throughput` stays null here
        **state_measures(model, run.spec, plan.final_masks, None, dev),
        **run.method.summary(run),
        # how it was produced: source, host, device and driver, packages, job, times, peak memory (last:
        # its end time and peaks cover the whole state)
        "provenance": provenance(
            dev,
            run.experiment,
            started_at=prog.started_at or run.process_started_at,
            process_started_at=run.process_started_at,
        ),
    }


_LOADERS = {"DeviceData": "device", "FolderData": "torchvision", "DaliData": "dali"}


def _run_settings(run: _StateRun) -> dict:
    """How the state ran, where the summary's other fields (device, threads, processes, compile) do not
    say: the settings in effect, taken from the run (the configured ones are in provenance.experiment)."""
    tcfg, data = run.tcfg, run.data
    workers = getattr(data, "workers", getattr(data, "threads", None))  # image folders only
    return {
        "gpus": tcfg.get("gpus", 1),
        "nodes": tcfg.get("nodes", 1),
        "data_loader": _LOADERS.get(type(data).__name__, type(data).__name__),
        "data_workers": workers,
        "amp": bool(tcfg["amp"]) and run.dev.type == "cuda",  # bf16 autocast, on CUDA only
        "channels_last": run.channels_last,
        "eval_every": run.eval_every,
        "eval_batch_size": run.eval_batch,
        "eval_padded": run.eval_padded,
        "background_checkpoints": tcfg.get("background_checkpoints", True),
        "resumed_after_epoch": run.resumed_after,  # this process continued a killed one; null: it ran from the start
    }


def _time_split(prog: _Progress, wall: float) -> dict[str, float]:
    """Shares of the state's wall time: training passes, evaluations, the training thread's waits on
    checkpoint writes, and the rest (start-up, data loading, pruning, the summary)."""
    wall = max(wall, 1e-9)
    parts = {"train": prog.train_seconds, "eval": prog.eval_seconds, "checkpoint": prog.checkpoint_seconds}
    split = {k: v / wall for k, v in parts.items()}
    split["other"] = max(0.0, 1.0 - sum(split.values()))
    return split


def _write_outputs(run: _StateRun, summary: dict) -> None:
    """Write the finished state's declared outputs: sealed in the recovery folder first, then linked
    into place (see :mod:`prunebench.train.recovery`)."""
    init = None
    if run.state == 0:
        init_model = build_model(run.spec)
        init_model.load_state_dict(run.init_state_dict)
        init = make_checkpoint(
            experiment=run.experiment, model_spec=run.spec, model=init_model, masks=run.plan.final_masks,
            state=0, epoch=0, metrics={},
        )  # fmt: skip
    # beside the outputs, not among them (tracking); the chain's summary.csv is current after the last epoch
    write_csvs(run.paths.out_dir, run.experiment, run.state, run.prog.rows)
    predictions = run.predictions if all(v is not None for v in run.predictions.values()) else None
    if predictions is None:  # resumed from a resume.pt written before the predictions were kept
        log.warning("state %d: the per-image predictions of its best epoch are unknown; no predictions.npz", run.state)
    finish_state(
        run.paths, run.experiment, run.state, last=run.checkpoint(run.epochs, run.prog.rows[-1]),
        best=run.paths.best_at(run.prog.best_epoch), rows=run.prog.rows, summary=summary, init=init,
        predictions=predictions,
    )  # fmt: skip


def _sizes(groupsets) -> dict:
    out: dict[str, dict[str, int]] = {}
    for gs in groupsets:
        out.setdefault(gs.layer, {})[gs.kind] = gs.size
    return out
