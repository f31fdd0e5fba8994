"""Writing state checkpoints, and loading one that must be a given state trained under given settings
(the format, and reading a checkpoint, are :mod:`prunebench.results.checkpoint`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from prunebench.config import same_training, settings_diff, training_hash
from prunebench.errors import CheckpointError
from prunebench.io import atomic_torch_save
from prunebench.results.checkpoint import FORMAT_VERSION, KIND, load_checkpoint
from prunebench.results.layout import retrain_command


def make_checkpoint(
    *,
    experiment: dict,
    model_spec: dict,
    model: torch.nn.Module,
    masks: dict[str, torch.Tensor],
    state: int,
    epoch: int,
    metrics: dict[str, Any],
) -> dict:
    """A checkpoint dict holding only tensors and plain Python types, with the ``config_hash`` of the
    settings it was trained under."""
    return {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "experiment": experiment["name"],
        "method": experiment["method"],
        "model_spec": model_spec,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "masks": {k: v.detach().cpu().clone() for k, v in masks.items()},
        "state": int(state),
        "epoch": int(epoch),
        "metrics": metrics,
        "config": experiment,
        "config_hash": training_hash(experiment),
    }


def save_checkpoint(path: str | Path, ckpt: dict) -> None:
    atomic_torch_save(path, ckpt)


def trained_hash(ckpt: dict) -> str | None:
    """The ``config_hash`` a checkpoint was trained under; for one written before prunebench stored it,
    the hash of the resolved config it holds (None when it holds neither)."""
    if ckpt.get("config_hash"):
        return ckpt["config_hash"]
    return training_hash(ckpt["config"]) if isinstance(ckpt.get("config"), dict) else None


def check_trained_for(ckpt: dict, path: str | Path, experiment: dict, state: int, spec: dict | None = None) -> None:
    """Refuse a checkpoint that is not state ``state`` of ``experiment`` as configured now: another
    experiment, method, state or model, or the same one trained under other settings."""
    path, name = Path(path), experiment["name"]
    fix = (
        f"restore the config it was trained with, or train it and the later states of {name} again with the "
        f"current settings: {retrain_command(path.parent)}"
    )
    for key, want in (("experiment", name), ("method", experiment["method"]), ("state", state)):
        if ckpt.get(key) != want:
            raise CheckpointError(
                f"checkpoint {path} is for {key} {ckpt.get(key)!r}, expected {want!r}: it was copied from "
                f"another run or left by an older one; {fix}"
            )
    if spec is not None and ckpt["model_spec"] != spec:
        raise CheckpointError(
            f"checkpoint {path} was trained for model {ckpt['model_spec']}, but {name} now builds {spec}; {fix}"
        )
    have, want = trained_hash(ckpt), training_hash(experiment)
    if have is None:
        raise CheckpointError(
            f"checkpoint {path} records no settings it was trained under, so it cannot be checked against "
            f"{name}'s config; {fix}"
        )
    if not same_training(have, ckpt.get("config"), want):
        diff = settings_diff(ckpt["config"], experiment) if isinstance(ckpt.get("config"), dict) else []
        what = f" ({'; '.join(diff)})" if diff else ""
        raise CheckpointError(
            f"checkpoint {path} was trained under other settings than {name} has now{what}: config hash "
            f"{have[:12]} in the file, {want[:12]} expected; {fix}"
        )


def load_trained(path: str | Path, experiment: dict, state: int, spec: dict | None = None) -> dict:
    """Load a checkpoint that must be state ``state`` of ``experiment`` under its current settings."""
    ckpt = load_checkpoint(path)
    check_trained_for(ckpt, path, experiment, state, spec)
    return ckpt
