"""Checkpoint writes that do not stall training: a copy now, the file written on a background thread.

:class:`CheckpointWriter` takes a checkpoint (a dict of tensors and plain values), copies every tensor
to the CPU (so training may change the live ones at once) and writes it on one background thread,
each file as :func:`prunebench.io.atomic_torch_save` writes it: a temp file beside it, fsynced, then
renamed into place. The thread runs the writes (and the side tasks queued with :meth:`then`) in the
order they were given, so crash recovery keeps its ordering: a best checkpoint is on disk before the
``resume.pt`` that names it, and older best checkpoints are deleted only after that.

A write of a file waits for the previous write of the same file, so no more than one copy per file is
ever held in memory, and the next copy goes into the memory of the last (no fresh allocation per
epoch). :meth:`close` waits for all writes (the state's end, and on an exception), and
an error of the background thread (a full disk, say) is raised in the training thread at its next
call into the writer; after a failed write the writes queued behind it are skipped, so nothing later
(a ``resume.pt`` naming a best checkpoint that failed) reaches the disk. With ``background=False``
each write happens in the call, as before.

``blocked_seconds`` adds up the time the training thread spent in the writer: the copies, and the
waits for an earlier write of the same file or for the rest at :meth:`close`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from prunebench.io import atomic_torch_save

log = logging.getLogger("prunebench")


def snapshot(obj: Any, reuse: Any = None) -> Any:
    """``obj`` with every tensor copied to the CPU (a copy even of CPU tensors: training changes those in
    place). ``reuse``: an earlier snapshot of the same structure whose write has finished; its tensors of
    the same shape and dtype are overwritten instead of allocated anew (no page faults on fresh memory)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if (
            isinstance(reuse, torch.Tensor)
            and reuse.shape == t.shape
            and reuse.dtype == t.dtype
            and reuse.is_contiguous()
            and t.layout == torch.strided
        ):
            return reuse.copy_(t)
        return t.to("cpu", copy=True)
    if isinstance(obj, dict):
        old = reuse if isinstance(reuse, dict) else {}
        return {k: snapshot(v, old.get(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        old = reuse if isinstance(reuse, type(obj)) and len(reuse) == len(obj) else [None] * len(obj)
        out = [snapshot(v, o) for v, o in zip(obj, old)]
        return out if isinstance(obj, list) else tuple(out)
    return obj


class CheckpointWriter:
    """Atomic, fsynced checkpoint writes, in order, on one background thread (or inline)."""

    def __init__(self, background: bool = True, save: Callable[[Path, Any], None] = atomic_torch_save):
        self.background = background
        self._save = save
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint") if background else None
        self._pending: dict[Path, Future] = {}
        self._copies: dict[Path, Any] = {}  # the last copy written to each file, reused by the next
        self._tasks: list[Future] = []
        self._failed: BaseException | None = None  # the background thread's first error
        self._raised = False  # whether the training thread has seen it
        self._lock = threading.Lock()
        self.blocked_seconds = 0.0
        self.written = 0

    # --- the training thread's calls ---
    def save(self, path: str | Path, obj: Any, *, copied: bool = False) -> None:
        """Write ``obj`` to ``path``; ``copied``: its tensors are already a copy training will not touch."""
        start = time.perf_counter()
        try:
            path = Path(path)
            self._raise_failed()
            if not self.background:
                self._save(path, obj)
                self.written += 1
                return
            previous = self._pending.pop(path, None)
            if previous is not None:
                self._result(previous)  # one copy of a file in flight at most
            # the previous copy of this file is on disk: its memory takes this copy
            data = obj if copied else snapshot(obj, self._copies.pop(path, None))
            if not copied:
                self._copies[path] = data
            future = self._pool.submit(self._run, lambda: self._write(path, data))
            self._pending[path] = future
            self._tasks.append(future)
        finally:
            self.blocked_seconds += time.perf_counter() - start

    def then(self, task: Callable[[], None]) -> None:
        """Run ``task`` once the writes queued so far are on disk (inline without a background thread)."""
        start = time.perf_counter()
        try:
            self._raise_failed()
            if not self.background:
                task()
                return
            self._tasks.append(self._pool.submit(self._run, task))
        finally:
            self.blocked_seconds += time.perf_counter() - start

    def wait(self) -> None:
        """Wait until every queued write is on disk; raises the first error of the background thread."""
        start = time.perf_counter()
        try:
            tasks, self._tasks = self._tasks, []
            self._pending.clear()
            self._copies.clear()
            for future in tasks:
                future.exception()  # wait for all, then raise the first error
            self._raise_failed()
        finally:
            self.blocked_seconds += time.perf_counter() - start

    def close(self, *, quiet: bool = False) -> None:
        """Wait for every write and stop the thread. ``quiet`` (while another exception propagates):
        log a failed write instead of raising it (unless the training thread has seen it already)."""
        seen = self._raised
        try:
            self.wait()
        except BaseException as exc:
            if not quiet:
                raise
            if not seen:
                log.error("a checkpoint write failed while the state was stopping: %s", exc)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(quiet=exc_type is not None)

    # --- internals ---
    def _write(self, path: Path, data: Any) -> None:
        self._save(path, data)
        self.written += 1

    def _run(self, task: Callable[[], None]) -> None:
        with self._lock:
            if self._failed is not None:
                return  # a write before this one failed: nothing after it may reach the disk
        try:
            task()
        except BaseException as exc:
            with self._lock:
                self._failed = self._failed or exc
            raise

    def _result(self, future: Future) -> None:
        future.exception()
        self._raise_failed()

    def _raise_failed(self) -> None:
        with self._lock:
            failed = self._failed
        if failed is not None:  # it stays: every later call raises it, and no later write runs
            self._tasks.clear()
            self._pending.clear()
            self._copies.clear()
            self._raised = True
            raise failed
