"""Resuming a killed state: the progress kept after every epoch, and the resume checkpoint that holds it.

After every epoch rank 0 queues ``resume.pt`` in the state's recovery folder (:func:`save_resume`): the
model, optimizer, generator and RNG states, the plan, the method's own state, the predictions kept so
far and the :class:`Progress`. A rerun of the state continues from it (:func:`try_resume`) when it is
of this very state, config and predecessor; any other one is set aside and the state starts afresh.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch

from prunebench.config import training_hash
from prunebench.results.layout import StatePaths
from prunebench.results.metrics import read_rows
from prunebench.train import ranks
from prunebench.train.recovery import drop_progress

log = logging.getLogger("prunebench")

RESUME_VERSION = 3  # 2: best checkpoints named by epoch; 3: the method's own state


@dataclass
class Progress:
    """How far a state has come: what ``resume.pt`` keeps (its ``rows`` are the recovery folder's metrics)."""

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


def previous_stamp(paths: StatePaths) -> list[int] | None:
    """Size and mtime of the previous state's checkpoint: a rebuilt predecessor makes a resume stale."""
    if paths.previous is None:
        return None
    st = os.stat(paths.previous)
    return [st.st_size, st.st_mtime_ns]


def config_fits(config, experiment: dict) -> bool:
    """Whether a resume checkpoint's config trains what ``experiment`` trains (torch.compile or the
    tracking may differ: a resume goes on under the settings of now)."""
    if not isinstance(config, dict) or config.get("name") != experiment["name"]:
        return False
    return config == experiment or training_hash(config) == training_hash(experiment)


def try_resume(paths: StatePaths, experiment: dict, state: int):
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
            or not config_fits(res.get("config"), experiment)
            or res.get("state") != state
        ):
            why = "is for another run or config"
        elif res.get("previous") != previous_stamp(paths):
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


def save_resume(paths: StatePaths, runner, progress: Progress) -> None:
    """Queue the epoch's resume checkpoint (the writer copies everything now), after the best checkpoint it names.

    ``runner``: the :class:`prunebench.train.runner.StateRunner` of the state."""
    if not ranks.is_main():
        return
    plan = runner.plan
    runner.sync_dense()  # a slim run's model and optimizer state are kept dense-shaped, as a masked run's
    runner.writer.save(paths.resume, {
        "version": RESUME_VERSION,
        "config": runner.experiment,
        "state": runner.state,
        "previous": previous_stamp(paths),
        "model": runner.model.state_dict(),  # live tensors: the writer copies them once, into its reused buffers
        "optimizer": runner.dense_optimizer_state(),
        "generator": runner.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "plan": {"density": plan.density, "train": plan.train_masks, "final": plan.final_masks, "penalized": plan.penalized},
        "method": runner.method.state_dict(),  # what the method keeps across epochs
        "predictions": dict(runner.predictions),  # CPU tensors, replaced (never changed in place) when kept
        "progress": {k: v for k, v in vars(progress).items() if k != "rows"},
    })  # fmt: skip
    best = progress.best_epoch
    runner.writer.then(lambda: paths.drop_best_except(best))  # only once it is on disk is an earlier best unneeded
