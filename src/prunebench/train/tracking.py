"""Per-epoch tracking beside ``metrics.jsonl``: CSVs always, TensorBoard and W&B when configured.

One experiment (one seed of one method) is one chain of prune states, and one tracked run: its
steps are the chain's epochs, counted across states (:func:`chain_step`: state 0's epochs 0..E0,
then state 1's epoch 0, the evaluation right after pruning, at E0 + 1, and so on). The offset of a
state comes from the config's epochs per state, so a state logs without reading the others and a
resumed state logs the same steps. Every step carries the ``pruning/state`` scalar; TensorBoard also
gets a ``state`` text at each state's first step. The state runner calls :meth:`Tracker.epoch` with
every metrics row it appends; :func:`prunebench.train.share.adopt_state0` replays the shared dense
state 0 into each chain that copies it, so every chain's run starts at step 0. Where it all goes, in
the chain's folder (``results/{experiment}/``, the parent of the state folders):

- ``summary.csv``: the chain, one line per epoch, with timm's columns first (:data:`CSV_FIELDS`,
  those of ``timm.utils.update_summary``: ``epoch`` is the chain step), rewritten (atomically) after
  every epoch. Each state folder also gets its own ``summary.csv`` (the state's lines of it), live in
  the recovery folder while it runs. Neither is a declared output of the workflow: an upgrade that
  added one would have made every finished state look incomplete.
- TensorBoard (``logging.tensorboard: true``, needs the ``tensorboard`` extra): ``tensorboard/``, one
  event file per state (named ``*.state{k}``), which TensorBoard reads as one run.
- W&B (``logging.wandb: {project, mode}``, needs ``wandb``): one run per chain, named after the
  experiment, its id derived from the name and the training hash (:func:`wandb_run_id`) and resumed
  by every state (``resume="allow"``); ``mode: offline`` (the default) writes under ``wandb/``, one
  ``offline-run-*`` per state attempt, each replaying the chain's earlier epochs, so the latest
  holds the whole chain (W&B cannot append offline runs to each other).

A state that trains (again, or resumed) replaces its own event file and those of later states (which
train again after it) and replays the epochs it had finished, so each run holds every epoch once. A
backend that fails while the state trains is switched off with a warning: tracking never stops
training. One that cannot start (its package missing) stops the state before it trains, naming what
to install.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import re
from pathlib import Path
from typing import Any

from prunebench.config import finetune_epochs, state_epochs, training_hash
from prunebench.errors import ConfigError
from prunebench.io import atomic_write_text
from prunebench.pruning.registry import METHODS
from prunebench.results.metrics import read_rows

log = logging.getLogger("prunebench")

CSV_NAME = "summary.csv"
# CSV column -> metrics row key. timm's columns first (train.py's summary.csv: epoch, train_loss,
# eval_loss, eval_top1, eval_top5, lr; eval_* is the validation split), then prunebench's own.
# ``epoch`` is the chain step (:func:`chain_step`); ``state_epoch`` is metrics.jsonl's ``epoch``.
CSV_COLUMNS = {
    "epoch": None,
    "train_loss": "train_loss",
    "eval_loss": "val_loss",
    "eval_top1": "val_acc",
    "eval_top5": "val_top5",  # prunebench measures top-1 only: empty, kept for timm's layout
    "lr": "lr",
    "state": "state",
    "state_epoch": "epoch",
    "train_top1": "train_acc",
    "test_top1": "test_acc",
    "reg_lambda": "reg_lambda",
    "density": "density",
    "params_alive": "params_alive",
    "epoch_seconds": "epoch_seconds",
    "images_per_second": "images_per_second",
    "train_seconds": "train_seconds",
    "eval_seconds": "eval_seconds",
    "checkpoint_seconds": "checkpoint_seconds",
}
CSV_FIELDS = tuple(CSV_COLUMNS)
# TensorBoard / W&B names of the metrics (grouped the way their dashboards show them)
SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "test_acc": "accuracy/test",
    "lr": "optim/lr",
    "reg_lambda": "optim/rsst_lambda",
    "state": "pruning/state",
    "density": "pruning/density",
    "params_alive": "pruning/params_alive",
    "epoch_seconds": "time/epoch_seconds",
    "images_per_second": "time/images_per_second",
    "eval_seconds": "time/eval_seconds",
    "checkpoint_seconds": "time/checkpoint_seconds",
}
DEFAULTS = {"tensorboard": False, "wandb": None}
WANDB_DEFAULTS = {"mode": "offline", "entity": None}
TENSORBOARD_DIR = "tensorboard"
_STATE_FILE = re.compile(r"\.state(\d+)$")


def state_offset(experiment: dict, state: int) -> int:
    """The chain step of ``state``'s epoch 0: one step per epoch of every earlier state, its epoch 0 included."""
    return sum(state_epochs(experiment, k) + finetune_epochs(experiment, k) + 1 for k in range(state))


