"""The one checkpoint format, and reading it: a plain dict that loads with ``torch.load(weights_only=True)``.

A state checkpoint (a state's ``last.pt``, ``best.pt`` and ``init.pt``) holds the fields :data:`REQUIRED`
(and ``metrics``, ``config``, ``config_hash``), written by :func:`prunebench.train.checkpoint.make_checkpoint`.
torch is imported by :func:`load_checkpoint` only, so that importing this module stays light.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from prunebench.errors import CheckpointError

FORMAT_VERSION = 1
KIND = "prunebench-state"
REQUIRED = ("format_version", "kind", "model_spec", "state_dict", "masks", "state", "epoch", "experiment", "method")


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
    import torch

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
    import torch  # here: reading the results folder's other files needs no torch

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
