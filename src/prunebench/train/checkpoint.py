"""The one checkpoint format: a plain dict that loads with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from prunebench.config import same_training, settings_diff, training_hash
from prunebench.errors import CheckpointError
from prunebench.io import atomic_torch_save
from prunebench.train.metrics import retrain_command

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


def _what_else(path: Path) -> str | None:
    """What a file torch cannot load is, when it is plainly not a PyTorch checkpoint (None: it looks
    like one, damaged: a zip cut short, or torch's own format)."""
    size = path.stat().st_size
    if size == 0:
        return "an empty file"
    with path.open("rb") as f:
        head = f.read(4096)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return None
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return f"a zip archive of {len(names)} files ({shown}), not one written by torch.save"
    if head.startswith((b"PK", b"\x80")):
        return None  # a zip without its end (truncated), or a pickle
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        return "a safetensors file (bare weights, without the masks and settings of a state)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = head[: exc.start].decode("utf-8") if exc.start > len(head) - 4 else None  # a character cut at 4 KiB
    if text is not None and "\x00" not in text:
        first = text.strip().splitlines()[0][:60] if text.strip() else ""
        return f"a text file of {size:,} bytes (it begins {first!r})"
    return f"a binary file of {size:,} bytes in no format prunebench reads (it begins {head[:8].hex(' ')})"


def _what_loaded(obj: Any) -> str:
    """What a torch file that is not a state checkpoint holds."""
    if isinstance(obj, dict) and obj.get("kind") == KIND:
        return f"it lacks the fields {', '.join(k for k in REQUIRED if k not in obj)} (written by another version?)"
    if isinstance(obj, dict) and isinstance(obj.get("kind"), str):
        return f"it is a {obj['kind']!r} file"
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return f"it holds bare weights ({len(obj)} tensors), without the masks and settings of a state"
    if isinstance(obj, dict):
        return f"it holds a dict without a state checkpoint's fields ({', '.join(map(str, list(obj)[:5]))})"
    return f"it holds a {type(obj).__name__}"


def load_checkpoint(path: str | Path, expect: dict[str, Any] | None = None) -> dict:
    """Load and check a checkpoint; ``expect`` maps fields (experiment, method, state...) to required values."""
    path = Path(path)
    fix = "delete it and rerun the workflow so that it is rebuilt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; rerun the workflow to build it")
    foreign = f"give a state's last.pt or best.pt instead, or if the workflow wrote this file, {fix}"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        what = _what_else(path)
        if what is not None:
            raise CheckpointError(f"{path} is not a checkpoint: it is {what}; {foreign}") from None
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc}); {fix}"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != KIND or any(k not in ckpt for k in REQUIRED):
        raise CheckpointError(f"{path} is not a prunebench state checkpoint: {_what_loaded(ckpt)}; {foreign}")
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
