"""One trainer per state, and a finished state never trained twice, whenever a process dies.

Two guarantees sit around :func:`prunebench.train.state.run_state`, both kept in the state's
recovery folder (``results/{experiment}/recovery/state{k}/``, outside the declared outputs, so
Snakemake never deletes it):

- **One trainer.** ``trainer.lock`` is locked (``fcntl.flock``, exclusive) first thing and held until
  the state's process ends; the kernel drops it however the process dies. A second trainer of the
  same state (an orphaned job and its rerun, a duplicate submission) stops at once with one message
  naming the holder's PID and host, which the holder writes into the lock file.
- **A finished state is adopted, not retrained.** The state's outputs are written first into
  ``finished/``, then sealed by ``manifest.json`` (sizes, sha256, the training-config hash, the
  experiment, method and state, and the sha256 of the previous state's checkpoint it started
  from), written and fsynced last, then hard-linked (or copied) into the declared outputs. If
  Snakemake dies before it records the job, ``rerun-incomplete`` deletes the outputs and reruns the
  job; that job finds the sealed bundle, verifies it and links it back in seconds. An unsealed or
  inconsistent bundle is set aside with a warning and the state trains (resuming where it can).

The bundle is released (with the rest of the recovery folder) once Snakemake has surely recorded
the state: when a job that reads the state's outputs starts (the next state, the copy of a shared
state 0, the export of the final state). Hard links cost no space meanwhile.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prunebench.config import training_hash
from prunebench.errors import CheckpointError, PrunebenchError, StateBusyError
from prunebench.io import atomic_copy, atomic_write_json
from prunebench.train.checkpoint import save_checkpoint
from prunebench.train.metrics import PREDICTIONS_NAME, write_predictions, write_rows

if TYPE_CHECKING:
    from prunebench.train.state import StatePaths

log = logging.getLogger("prunebench")

LOCK_NAME = "trainer.lock"
FINISHED = "finished"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
OUTPUTS = ("last.pt", "best.pt", "metrics.jsonl", "summary.json")  # summary last: it marks a state done
# Published with the outputs but not declared to Snakemake (a new declared output would make it train
# every finished state again): a bundle sealed before such a file existed, or without it, is whole.
OPTIONAL = (PREDICTIONS_NAME,)


def output_names(state: int) -> tuple[str, ...]:
    """The declared outputs of a state, in the order they are published."""
    return ("init.pt", *OUTPUTS) if state == 0 else OUTPUTS


def bundle_names(bundle: Path, state: int) -> tuple[str, ...]:
    """The files a finished bundle publishes: the declared outputs, then the optional files it has
    (before the summary, which marks a state done)."""
    extra = tuple(name for name in OPTIONAL if (Path(bundle) / name).is_file())
    names = output_names(state)
    return (*names[:-1], *extra, names[-1])


def drop_optional(out_dir: str | Path) -> None:
    """Remove the optional files of a state's outputs: a state that trains again must not leave an
    earlier run's files beside its new outputs (Snakemake removes the declared ones)."""
    for name in OPTIONAL:
        (Path(out_dir) / name).unlink(missing_ok=True)


def recovery_dir_of(state_dir: str | Path) -> Path:
    """The recovery folder of the state whose outputs are in ``state_dir`` (``{run}/state{k}`` ->
    ``{run}/recovery/state{k}``, the layout of rules/common.smk and StatePaths.under)."""
    state_dir = Path(state_dir)
    return state_dir.parent / "recovery" / state_dir.name


# --- one trainer per state ---------------------------------------------------------------------


@dataclass
class StateLock:
    """An exclusive lock on a state's recovery folder; released by :meth:`release` or by process death."""

    fd: int
    path: Path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = -1


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"PID {info['pid']} on host {info['host']} (since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its PID yet"


