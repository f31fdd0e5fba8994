"""A state's ``metrics.jsonl``: one JSON object (a metrics row) a line, identifiers repeated on every
line; and its per-image test predictions (``predictions.npz``)."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

from prunebench.errors import ResultsError
from prunebench.io import atomic_write_bytes, atomic_write_text
from prunebench.results.layout import retrain_fix

ID_FIELDS = ("experiment", "method", "dataset", "model", "seed", "state", "epoch")
METRIC_FIELDS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_acc",
    "lr",
    "reg_lambda",
    "density",
    "params_alive",
    "epoch_seconds",
    "images_per_second",
    "train_seconds",
    "eval_seconds",
    "checkpoint_seconds",
)
# The fields only an evaluated epoch has (train.eval_every skips the others' evaluation).
EVAL_FIELDS = ("val_loss", "val_acc", "test_acc")
# The fields two runs of the same state may differ in: wall-clock timings.
TIMING_FIELDS = ("epoch_seconds", "images_per_second", "train_seconds", "eval_seconds", "checkpoint_seconds")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    return value


def experiment_ids(experiment: dict, state: int) -> dict[str, Any]:
    return {
        "experiment": experiment["name"],
        "method": experiment["method"],
        "dataset": experiment["dataset"],
        "model": experiment["model_key"],
        "seed": experiment["seed"],
        "state": state,
    }


def make_row(ids: dict[str, Any], epoch: int, values: dict[str, Any]) -> dict[str, Any]:
    row = {**ids, "epoch": epoch}
    for field in METRIC_FIELDS:
        row[field] = _clean(values.get(field))
    for key, value in values.items():
        if key not in row:
            row[key] = _clean(value)
    return row


def append_row(path: str | Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())  # on disk before the epoch's resume.pt, which is synced too


def write_rows(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Replace a metrics file with ``rows``, atomically."""
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


# What a row must hold to be read: the identifiers with their types, and numbers (or null: NaN, or a
# field an unevaluated epoch lacks) for the metrics; accuracies are percentages.
_NAME_FIELDS = ("experiment", "method", "dataset", "model")
_COUNT_FIELDS = ("seed", "state", "epoch")
ACC_FIELDS = ("train_acc", "val_acc", "test_acc")


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (for messages about a file's content)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    kinds = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def row_problem(row: Any) -> str | None:
    """Why a parsed metrics line is not a metrics row (the first problem found), or None."""
    if not isinstance(row, dict):
        return f"{json_kind(row)}, not a JSON object"
    missing = [k for k in (*_NAME_FIELDS, *_COUNT_FIELDS) if k not in row]
    if missing:
        return f"lacks {', '.join(missing)}"
    for key in _NAME_FIELDS:
        if not isinstance(row[key], str) or not row[key]:
            return f"{key} = {row[key]!r} (must be a name)"
    for key in _COUNT_FIELDS:
        if not isinstance(row[key], int) or isinstance(row[key], bool) or row[key] < 0:
            return f"{key} = {row[key]!r} (must be a whole number >= 0)"
    for key in METRIC_FIELDS:
        value = row.get(key)
        if value is not None and not _is_number(value):
            return f"{key} = {value!r} (must be a number or null)"
        if key in ACC_FIELDS and value is not None and not 0 <= value <= 100:
            return f"{key} = {value!r} (an accuracy is a percentage, 0 to 100)"
    if not isinstance(row.get("evaluated", True), bool):
        return f"evaluated = {row['evaluated']!r} (must be true or false)"
    return None


def _progress_problem(row: Any) -> str | None:
    """A running state's row: what progress and resuming read (its epoch and numbers) must be sound."""
    if not isinstance(row, dict):
        return f"{json_kind(row)}, not a JSON object"
    epoch = row.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        return f"epoch = {epoch!r} (must be a whole number >= 0)"
    bad = [k for k in METRIC_FIELDS if row.get(k) is not None and not _is_number(row[k])]
    return f"{bad[0]} = {row[bad[0]]!r} (must be a number or null)" if bad else None


def _damaged(path: Path, where: str, what: str, fix: str) -> ResultsError:
    return ResultsError(f"damaged metrics file {path}{where}: {what}; {fix}")


def read_rows(path: str | Path, *, finished: bool = False) -> list[dict[str, Any]]:
    """All rows of a metrics file, each checked (a finished state's by :func:`row_problem`); a damaged file is one
    :class:`ResultsError` naming the file, the line and the fix.

    A file still being written (``finished`` false: a running or interrupted state's, under recovery/)
    may end in a torn line, a write cut off by a crash: that last line is skipped, and a missing file
    has no rows. A finished state's file (its summary.json exists) was written whole: a torn line, an
    empty or a missing file is damage there too.
    """
    path = Path(path)
    fix = (
        retrain_fix(path.parent)
        if finished
        else f"delete its recovery folder to train the state from its start (rm -r {path.parent})"
    )
    if not path.exists():
        if finished:
            raise _damaged(path, "", "missing, though the state's summary.json says it finished", fix)
        return []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise _damaged(path, f", line {line}", "not UTF-8 text", fix) from None
    except OSError as exc:
        raise ResultsError(f"cannot read metrics file {path}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    if finished and not text.strip():
        raise _damaged(path, "", "empty, though the state's summary.json says it finished", fix)
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() and number == len(lines):
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not finished and not text.endswith("\n"):
                continue  # a write cut off by a crash: the epoch reruns
            raise _damaged(path, f", line {number}", f"not a JSON row ({exc.msg}: {line[:60]!r})", fix) from None
        problem = row_problem(row) if finished else _progress_problem(row)
        if problem:
            raise _damaged(path, f", line {number}", f"not a metrics row: {problem}", fix)
        rows.append(row)
    return rows


# A state's per-image test predictions, beside its metrics: ``np.load(path, allow_pickle=False)`` gives
# int16 arrays of one length, the test set in its fixed order: ``targets`` (the labels), ``final`` and
# ``best`` (the predicted classes at the state's final evaluation and at its best epoch's, the
# evaluations whose accuracies the summary's final_test_acc and best_test_acc are).
PREDICTION_KEYS = ("targets", "final", "best")


def write_predictions(path: str | Path, *, targets, final, best) -> None:
    """Write ``predictions.npz`` atomically (each argument: a sequence of class indices, all of one length)."""
    import numpy as np  # here: the rest of the file contract reads without numpy

    arrays = {k: np.asarray(v, dtype=np.int16) for k, v in zip(PREDICTION_KEYS, (targets, final, best))}
    if len({a.shape for a in arrays.values()}) != 1 or arrays["targets"].ndim != 1:
        raise ValueError(f"predictions of unequal lengths: { ({k: a.shape for k, a in arrays.items()}) }")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def read_predictions(path: str | Path) -> dict[str, Any]:
    """``{targets, final, best}`` of a ``predictions.npz`` as numpy int16 arrays."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in PREDICTION_KEYS}
