"""Per-epoch metrics: one JSON object a line, identifiers repeated on every line; and a state's
per-image test predictions (``predictions.npz``)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from prunebench.io import atomic_write_bytes, atomic_write_text

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


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a metrics file; a partial last line (a write cut off by a crash) is skipped."""
    rows = []
    path = Path(path)
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


# A state's per-image test predictions, beside its metrics: ``np.load(path, allow_pickle=False)`` gives
# int16 arrays of one length, the test set in its fixed order: ``targets`` (the labels), ``final`` and
# ``best`` (the predicted classes at the state's final evaluation and at its best epoch's, the
# evaluations whose accuracies the summary's final_test_acc and best_test_acc are).
PREDICTIONS_NAME = "predictions.npz"
PREDICTION_KEYS = ("targets", "final", "best")


def write_predictions(path: str | Path, *, targets, final, best) -> None:
    """Write ``predictions.npz`` atomically (each argument: a sequence of class indices, all of one length)."""
    import io

    import numpy as np

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
