"""One trainer per state, and a finished state never trained twice, whenever a process dies.

Two guarantees sit around :func:`prunebench.train.job.train_state`, both kept in the state's
recovery folder (``results/{experiment}/recovery/state{k}/``, outside the declared outputs, so
Snakemake never deletes it):

- **One trainer.** ``trainer.lock`` is locked (``fcntl.flock``, exclusive) first thing and held until
  the state's process ends; the kernel drops it however the process dies. A second trainer of the
  same state (an orphaned job and its rerun, a duplicate submission) stops at once with one message
  naming the holder's PID and host, which the holder writes into the lock file. A state trained by
  several processes (``train/distributed.py``) has a second lock, ``ranks.lock``: every process holds
  it shared for as long as it lives, and the job takes it exclusively before it starts its own, so a
  rerun waits for the processes of a killed attempt to end and never trains beside them.
- **A finished state is adopted, not retrained.** The state's outputs are written first into
  ``finished/``, then sealed by ``manifest.json`` (sizes, sha256, the training-config hash, the
  experiment, method and state, and the sha256 of the previous state's checkpoint it started
  from), written and fsynced last, then hard-linked (or copied) into the declared outputs. If
  Snakemake dies before it records the job, ``rerun-incomplete`` deletes the outputs and reruns the
  job; that job finds the sealed bundle, verifies it and links it back in seconds. An unsealed or
  inconsistent bundle is set aside with a warning and the state trains (resuming where it can).

The summary itself records the sha256 and size of the state's checkpoints (``files``): the bundle
goes, the summary stays, so a later state checks its inputs against it (:func:`check_recorded`).

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

from prunebench.config import training_hash
from prunebench.errors import CheckpointError, PrunebenchError, StateBusyError
from prunebench.io import atomic_copy, atomic_write_json
from prunebench.results.layout import (
    BEST,
    FINISHED,
    INIT,
    LAST,
    LOCK_NAME,
    MANIFEST,
    METRICS,
    PREDICTIONS,
    RANKS_LOCK,
    SUMMARY,
    StatePaths,
    checkpoint_names,
    compact_in,
    output_names,
    recovery_dir_of,
    recovery_in,
    retrain_command,
    retrained_dir,
    state_in,
)
from prunebench.results.metrics import write_predictions, write_rows
from prunebench.results.summary import FILES, read_summary_file, write_summary_file
from prunebench.train.checkpoint import save_checkpoint

log = logging.getLogger("prunebench")

MANIFEST_VERSION = 1
# Published with the outputs but not declared to Snakemake (a new declared output would make it train
# every finished state again): a bundle sealed before such a file existed, or without it, is whole.
OPTIONAL = (PREDICTIONS,)


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


def _open_lock(path: Path, create: bool = True) -> int:
    try:
        return os.open(path, os.O_RDWR | (os.O_CREAT if create else 0) | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointError(f"lock file {path} is a symbolic link; remove it and rerun") from None
        raise


def lock_state(recovery_dir: str | Path, label: str) -> StateLock:
    """Lock ``recovery_dir`` for this process, or raise StateBusyError naming the process that holds it."""
    recovery_dir = Path(recovery_dir)
    recovery_dir.mkdir(parents=True, exist_ok=True)
    path = recovery_dir / LOCK_NAME
    while True:
        fd = _open_lock(path)
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


def wait_for_ranks(recovery_dir: str | Path, label: str) -> None:
    """Return once no process of an earlier attempt of the state is alive (called by the job, which holds
    the state's lock, before it adopts, tidies or trains anything).

    Such processes can outlive their job by seconds (they die with it, but a signal takes its time, and
    a data loader's workers end after their rank); they hold ``ranks.lock`` shared until the last one
    is gone, so taking it exclusively waits for exactly them. No file, no such process: one that takes
    it later belongs to a job that has ended, and stops (``distributed._tie_to_job``)."""
    path = Path(recovery_dir) / RANKS_LOCK
    try:
        fd = _open_lock(path, create=False)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning(
                "%s: processes of an earlier attempt still hold %s (fuser -v shows them); waiting for them to "
                "end before starting this attempt's",
                label, path,
            )  # fmt: skip
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.info("%s: the earlier attempt's processes have ended", label)
    finally:
        os.close(fd)  # this attempt's processes take it shared


def hold_ranks_lock(recovery_dir: str | Path) -> int:
    """In each process of a multi-process state: take ``ranks.lock`` shared and keep it until the process
    (and any child it forks) ends; returns the descriptor. Raises StateBusyError while a job waits in
    :func:`wait_for_ranks`: then this process belongs to an attempt that has ended."""
    path = Path(recovery_dir) / RANKS_LOCK
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateBusyError(
            f"a newer attempt of the state holds {path}: this process belongs to one that has ended, and stops"
        ) from None
    return fd


def _ranks_alive(recovery_dir: Path) -> bool:
    try:
        fd = _open_lock(recovery_dir / RANKS_LOCK, create=False)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


# --- the finished bundle -------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_digests(folder: str | Path, names: tuple[str, ...]) -> dict[str, dict]:
    """A summary's ``files``: the sha256 and size in bytes of each of ``names`` in ``folder``."""
    folder = Path(folder)
    return {name: {"sha256": _sha256(folder / name), "bytes": (folder / name).stat().st_size} for name in names}


def check_recorded(path: str | Path, state: int, experiment: str, reader: str) -> None:
    """Refuse ``path``, a checkpoint of state ``state`` of ``experiment`` that ``reader`` is about to
    use, when its contents differ from the digest the ``summary.json`` beside it records.

    A missing checkpoint is left to the loader, which names it; a summary without ``files`` (written
    by an older prunebench) cannot be checked and is trusted, as before."""
    path = Path(path)
    summary_path = path.parent / SUMMARY
    if not path.is_file():
        return
    try:
        summary = read_summary_file(summary_path)
    except FileNotFoundError:
        log.info("%s has no summary.json beside it; its contents are not checked", path)
        return
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{summary_path} is unreadable ({exc}), so {path} cannot be checked against it and {reader} "
            f"stops before training. {_restore_or_retrain(path, state, experiment, 'summary.json')}"
        ) from None
    entry = (summary.get(FILES) or {}).get(path.name) if isinstance(summary, dict) else None
    if not isinstance(entry, dict) or not entry.get("sha256"):
        log.info("%s records no digest of %s (written by an older prunebench); it is not checked", summary_path, path)
        return
    found = _sha256(path)
    if found == entry["sha256"]:
        return
    size, recorded = path.stat().st_size, entry.get("bytes")
    sizes = f"; {recorded} bytes recorded, {size} found" if recorded not in (None, size) else ""
    raise CheckpointError(
        f"{path} is not the file state {state} of {experiment} wrote: its contents differ from what "
        f"{summary_path} records (sha256 {entry['sha256'][:12]} expected, {found[:12]} found{sizes}), so "
        f"{reader} stops before training. {_restore_or_retrain(path, state, experiment, path.name)}"
    )


def _restore_or_retrain(path: Path, state: int, experiment: str, name: str) -> str:
    return (
        f"Restore {name} from a copy, or train state {state} and the states after it again: "
        f"`{retrain_command(path.parent)}`, then rerun snakemake."
    )


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
    keeping the locks and the finished bundle."""
    paths.resume.unlink(missing_ok=True)  # first: a kill while the rest goes must not leave a resume point
    if not paths.recovery_dir.is_dir():
        return
    for entry in paths.recovery_dir.iterdir():
        if entry.name in (LOCK_NAME, RANKS_LOCK, FINISHED):
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
    :func:`prunebench.results.metrics.write_predictions`), written when given.
    """
    bundle = _bundle(paths)
    shutil.rmtree(bundle, ignore_errors=True)  # what an attempt killed before its seal left
    summary["config_hash"] = training_hash(experiment)
    if state == 0:
        if init is None:
            raise ValueError("state 0 writes init.pt: pass its checkpoint")
        save_checkpoint(bundle / INIT, init)
    save_checkpoint(bundle / LAST, last)
    atomic_copy(best, bundle / BEST)
    write_rows(bundle / METRICS, rows)
    if predictions is not None:
        write_predictions(bundle / PREDICTIONS, **predictions)
    summary[FILES] = file_digests(bundle, checkpoint_names(state))  # what a later state checks its input by
    write_summary_file(bundle / SUMMARY, summary)
    _seal(bundle, paths, experiment, state, known=summary[FILES])
    _publish(bundle, paths.out_dir, bundle_names(bundle, state))
    drop_progress(paths)


def _seal(bundle: Path, paths: StatePaths, experiment: dict, state: int, known: dict | None = None) -> None:
    """Write the manifest; ``known`` holds digests already taken (``file_digests``), not taken again."""
    known = known or {}
    files = {
        name: {"size": known[name]["bytes"], "sha256": known[name]["sha256"]}
        if name in known
        else {"size": (bundle / name).stat().st_size, "sha256": _sha256(bundle / name)}
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
    summary = read_summary_file(bundle / SUMMARY)
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
        if _ranks_alive(rec):  # the state's processes are still leaving: removing their lock would let a rerun in
            log.warning("kept %s: processes of the state still hold its %s", rec, RANKS_LOCK)
            return
        shutil.rmtree(rec, ignore_errors=True)
    finally:
        lock.release()


# --- retraining on purpose -----------------------------------------------------------------------


def set_aside(run_dir: str | Path, states: list[int], stamp: str | None = None) -> list[tuple[Path, Path]]:
    """Move the chosen states of the run in ``run_dir`` (their outputs and recovery folders) and its
    compact export into ``run_dir/retrained/{stamp}/``, so that the workflow trains them again and nothing
    is lost. (Snakemake does not rebuild a missing file whose consumers are up to date: the caller passes
    every state from the first one to retrain to the last, and the export goes too.)

    Each state is locked first: a state that a trainer holds stops everything with StateBusyError
    before any folder moves. Returns the (from, to) pairs moved."""
    run_dir = Path(run_dir)
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    target = retrained_dir(run_dir, stamp)
    locks = []
    moves: list[tuple[Path, Path]] = []
    try:
        for k in states:
            rec = recovery_in(run_dir, k)
            if rec.is_dir():
                locks.append(lock_state(rec, f"state {k} of {run_dir.name}"))
            moves += [(state_in(run_dir, k), state_in(target, k)), (rec, recovery_in(target, k))]
        moves.append((compact_in(run_dir), compact_in(target)))
        moves = [(src, dst) for src, dst in moves if src.exists()]
        for src, dst in moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)  # the same file system: a rename, whole or not at all
    finally:
        for lock in locks:
            lock.release()
    return moves