def chain_step(experiment: dict, row: dict) -> int:
    """The step of a metrics row in its chain's tracked run."""
    return state_offset(experiment, int(row["state"])) + int(row["epoch"])


def chain_dir(out_dir: str | Path) -> Path:
    """The folder of the chain a state folder belongs to (``results/{experiment}`` for ``.../state{k}``)."""
    return Path(out_dir).parent


def wandb_run_id(experiment: dict) -> str:
    """The W&B run id of the chain: the same for its every state; a chain trained under other settings
    (a new training hash) is a new run, not steps written over the old one."""
    text = f"{experiment['name']}\n{training_hash(experiment)}"
    return "pb-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def csv_text(experiment: dict, rows: list[dict]) -> str:
    """The rows as timm-style CSV (empty cells for values an epoch does not have, e.g. epoch 0's loss,
    or val/test of an epoch that ``train.eval_every`` left unevaluated)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        line = {col: "" if key is None or row.get(key) is None else row[key] for col, key in CSV_COLUMNS.items()}
        line["epoch"] = chain_step(experiment, row)
        writer.writerow(line)
    return buf.getvalue()


def write_csv(path: str | Path, experiment: dict, rows: list[dict]) -> None:
    """Write (replace, atomically) a ``summary.csv`` of ``rows``."""
    atomic_write_text(path, csv_text(experiment, rows))


def earlier_rows(out_dir: str | Path, state: int) -> list[dict]:
    """The metrics rows of the chain's states before ``state`` (from their folders beside ``out_dir``)."""
    rows = []
    for k in range(state):
        path = chain_dir(out_dir) / f"state{k}" / "metrics.jsonl"
        try:
            rows.extend(read_rows(path))
        except Exception as exc:  # the chain's CSV and W&B replay lack them; the state trains all the same
            log.warning("tracking: cannot read %s (%s); the chain's run lacks state %d", path, exc, k)
    return rows


def write_csvs(out_dir: str | Path, experiment: dict, state: int, rows: list[dict]) -> None:
    """Write a finished state's ``summary.csv`` and its chain's (the earlier states' lines and these)."""
    write_csv(Path(out_dir) / CSV_NAME, experiment, rows)
    write_csv(chain_dir(out_dir) / CSV_NAME, experiment, earlier_rows(out_dir, state) + rows)


def tracking_settings(config: dict | None) -> dict:
    """The ``logging`` settings with their defaults filled in."""
    config = {**DEFAULTS, **(config or {})}
    if config["wandb"]:
        config["wandb"] = {**WANDB_DEFAULTS, **config["wandb"]}
    return config


def _scalars(row: dict) -> dict[str, float]:
    cls = METHODS.get(row.get("method"))
    # what the row's method's gradient hook logs (its declared metrics), beside the fixed scalars
    own = {m.field: m.scalar_name for m in (cls.gradient_metrics if cls else ()) if m.field not in SCALARS}
    out = {}
    for key, name in {**SCALARS, **own}.items():
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


