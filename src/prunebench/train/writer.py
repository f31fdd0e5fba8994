"""Checkpoint writes that do not stall training: one copy now, the file written on a background thread.

:class:`CheckpointWriter` takes a checkpoint (a dict of tensors and plain values, the tensors the live
ones of the model and optimizer), copies every tensor once into host memory (so training may change
the live ones at once) and writes it on one background thread, each file as
:func:`prunebench.io.atomic_torch_save` writes it: a temp file beside it, fsynced, then renamed into
place. The thread runs the writes (and the side tasks queued with :meth:`then`) in the order they were
given, so crash recovery keeps its ordering: a best checkpoint is on disk before the ``resume.pt``
that names it, and older best checkpoints are deleted only after that.

The host copies live in buffers reused write after write: every write names a *slot* (its file, or a
name shared by files of which only the newest matters: the best checkpoints, one file per epoch). A
write waits for the previous write of its slot, so no more than one copy per slot is ever held in
memory, and the next copy goes into the memory of the last (no fresh allocation, no page faults, per
epoch). A CUDA tensor is copied into pinned host memory with a non-blocking copy; the background
thread waits for the copies (a CUDA event recorded behind them) before it writes, while the training
thread goes on. :meth:`close` waits for all writes (the state's end, and on an exception), and an
error of the background thread (a full disk, say) is raised in the training thread at its next call
into the writer; after a failed write the writes queued behind it are skipped, so nothing later (a
``resume.pt`` naming a best checkpoint that failed) reaches the disk. With ``background=False`` each
write happens in the call (CPU tensors written as they are, others copied to the host first).

``blocked_seconds`` adds up the time the training thread spent in the writer: the copies, and the
waits for an earlier write of the same slot or for the rest at :meth:`close`.
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


def snapshot(obj: Any, reuse: Any = None, *, events: dict | None = None, keep_cpu: bool = False) -> Any:
    """``obj`` with every tensor copied once into host memory (a copy even of CPU tensors: training
    changes those in place).

    ``reuse``: an earlier snapshot of the same structure whose write has finished; its tensors of the
    same shape and dtype (pinned, for a CUDA tensor) are overwritten instead of allocated anew. A CUDA
    tensor goes into pinned memory by a non-blocking copy: ``events`` (a dict) receives a CUDA event
    per device, recorded behind the copies, for the writer to wait on before it reads them (without
    ``events`` the copies are waited for here). ``keep_cpu``: CPU tensors are returned as they are (a
    write that happens before training goes on needs no copy of them)."""
    pending: dict = {}
    out = _snapshot(obj, reuse, pending, keep_cpu)
    for device in pending:  # one event per device, behind all of its copies
        pending[device] = torch.cuda.Event()
        pending[device].record(torch.cuda.current_stream(device))
    if events is None:
        for event in pending.values():
            event.synchronize()
    else:
        events.update(pending)
    return out


def _snapshot(obj: Any, reuse: Any, events: dict, keep_cpu: bool) -> Any:
    if isinstance(obj, torch.Tensor):
        return _copy_tensor(obj.detach(), reuse, events, keep_cpu)
    if isinstance(obj, dict):
        old = reuse if isinstance(reuse, dict) else {}
        return {k: _snapshot(v, old.get(k), events, keep_cpu) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        old = reuse if isinstance(reuse, type(obj)) and len(reuse) == len(obj) else [None] * len(obj)
        out = [_snapshot(v, o, events, keep_cpu) for v, o in zip(obj, old)]
        return out if isinstance(obj, list) else tuple(out)
    return obj


def _copy_tensor(t: torch.Tensor, reuse: Any, events: dict, keep_cpu: bool) -> torch.Tensor:
    """``t`` copied into host memory: into ``reuse`` where it fits, else into a new (pinned, for CUDA) tensor."""
    if keep_cpu and t.device.type == "cpu":
        return t
    if t.layout != torch.strided:
        return t.to("cpu", copy=True)  # sparse: as torch copies it
    cuda = t.device.type == "cuda"
    fits = (
        isinstance(reuse, torch.Tensor)
        and reuse.shape == t.shape
        and reuse.dtype == t.dtype
        and reuse.is_contiguous()
        and (not cuda or reuse.is_pinned())
    )
    out = reuse if fits else torch.empty(t.shape, dtype=t.dtype, pin_memory=cuda)
    out.copy_(t, non_blocking=cuda)
    if cuda:
        events.setdefault(t.device, None)  # its event is recorded once all copies are queued
    return out


class CheckpointWriter:
    """Atomic, fsynced checkpoint writes, in order, on one background thread (or inline)."""

    def __init__(self, background: bool = True, save: Callable[[Path, Any], None] = atomic_torch_save):
        self.background = background
        self._save = save
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint") if background else None
        self._pending: dict[str | Path, tuple[Path, Future]] = {}  # a slot's write in flight, and its file
        self._copies: dict[str | Path, Any] = {}  # the last copy of each slot, reused by its next write
        self._tasks: list[Future] = []
        self._failed: BaseException | None = None  # the background thread's first error
        self._raised = False  # whether the training thread has seen it
        self._lock = threading.Lock()
        self.blocked_seconds = 0.0
        self.written = 0

    # --- the training thread's calls ---
    def save(self, path: str | Path, obj: Any, *, slot: str | None = None) -> None:
        """Write ``obj`` to ``path``, its tensors copied once, now, into the host buffers of ``slot``
        (default: the file's own), so that training may change the live tensors at once."""
        start = time.perf_counter()
        try:
            path = Path(path)
            key = path if slot is None else slot
            self._raise_failed()
            previous = self._pending.pop(key, None)
            if previous is not None:
                self._result(previous[1])  # one copy of a slot in flight at most
            # the slot's previous copy is on disk: its memory takes this copy
            events: dict = {}
            data = snapshot(obj, self._copies.pop(key, None), events=events, keep_cpu=not self.background)
            self._copies[key] = data
            if not self.background:
                self._write(path, data, events)
                return
            future = self._pool.submit(self._run, lambda: self._write(path, data, events))
            self._pending[key] = (path, future)
            self._tasks.append(future)
        finally:
            self.blocked_seconds += time.perf_counter() - start

    def wait_for(self, path: str | Path) -> None:
        """Wait until the write of ``path`` queued last is on disk (nothing when none is in flight)."""
        start = time.perf_counter()
        try:
            path = Path(path)
            for key, (target, future) in list(self._pending.items()):
                if target == path:
                    del self._pending[key]
                    self._result(future)
            self._raise_failed()
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
    def _write(self, path: Path, data: Any, events: dict) -> None:
        for event in events.values():  # the non-blocking device-to-host copies have landed
            event.synchronize()
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
