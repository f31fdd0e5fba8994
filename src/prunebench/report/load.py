"""The one loader: every state's ``summary.json`` and ``metrics.jsonl`` as pandas DataFrames.

``Results.states`` has one row per finished state (the summary, with the nested ``cost`` and
``throughput`` of the slimming step flattened to ``cost_{dense,compact}_{key}`` and
``tput_{dense,compact}_{batch}`` columns); ``Results.epochs`` one row per evaluated epoch of those
states; ``Results.plan`` one row per experiment that should exist, with its number of states.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prunebench.config import finetune_epochs, state_epochs
from prunebench.errors import PrunebenchError
from prunebench.train.metrics import ID_FIELDS, METRIC_FIELDS, read_rows

EXPERIMENT_KEYS = ["experiment", "dataset", "model", "method", "seed"]
PLAN_COLUMNS = [*EXPERIMENT_KEYS, "states", "epochs", "state0_epochs"]
SUMMARY_REQUIRED = (*EXPERIMENT_KEYS, "state", "best_test_acc", "final_test_acc")
# Read when present; a summary written before a field existed shows "-" there instead of failing.
SUMMARY_OPTIONAL = (
    "epochs", "density", "acc_after_pruning", "params_dense", "params_alive", "wall_seconds", "train_seconds",
    "images_per_second", "device", "shared_state0",
)  # fmt: skip


class ReportError(PrunebenchError):
    """A results file cannot be turned into a report."""


@dataclass
class Results:
    """Everything a report is computed from."""

    states: pd.DataFrame
    epochs: pd.DataFrame
    plan: pd.DataFrame

    def select(self, dataset: str, model: str) -> Results:
        """The part of the results that belongs to one dataset x model comparison."""

        def part(df: pd.DataFrame) -> pd.DataFrame:
            if df.empty:
                return df
            return df[(df["dataset"] == dataset) & (df["model"] == model)].reset_index(drop=True)

        return Results(part(self.states), part(self.epochs), part(self.plan))

    def comparisons(self) -> list[tuple[str, str]]:
        """Every (dataset, model) pair that is planned or has results."""
        pairs = set()
        for df in (self.plan, self.states):
            if not df.empty:
                pairs |= set(zip(df["dataset"], df["model"]))
        return sorted(pairs)


def _flatten_costs(summary: dict) -> dict:
    out = {}
    cost = summary.pop("cost", None) or {}
    for side in ("dense", "compact"):
        for key, value in (cost.get(side) or {}).items():
            out[f"cost_{side}_{key}"] = value
    tput = summary.pop("throughput", None) or {}
    if tput:
        out["tput_device"] = tput.get("device")
        for side in ("dense", "compact"):
            for batch, ips in (tput.get(side) or {}).items():
                out[f"tput_{side}_{batch}"] = ips
    return out


def _kept_totals(summary: dict) -> dict:
    """Heads / neurons / channels kept over all layers, and how many there were."""
    out: dict[str, int] = {}
    for kind_counts, prefix in ((summary.get("kept") or {}, "kept"), (summary.get("group_sizes") or {}, "groups")):
        for counts in kind_counts.values():
            for kind, n in counts.items():
                out[f"{prefix}_{kind}"] = out.get(f"{prefix}_{kind}", 0) + int(n)
    return out


def read_summary(path: str | Path) -> dict:
    """One state's summary.json as a flat row; a broken file is one clear error."""
    path = Path(path)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"cannot read state summary {path} ({exc}); delete the state's folder and rerun it") from None
    missing = [k for k in SUMMARY_REQUIRED if k not in summary]
    if missing:
        raise ReportError(
            f"state summary {path} lacks {', '.join(missing)}; it was not written by prunebench's "
            "train-state; delete the state's folder and rerun it"
        )
    row = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    row.update(_flatten_costs(summary))
    row.update(_kept_totals(summary))
    row["path"] = str(path.parent)
    return row


def _nan(value):
    return math.nan if value is None else value


def read_epochs(path: str | Path) -> list[dict]:
    """The per-epoch rows of one metrics.jsonl (null, the JSON form of NaN, read back as NaN)."""
    rows = read_rows(path)
    for row in rows:
        for key in METRIC_FIELDS:
            row[key] = _nan(row.get(key))
    return rows


def find_summaries(results_dir: str | Path) -> list[Path]:
    """summary.json of every finished state under ``results_dir``."""
    return sorted(Path(results_dir).glob("*/state*/summary.json"), key=lambda p: (p.parent.parent.name, _k(p)))


def _k(path: Path) -> int:
    m = re.fullmatch(r"state(\d+)", path.parent.name)
    return int(m.group(1)) if m else -1


def plan_from_experiments(experiments: dict[str, dict]) -> pd.DataFrame:
    """One row per resolved experiment (from prunebench.config.resolve_config) with its states."""
    rows = [
        {
            "experiment": name,
            "dataset": exp["dataset"],
            "model": exp["model_key"],
            "method": exp["method"],
            "seed": exp["seed"],
            "states": exp["prune"]["states"],
            "epochs": state_epochs(exp, 1) + finetune_epochs(exp, 1),
            "state0_epochs": state_epochs(exp, 0),
        }
        for name, exp in experiments.items()
    ]
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def load_results(summary_paths, plan: pd.DataFrame | None = None) -> Results:
    """Load the given states (their metrics.jsonl sits beside each summary.json).

    Without a plan, each experiment is taken to have as many states as its highest state found,
    so a report then cannot tell that trailing states are missing.
    """
    rows = [read_summary(p) for p in summary_paths]
    states = pd.DataFrame(rows)
    if not states.empty:
        for col in SUMMARY_OPTIONAL:
            if col not in states:
                states[col] = math.nan
        states = states.sort_values(["experiment", "state"]).reset_index(drop=True)
    epoch_rows = []
    for row in rows:
        for e in read_epochs(Path(row["path"]) / "metrics.jsonl"):
            epoch_rows.append({k: e.get(k) for k in (*ID_FIELDS, *METRIC_FIELDS)})
    epochs = pd.DataFrame(epoch_rows, columns=[*ID_FIELDS, *METRIC_FIELDS])
    if not epochs.empty:
        epochs = epochs.sort_values(["experiment", "state", "epoch"]).reset_index(drop=True)
    if plan is None:
        plan = _plan_from_states(states)
    return Results(states, epochs, plan.reset_index(drop=True))


def _plan_from_states(states: pd.DataFrame) -> pd.DataFrame:
    if states.empty:
        return pd.DataFrame(columns=PLAN_COLUMNS)
    g = states.groupby("experiment")
    plan = g[EXPERIMENT_KEYS[1:]].first()
    plan["states"] = g["state"].max() + 1
    plan["epochs"] = g["epochs"].max()
    plan["state0_epochs"] = plan["epochs"]
    return plan.reset_index()[PLAN_COLUMNS]
