"""Per-epoch tracking beside ``metrics.jsonl``: a CSV always, TensorBoard and W&B when configured.

The state runner calls :meth:`Tracker.epoch` with every metrics row it appends (epoch 0, the
evaluation right after pruning, included). What each backend keeps:

- ``summary.csv`` (timm's name and layout): one line per epoch, :data:`CSV_FIELDS`. While the state
  runs it is rewritten (atomically) in the recovery folder after every epoch; the finished state
  writes it into its folder beside ``metrics.jsonl``. It is not a declared output of the workflow:
  an upgrade that added one would have made every finished state look incomplete.
- TensorBoard (``logging.tensorboard: true``, needs the ``tensorboard`` extra): event files in
  ``{state folder}/tensorboard/``, one scalar per metric with the state-local epoch as step.
- W&B (``logging.wandb: {project, mode}``, needs ``wandb``): one run per state, named
  ``{experiment}/state{k}``, with the resolved experiment as its config; ``mode: offline`` (the
  default) writes it under ``{state folder}/wandb/`` for ``wandb sync`` later (a resumed state adds
  a run there that replays the epochs before the resume: sync the latest).

A resumed state starts its backends afresh and replays the epochs it had finished, so each holds
the whole state once. A backend that fails while the state trains is switched off with a warning:
tracking never stops training. One that cannot start (its package missing) stops the state before
it trains, naming what to install.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import shutil
from pathlib import Path
from typing import Any

from prunebench.errors import ConfigError
from prunebench.io import atomic_write_text

log = logging.getLogger("prunebench")

CSV_NAME = "summary.csv"
CSV_FIELDS = (
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_acc", "lr", "reg_lambda", "density",
    "epoch_seconds", "images_per_second", "train_seconds", "eval_seconds", "checkpoint_seconds",
)  # fmt: skip
# TensorBoard / W&B names of the metrics (grouped the way their dashboards show them)
SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "test_acc": "accuracy/test",
    "lr": "optim/lr",
    "reg_lambda": "optim/rsst_lambda",
    "density": "pruning/density",
    "params_alive": "pruning/params_alive",
    "epoch_seconds": "time/epoch_seconds",
    "images_per_second": "time/images_per_second",
    "eval_seconds": "time/eval_seconds",
    "checkpoint_seconds": "time/checkpoint_seconds",
}
DEFAULTS = {"tensorboard": False, "wandb": None}
WANDB_DEFAULTS = {"mode": "offline", "entity": None}


def csv_text(rows: list[dict]) -> str:
    """The rows as timm-style CSV (empty cells for values an epoch does not have, e.g. epoch 0's loss,
    or val/test of an epoch that ``train.eval_every`` left unevaluated)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_FIELDS})
    return buf.getvalue()


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """Write (replace, atomically) a state's ``summary.csv``."""
    atomic_write_text(path, csv_text(rows))


def tracking_settings(config: dict | None) -> dict:
    """The ``logging`` settings with their defaults filled in."""
    config = {**DEFAULTS, **(config or {})}
    if config["wandb"]:
        config["wandb"] = {**WANDB_DEFAULTS, **config["wandb"]}
    return config


def _scalars(row: dict) -> dict[str, float]:
    out = {}
    for key, name in SCALARS.items():
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
        shutil.rmtree(log_dir, ignore_errors=True)  # a resumed state replays its epochs: one stream
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.writer.add_text("experiment", f"{experiment['name']}, state {state} ({experiment['method']})", 0)

    def log(self, row: dict) -> None:
        for name, value in _scalars(row).items():
            self.writer.add_scalar(name, value, global_step=int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, settings: dict, run_dir: Path, experiment: dict, state: int):
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
        self.run = wandb.init(
            project=settings["project"],
            entity=settings.get("entity"),
            mode=settings["mode"],
            dir=str(run_dir),
            name=f"{experiment['name']}/state{state}",
            group=experiment["name"],
            job_type=experiment["method"],
            config={"experiment": experiment, "state": state},
            reinit=True,
        )

    def log(self, row: dict) -> None:
        self.run.log(_scalars(row), step=int(row["epoch"]))

    def close(self) -> None:
        self.run.finish()


class Tracker:
    """The tracking of one running state: the live CSV and the configured backends."""

    def __init__(self, live_csv: Path, backends: dict[str, Any]):
        self.live_csv, self.backends = live_csv, backends

    @classmethod
    def open(
        cls, out_dir: Path, recovery_dir: Path, experiment: dict, state: int, settings: dict | None, rows: list[dict]
    ) -> Tracker:
        """Start tracking a state whose finished epochs so far are ``rows`` (replayed to the backends)."""
        settings = tracking_settings(settings)
        backends: dict[str, Any] = {}
        if settings["tensorboard"]:
            backends["tensorboard"] = _TensorBoard(Path(out_dir) / "tensorboard", experiment, state)
        if settings["wandb"]:
            backends["wandb"] = _Wandb(settings["wandb"], Path(out_dir), experiment, state)  # wandb adds wandb/
        tracker = cls(Path(recovery_dir) / CSV_NAME, backends)
        for row in rows:
            tracker._send(row)
        if rows:
            write_csv(tracker.live_csv, rows)
        return tracker

    def epoch(self, row: dict, rows: list[dict]) -> None:
        """Record ``row``, the newest of the state's ``rows``."""
        write_csv(self.live_csv, rows)
        self._send(row)

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
