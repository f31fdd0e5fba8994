"""Writing state checkpoints, and loading one that must be a given state trained under given settings
(the format, and reading a checkpoint, are :mod:`prunebench.results.checkpoint`; the check, in
:mod:`prunebench.config.checkpoints`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from prunebench.config import check_trained_for, training_hash
from prunebench.io import atomic_torch_save
from prunebench.results.checkpoint import FORMAT_VERSION, KIND, load_checkpoint


def make_checkpoint(
    *,
    experiment: dict,
    model_spec: dict,
    model: torch.nn.Module,
    masks: dict[str, torch.Tensor],
    state: int,
    epoch: int,
    metrics: dict[str, Any],
    copy: bool = True,
) -> dict:
    """A checkpoint dict holding only tensors and plain Python types, with the ``config_hash`` of the
    settings it was trained under.

    ``copy``: its tensors are copies on the CPU (one copy each). False: they are the model's and the
    masks' live tensors, for :meth:`prunebench.train.writer.CheckpointWriter.save`, which copies them
    once into its reused host buffers (a second copy here would double the per-epoch cost)."""

    def held(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to("cpu", copy=True) if copy else t.detach()

    return {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "experiment": experiment["name"],
        "method": experiment["method"],
        "model_spec": model_spec,
        "state_dict": {k: held(v) for k, v in model.state_dict().items()},
        "masks": {k: held(v) for k, v in masks.items()},
        "state": int(state),
        "epoch": int(epoch),
        "metrics": metrics,
        "config": experiment,
        "config_hash": training_hash(experiment),
    }


def save_checkpoint(path: str | Path, ckpt: dict) -> None:
    atomic_torch_save(path, ckpt)


def load_trained(path: str | Path, experiment: dict, state: int, spec: dict | None = None) -> dict:
    """Load a checkpoint that must be state ``state`` of ``experiment`` under its current settings."""
    ckpt = load_checkpoint(path)
    check_trained_for(ckpt, path, experiment, state, spec)
    return ckpt