def lock_state(recovery_dir: str | Path, label: str) -> StateLock:
    """Lock ``recovery_dir`` for this process, or raise StateBusyError naming the process that holds it."""
    recovery_dir = Path(recovery_dir)
    recovery_dir.mkdir(parents=True, exist_ok=True)
    path = recovery_dir / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CheckpointError(f"lock file {path} is a symbolic link; remove it and rerun") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StateBusyError(
                f"{label} is already being trained by {holder}, which holds {path}. This process stops "
                "so that the two do not overwrite each other's files. Let that one finish (a rerun then "
                "takes its result) or end it, then rerun; the lock goes with its process, however it ends."
            ) from None
        except OSError as exc:
            os.close(fd)
            raise PrunebenchError(
                f"cannot lock {path} ({exc.strerror}): the file system of the results folder does not support "
                "file locks, which keep two trainers off one state; put results/ on one that does"
            ) from None
        # A finished state's folder may have been released between our open and our lock: then the
        # locked file is no longer the one at `path`, and a newcomer could lock a fresh one.
        try:
            current = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            break
        os.close(fd)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps({**info, "what": label}) + "\n").encode(), 0)
    return StateLock(fd, path)


# --- the finished bundle -------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _bundle(paths: StatePaths) -> Path:
    return Path(paths.recovery_dir) / FINISHED


def drop_progress(paths: StatePaths) -> None:
    """Remove the recovery files of a running state (resume checkpoint, best so far, metrics so far),
    keeping the lock and the finished bundle."""
    paths.resume.unlink(missing_ok=True)  # first: a kill while the rest goes must not leave a resume point
    if not paths.recovery_dir.is_dir():
        return
    for entry in paths.recovery_dir.iterdir():
        if entry.name in (LOCK_NAME, FINISHED):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def finish_state(
    paths: StatePaths,
    experiment: dict,
    state: int,
    *,
    last: dict,
    best: Path,
    rows: list[dict],
    summary: dict,
    init: dict | None = None,
    predictions: dict | None = None,
) -> None:
    """Write a finished state's outputs: into its bundle, sealed by the manifest, then into place.

    ``last`` and ``init`` are checkpoint dicts, ``best`` the recovery file holding the best
    checkpoint, ``rows`` the metrics, ``summary`` the summary (its ``config_hash`` is set here),
    ``predictions`` the per-image test predictions (``targets``, ``final``, ``best``; see
    :data:`prunebench.train.metrics.PREDICTIONS_NAME`), written when given.
    """
    bundle = _bundle(paths)
    shutil.rmtree(bundle, ignore_errors=True)  # what an attempt killed before its seal left
    summary["config_hash"] = training_hash(experiment)
    if state == 0:
        if init is None:
            raise ValueError("state 0 writes init.pt: pass its checkpoint")
        save_checkpoint(bundle / "init.pt", init)
    save_checkpoint(bundle / "last.pt", last)
    atomic_copy(best, bundle / "best.pt")
    write_rows(bundle / "metrics.jsonl", rows)
    if predictions is not None:
        write_predictions(bundle / PREDICTIONS_NAME, **predictions)
    atomic_write_json(bundle / "summary.json", summary)
    _seal(bundle, paths, experiment, state)
    _publish(bundle, paths.out_dir, bundle_names(bundle, state))
    drop_progress(paths)


