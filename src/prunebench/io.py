"""Atomic file writes: every output appears complete or not at all.

A write that fails (a full disk, a quota, a missing permission) raises :class:`WriteError` naming
the file and the cause, and leaves no temp file behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunebench.errors import WriteError


def _file_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's own 0600 would hide results from the group)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _file_mode()


_HINTS = {
    errno.ENOSPC: "free space on that filesystem (df -h {dir}) and rerun; finished files are kept",
    errno.EDQUOT: "free space within your quota on that filesystem (quota -s) and rerun",
    errno.EACCES: "make {dir} writable for this user, or run from a folder you own",
    errno.EROFS: "the filesystem is read-only; run from a writable folder",
}


def write_error(path: str | os.PathLike, exc: BaseException) -> WriteError:
    """The user-facing error for a failed write of ``path``: the file, the cause and what to do."""
    code = getattr(exc, "errno", None)
    if code is None and _is_torch_write_failure(exc):
        if not _looks_like_a_full_disk(Path(path).parent):
            # torch's C++ writer loses the OS error; the usual causes are a full disk or a quota.
            return _error(
                f"cannot write {path}: the write stopped partway (torch: {_first_line(exc)}); "
                f"this is usually a full disk or quota: free space there (df -h {Path(path).parent}; quota -s) "
                "and rerun; finished files are kept",
                errno.EIO,
            )
        code = errno.ENOSPC  # torch's C++ writer reports ENOSPC as "unexpected pos" without an errno
    cause = os.strerror(code).lower() if code else f"{type(exc).__name__}: {exc}"
    if code and getattr(exc, "filename", None) not in (None, str(path)) and not _is_temp_of(exc.filename, path):
        cause += f" ({exc.filename})"
    hint = _HINTS.get(code, "").format(dir=Path(path).parent)
    return _error(f"cannot write {path}: {cause}" + (f"; {hint}" if hint else ""), code)


def _error(message: str, code: int | None) -> WriteError:
    err = WriteError(message)
    err.errno = code
    return err


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _is_temp_of(name: Any, path: str | os.PathLike) -> bool:
    name = Path(str(name))
    return name.parent == Path(path).parent and name.name.startswith(f".{Path(path).name}.")


def _looks_like_a_full_disk(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def _atomic(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        error = None
        if (isinstance(exc, OSError) and not isinstance(exc, WriteError)) or _is_torch_write_failure(exc):
            # Named before the temp file goes: removing it gives its space back, and a disk that was
            # full when the write failed would no longer look full.
            error = write_error(path, exc)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if error is not None:
            raise error from None
        raise


def _is_torch_write_failure(exc: BaseException) -> bool:
    """torch.save's C++ writer: "[enforce fail at inline_container.cc] unexpected pos" / "file write failed"."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("inline_container" in text or "file write failed" in text)


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

    def write(tmp: str) -> None:
        # Through a Python file, so that a full disk raises OSError(ENOSPC) rather than torch's
        # C++ "unexpected pos" without a cause.
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)

    _atomic(path, write)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes (an image, say) to a temp file beside ``path`` and rename it into place."""
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` to a temp file beside ``dst`` and rename it into place (``src`` stays)."""
    _atomic(dst, lambda tmp: shutil.copyfile(src, tmp))