class _TensorBoard:
    def __init__(self, log_dir: Path, experiment: dict, state: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "logging.tensorboard is true but TensorBoard is not installed in the environment that "
                "trains: install it with `pip install 'prunebench[tensorboard]'` (or `pip install tensorboard`), "
                "or set logging.tensorboard: false"
            ) from None
        # this state trains anew or replays its epochs, and the later ones train again after it
        for path in log_dir.glob("events.out.tfevents.*"):
            found = _STATE_FILE.search(path.name)
            if found and int(found.group(1)) >= state:
                path.unlink(missing_ok=True)
        self.experiment = experiment
        self.writer = SummaryWriter(log_dir=str(log_dir), filename_suffix=f".state{state}")
        first, epochs = state_offset(experiment, state), state_epochs(experiment, state)
        epochs += finetune_epochs(experiment, state)
        self.writer.add_text(
            "state",
            f"{experiment['name']} ({experiment['method']}): state {state} starts, epochs {first} to {first + epochs}",
            first,
        )

    def log(self, row: dict) -> None:
        step = chain_step(self.experiment, row)
        for name, value in _scalars(row).items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, settings: dict, run_dir: Path, experiment: dict, earlier: list[dict]):
        try:
            import wandb
        except ImportError:
            raise ConfigError(
                "logging.wandb is set but the wandb package is not installed in the environment that trains: "
                "install it with `pip install wandb`, or remove logging.wandb from the config"
            ) from None
        if not settings.get("project"):
            raise ConfigError("logging.wandb needs a project: set logging.wandb.project")
        run_dir.mkdir(parents=True, exist_ok=True)
        self.experiment = experiment
        self.run = wandb.init(
            project=settings["project"],
            entity=settings.get("entity"),
            mode=settings["mode"],
            dir=str(run_dir),
            id=wandb_run_id(experiment),
            resume="allow",
            name=experiment["name"],
            # the seeds of one method: what W&B should average into one line
            group=f"{experiment['group']}-{experiment['dataset']}-{experiment['model_key']}-{experiment['method']}",
            job_type=experiment["method"],
            config={"experiment": experiment},
            reinit=True,
        )
        # a resumed online run has its steps before this one; an offline run starts empty and gets the
        # chain's earlier epochs again, so that its latest offline-run-* folder holds the whole chain
        self.next_step = int(getattr(self.run, "step", 0) or 0)
        for row in earlier:
            self.log(row)

    def log(self, row: dict) -> None:
        step = chain_step(self.experiment, row)
        if step >= self.next_step:  # W&B drops (with a warning) a step below one it has
            self.run.log(_scalars(row), step=step)
            self.next_step = step + 1

    def close(self) -> None:
        self.run.finish()


class Tracker:
    """The tracking of one running state: its live CSVs and the configured backends."""

    def __init__(
        self,
        experiment: dict | None = None,
        live_csv: Path | None = None,
        chain_csv: Path | None = None,
        earlier: list[dict] | None = None,
        backends: dict[str, Any] | None = None,
    ):
        self.experiment, self.live_csv, self.chain_csv = experiment, live_csv, chain_csv
        self.earlier, self.backends = earlier or [], backends or {}

    @classmethod
    def open(
        cls,
        out_dir: Path,
        recovery_dir: Path | None,
        experiment: dict,
        state: int,
        settings: dict | None,
        rows: list[dict],
    ) -> Tracker:
        """Start tracking state ``state`` of the chain whose state folder is ``out_dir``; its finished
        epochs so far are ``rows`` (replayed). Without ``recovery_dir`` (a copied state) there is no live CSV."""
        settings = tracking_settings(settings)
        chain = chain_dir(out_dir)
        earlier = earlier_rows(out_dir, state)
        backends: dict[str, Any] = {}
        if settings["tensorboard"]:
            backends["tensorboard"] = _TensorBoard(chain / TENSORBOARD_DIR, experiment, state)
        if settings["wandb"]:
            backends["wandb"] = _Wandb(settings["wandb"], chain, experiment, earlier)  # wandb adds wandb/
        live = Path(recovery_dir) / CSV_NAME if recovery_dir is not None else None
        tracker = cls(experiment, live, chain / CSV_NAME, earlier, backends)
        for row in rows:
            tracker._send(row)
        tracker._write_csvs(rows)
        return tracker

    def epoch(self, row: dict, rows: list[dict]) -> None:
        """Record ``row``, the newest of the state's ``rows``."""
        self._write_csvs(rows)
        self._send(row)

    def _write_csvs(self, rows: list[dict]) -> None:
        if self.live_csv is not None and rows:
            write_csv(self.live_csv, self.experiment, rows)
        if self.chain_csv is not None:
            write_csv(self.chain_csv, self.experiment, self.earlier + rows)

    def _send(self, row: dict) -> None:
        for name in list(self.backends):
            try:
                self.backends[name].log(row)
            except Exception as exc:  # tracking never stops training
                log.warning("%s logging failed (%s); it is switched off for the rest of this state", name, exc)
                self._drop(name)

    def _drop(self, name: str) -> None:
        backend = self.backends.pop(name)
        try:
            backend.close()
        except Exception as exc:
            log.warning("closing %s logging failed: %s", name, exc)

    def close(self) -> None:
        for name in list(self.backends):
            self._drop(name)


def track_copied_state0(out_dir: str | Path, experiment: dict, settings: dict | None, rows: list[dict]) -> None:
    """Write a copied (shared) state 0's epochs into its chain's tracked run, as if the chain had trained it."""
    Tracker.open(Path(out_dir), None, experiment, 0, settings, rows).close()
