"""The one checkpoint format: a plain dict that loads with ``torch.load(weights_only=True)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from prunebench.errors import CheckpointError
from prunebench.io import atomic_torch_save

FORMAT_VERSION = 1
KIND = "prunebench-state"
REQUIRED = ("format_version", "kind", "model_spec", "state_dict", "masks", "state", "epoch", "experiment", "method")


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
    """A checkpoint dict holding only tensors and plain Python types."""
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
    }


def save_checkpoint(path: str | Path, ckpt: dict) -> None:
    atomic_torch_save(path, ckpt)


def load_checkpoint(path: str | Path, expect: dict[str, Any] | None = None) -> dict:
    """Load and check a checkpoint; ``expect`` maps fields (experiment, method, state...) to required values."""
    path = Path(path)
    fix = "delete it and rerun the workflow so that it is rebuilt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; rerun the workflow to build it")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc}); {fix}"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != KIND or any(k not in ckpt for k in REQUIRED):
        raise CheckpointError(f"{path} is not a prunebench state checkpoint; {fix}")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {ckpt['format_version']}, this prunebench reads "
            f"version {FORMAT_VERSION}; {fix}"
        )
    for key, want in (expect or {}).items():
        have = ckpt["model_spec"].get("arch") if key == "arch" else ckpt.get(key)
        if have != want:
            raise CheckpointError(f"checkpoint {path} is for {key} {have!r}, expected {want!r}; {fix}")
    return ckpt
