"""Atomic file writes: every output appears complete or not at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _file_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's own 0600 would hide results from the group)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _file_mode()


def _atomic(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to a temp file beside ``path`` and rename it into place."""

    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    _atomic(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename it into place."""
    import torch  # here, so that the report tools can write files without loading torch

    _atomic(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes (an image, say) to a temp file beside ``path`` and rename it into place."""
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` to a temp file beside ``dst`` and rename it into place (``src`` stays)."""
    _atomic(dst, lambda tmp: shutil.copyfile(src, tmp))
