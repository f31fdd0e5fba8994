"""A finished state's ``summary.json``: its fields, and reading and writing it.

The trainer writes it last among a state's outputs (it marks the state done); the reports, ``prunebench
status``, the next state and the exporter read it. What each field the reports compute with must hold
is :data:`TYPES`; a summary lacking a :data:`REQUIRED` field was not written by prunebench.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from prunebench.io import atomic_write_json
from prunebench.results.metrics import json_kind

# the identity of the state, and the two accuracies every report shows
REQUIRED = ("experiment", "dataset", "model", "method", "seed", "state", "best_test_acc", "final_test_acc")
FILES = "files"  # the summary's record of its checkpoints: name -> {"sha256", "bytes"}
SHARED_STATE0 = "shared_state0"  # in an experiment's copy of a shared state 0: the shared run's folder

# The fields the reports compute with, and what each must hold where present (null: not recorded, as
# in summaries written before the field existed). Names and the identity are required.
_NAME, _COUNT, _ACC, _FRACTION, _AMOUNT, _MAPPING = "name", "count", "acc", "fraction", "amount", "mapping"
TYPES = {
    "experiment": _NAME, "dataset": _NAME, "model": _NAME, "method": _NAME, "seed": _COUNT, "state": _COUNT,
    "best_test_acc": _ACC, "final_test_acc": _ACC, "best_val_acc": _ACC, "final_val_acc": _ACC,
    "max_test_acc": _ACC, "acc_after_pruning": _ACC, "epoch": _COUNT, "epochs": _COUNT, "best_epoch": _COUNT,
    "test_size": _COUNT, "params_dense": _COUNT, "params_alive": _COUNT, "density": _FRACTION,
    "wall_seconds": _AMOUNT, "train_seconds": _AMOUNT, "images_per_second": _AMOUNT, "cost": _MAPPING,
    "throughput": _MAPPING, "kept": _MAPPING, "group_sizes": _MAPPING, "budget": _MAPPING, "rsst": _MAPPING,
    "data_sizes": _MAPPING, "provenance": _MAPPING, "versions": _MAPPING,
}  # fmt: skip
_WANTED = {
    _NAME: "a name",
    _COUNT: "a whole number >= 0",
    _ACC: "an accuracy in percent, a number from 0 to 100",
    _FRACTION: "a fraction from 0 to 1",
    _AMOUNT: "a number >= 0",
    _MAPPING: "a JSON object",
}


def _fits(value, kind: str) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _NAME:
        return isinstance(value, str) and bool(value)
    if kind == _COUNT:
        return number and float(value).is_integer() and value >= 0
    if kind == _ACC:
        return number and 0 <= value <= 100
    if kind == _FRACTION:
        return number and 0 <= value <= 1
    if kind == _AMOUNT:
        return number and math.isfinite(value) and value >= 0
    return isinstance(value, dict)


def summary_problem(summary: Any) -> str | None:
    """Why a parsed summary.json cannot be reported (the first problem found), or None."""
    if not isinstance(summary, dict):
        return f"holds {json_kind(summary)}, not a JSON object"
    missing = [k for k in REQUIRED if k not in summary]
    if missing:
        return f"lacks {', '.join(missing)}; it was not written by prunebench's train-state"
    for key, kind in TYPES.items():
        value = summary.get(key)
        if (value is not None or key in REQUIRED) and not _fits(value, kind):
            return f"{key} = {json.dumps(value, allow_nan=True)[:60]} (must be {_WANTED[kind]})"
    for part in ("kept", "group_sizes"):  # {layer: {kind: count}}, summed by the reports
        for layer, counts in (summary.get(part) or {}).items():
            if not isinstance(counts, dict) or not all(_fits(n, _COUNT) for n in counts.values()):
                return f"{part}.{layer} = {json.dumps(counts)[:60]} (must map kinds to whole numbers >= 0)"
    for side, cost in (summary.get("cost") or {}).items():
        if cost is not None and not (isinstance(cost, dict) and all(_fits(n, _AMOUNT) for n in cost.values())):
            return f"cost.{side} = {json.dumps(cost)[:60]} (must map quantities to numbers >= 0)"
    return None


def read_summary_file(path: str | Path) -> Any:
    """The parsed contents of a summary.json, as written (OSError, UnicodeDecodeError or ValueError
    when it cannot be read)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_summary_file(path: str | Path, summary: dict) -> None:
    """Write a summary.json, atomically."""
    atomic_write_json(path, summary)