def _seal(bundle: Path, paths: StatePaths, experiment: dict, state: int) -> None:
    files = {
        name: {"size": (bundle / name).stat().st_size, "sha256": _sha256(bundle / name)}
        for name in bundle_names(bundle, state)
    }
    manifest = {
        "version": MANIFEST_VERSION,
        "experiment": experiment["name"],
        "method": experiment["method"],
        "state": state,
        "config_hash": training_hash(experiment),
        "previous_sha256": _sha256(Path(paths.previous)) if paths.previous else None,
        "files": files,
        "written_by": {"pid": os.getpid(), "host": socket.gethostname()},
        "written_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _fsync_dir(bundle)  # the files' names first, then the manifest that vouches for them
    atomic_write_json(bundle / MANIFEST, manifest)
    _fsync_dir(bundle)


def _publish(bundle: Path, out_dir: Path, names: tuple[str, ...]) -> None:
    """Hard-link (or, where links are impossible, copy) the bundle's files into the declared outputs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OPTIONAL:
        if name not in names:
            (out_dir / name).unlink(missing_ok=True)  # not this bundle's: an earlier run's
    for name in names:
        src, dst = bundle / name, out_dir / name
        tmp = out_dir / f".{name}.{os.getpid()}.link"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
            os.replace(tmp, dst)
        except OSError:  # no hard links here (another filesystem, or one without them)
            tmp.unlink(missing_ok=True)
            atomic_copy(src, dst)
        os.utime(dst)  # produced now, as far as Snakemake's timestamps are concerned
    _fsync_dir(out_dir)


def _why_not(bundle: Path, paths: StatePaths, experiment: dict, state: int) -> str | None:
    """Why a sealed bundle cannot stand for the state as configured now, or None when it can."""
    try:
        manifest = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"has an unreadable manifest ({exc})"
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        return "has a manifest of another prunebench version"
    want = {"experiment": experiment["name"], "method": experiment["method"], "state": state}
    for key, value in want.items():
        if manifest.get(key) != value:
            return f"is of {key} {manifest.get(key)!r}, not {value!r}"
    if manifest.get("config_hash") != training_hash(experiment):
        return "was trained under other settings than the experiment has now"
    if paths.previous and manifest.get("previous_sha256") != _sha256(Path(paths.previous)):
        return f"started from another {paths.previous} than the one there now (it was rebuilt since)"
    files = manifest.get("files") or {}
    optional = [name for name in OPTIONAL if name in files]  # sealed before the file existed: not listed
    for name in OPTIONAL:
        if name not in files and (bundle / name).exists():
            return f"has a {name} that its manifest does not list"
    for name in (*output_names(state), *optional):
        path, entry = bundle / name, files.get(name)
        if not entry:
            return f"lists no {name}"
        if not path.is_file() or path.stat().st_size != entry.get("size"):
            return f"has a missing or truncated {name}"
        if _sha256(path) != entry.get("sha256"):
            return f"has a {name} whose contents changed since it was written"
    return None


def adopt_finished(paths: StatePaths, experiment: dict, state: int) -> dict | None:
    """If an earlier attempt finished this state, put its verified outputs back in place and return
    its summary; otherwise set aside whatever bundle is there and return None (the state trains)."""
    bundle = _bundle(paths)
    if not bundle.is_dir():
        return None
    if paths.previous and not Path(paths.previous).is_file():
        return None  # nothing to verify it against; loading the previous state names the problem
    if not (bundle / MANIFEST).is_file():  # killed while writing it: the state resumes after its last epoch
        log.info("finished outputs in %s were never sealed; writing them again", bundle)
        shutil.rmtree(bundle, ignore_errors=True)
        return None
    why = _why_not(bundle, paths, experiment, state)
    if why is not None:
        log.warning("finished outputs in %s %s; setting them aside and training the state", bundle, why)
        shutil.rmtree(bundle, ignore_errors=True)
        return None
    _publish(bundle, paths.out_dir, bundle_names(bundle, state))
    drop_progress(paths)
    summary = json.loads((bundle / "summary.json").read_text(encoding="utf-8"))
    log.info(
        "adopted the finished state from %s: state %d of %s was trained to the end by an earlier attempt "
        "(final test %.2f); no epoch is trained again",
        bundle, state, experiment["name"], summary["final_test_acc"],
    )  # fmt: skip
    return summary


def release_finished(state_dir: str | Path) -> None:
    """Remove the recovery folder (finished bundle included) of the state whose outputs are in
    ``state_dir``: called when a job that reads those outputs starts, so Snakemake has recorded them."""
    rec = recovery_dir_of(state_dir)
    if not (rec / FINISHED).is_dir():
        return
    try:
        lock = lock_state(rec, f"the state in {state_dir}")
    except StateBusyError as exc:
        log.warning("kept %s: %s", rec, exc)
        return
    try:
        shutil.rmtree(rec, ignore_errors=True)
    finally:
        lock.release()
