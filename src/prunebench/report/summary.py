"""The per-state accuracy summary: one table per dataset, methods side by side."""

from __future__ import annotations

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined

from prunebench.report.analysis import method_order
from prunebench.report.html import write_report
from prunebench.report.load import method_labels, read_summary
from prunebench.report.tables import accuracy_by_state, md_escape

COLUMNS = ["experiment", "dataset", "model", "method", "seed", "state", "density", "macs_kept", "test_size",
           "best_test_acc", "final_test_acc"]  # fmt: skip


def load_summaries(paths) -> pd.DataFrame:
    """One row per state from its summary.json (a broken or incomplete file is named)."""
    rows = [r for r in (read_summary(p) for p in paths) if not r["shared_run"]]
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    if len(df):
        df["method"] = df["experiment"].map(method_labels(df))  # an ablation's groups are not seeds
    return df  # density is optional in older summaries


def summary_tables(df: pd.DataFrame) -> list[dict]:
    """Per dataset and model: a row per state with each method's density, best and final test accuracy."""
    tables = []
    for (dataset, model), part in df.groupby(["dataset", "model"], sort=True):
        t = accuracy_by_state(part, method_order(part["method"]), absent="-")
        rows = [{"state": int(r[0]), "cells": r[1:]} for r in t["rows"]]
        seeds = sorted(part["seed"].unique())
        tables.append({"dataset": dataset, "model": model, "columns": t["header"][1:], "seeds": seeds, "rows": rows})
    return tables


def render_summary(df: pd.DataFrame) -> str:
    if df.empty:  # no state finished yet: the report says so instead of failing
        df = pd.DataFrame(columns=COLUMNS)
    env = Environment(
        loader=PackageLoader("prunebench", "report/templates"), undefined=StrictUndefined, keep_trailing_newline=True
    )
    env.filters["md"] = md_escape
    return env.get_template("summary.md.j2").render(
        tables=summary_tables(df),
        n_states=len(df),
        n_experiments=df["experiment"].nunique() if len(df) else 0,
    )


def write_summary_report(summary_paths, output, html=None) -> None:
    """Render the summary report from state summary files and write it (and its HTML version, when
    ``html`` is given) atomically."""
    write_report(render_summary(load_summaries(summary_paths)), output, html)
