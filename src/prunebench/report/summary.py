"""The per-state accuracy summary: one table per dataset, methods side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined

from prunebench.io import atomic_write_text

COLUMNS = ["experiment", "dataset", "model", "method", "seed", "state", "density", "best_test_acc", "final_test_acc"]


def load_summaries(paths) -> pd.DataFrame:
    """One row per state from its summary.json."""
    rows = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    return pd.DataFrame(rows)[COLUMNS]


def _cell(values: pd.Series) -> str:
    """One accuracy, or mean +- std over seeds."""
    values = values.dropna()
    if values.empty:
        return "-"
    if len(values) == 1:
        return f"{values.iloc[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def summary_tables(df: pd.DataFrame) -> list[dict]:
    """Per dataset and model: a row per state with best and final test accuracy of each method."""
    tables = []
    for (dataset, model), part in df.groupby(["dataset", "model"], sort=True):
        methods = sorted(part["method"].unique(), key=lambda m: (m != "dense", m))
        seeds = sorted(part["seed"].unique())
        rows = []
        for state, at_state in part.groupby("state", sort=True):
            cells = []
            for method in methods:
                sel = at_state[at_state["method"] == method]
                if method != "dense":  # each method prunes on its own schedule (REPrune: at its events)
                    density = sel["density"].dropna()
                    cells.append(f"{density.mean():.3f}" if len(density) else "-")
                cells += [_cell(sel["best_test_acc"]), _cell(sel["final_test_acc"])]
            rows.append({"state": int(state), "cells": cells})
        columns = [c for m in methods for c in ([] if m == "dense" else [f"{m} density"]) + [f"{m} best", f"{m} final"]]
        tables.append({"dataset": dataset, "model": model, "columns": columns, "seeds": seeds, "rows": rows})
    return tables


def render_summary(df: pd.DataFrame) -> str:
    env = Environment(
        loader=PackageLoader("prunebench", "report/templates"), undefined=StrictUndefined, keep_trailing_newline=True
    )
    return env.get_template("summary.md.j2").render(
        tables=summary_tables(df),
        n_states=len(df),
        n_experiments=df["experiment"].nunique() if len(df) else 0,
    )


def write_summary_report(summary_paths, output) -> None:
    """Render the summary report from state summary files and write it atomically."""
    atomic_write_text(output, render_summary(load_summaries(summary_paths)))
