"""A state's throughput.json, written by the workflow's measure_state (prunebench.export.measure),
read without torch: the reports and ``prunebench status`` stay light."""

from __future__ import annotations

import json
from pathlib import Path

from prunebench.io import atomic_write_json
from prunebench.results.layout import SUMMARY, THROUGHPUT

# what ties a timing to the checkpoint it timed: a state trained again has another epoch or hash
STAMP_KEYS = ("experiment", "state", "epoch", "config_hash")


def write_throughput_file(path: str | Path, info: dict) -> None:
    """Write a state's throughput.json: the :data:`STAMP_KEYS` of the checkpoint timed, ``method``,
    ``measure`` (the settings it was timed under) and ``throughput`` (null when timing was off)."""
    atomic_write_json(path, info)


def read_throughput(state_dir: str | Path, summary: dict | None = None) -> dict | None:
    """The ``throughput`` of a state: from its throughput.json when that times the same checkpoint
    as ``summary`` (experiment, state, epoch and config hash agree), else the summary's own field
    (states finished before timing had its own rule), else None."""
    summary = summary or {}
    path = Path(state_dir) / THROUGHPUT
    if path.is_file():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            info = None
        if isinstance(info, dict) and all(
            summary.get(k) is None or info.get(k) is None or summary[k] == info[k] for k in STAMP_KEYS
        ):
            return info.get("throughput")
    return summary.get("throughput")


def state_throughput(summary_path: str | Path, summary: dict) -> dict | None:
    """The throughput of the state whose summary.json is ``summary_path``. An experiment's copy of a
    shared state 0 is timed once, in the shared run's folder (``shared_state0``, found under the same
    results folder): its timing is read from there, checked against the shared run's summary."""
    state_dir = Path(summary_path).parent
    shared = summary.get("shared_state0")
    if (state_dir / THROUGHPUT).is_file() or not shared:
        return read_throughput(state_dir, summary)
    shared_dir = state_dir.parents[1].joinpath(*Path(shared).parts[-3:])  # results/shared/{run}/state0
    try:
        shared_summary = json.loads((shared_dir / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return summary.get("throughput")
    return read_throughput(shared_dir, shared_summary) or summary.get("throughput")
