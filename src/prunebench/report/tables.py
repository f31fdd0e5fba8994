"""Table cells and tables shared by the reports: numbers, mean ± std, and accuracy per state."""

from __future__ import annotations

import math

import pandas as pd

from prunebench.report.analysis import accuracy_table


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def num(value, digits: int = 2) -> str:
    """A number for a table cell; NaN or missing is "-"."""
    return "-" if _missing(value) else f"{value:.{digits}f}"


def text(value) -> str:
    return "-" if _missing(value) else str(value)


def integer(value) -> str:
    return "-" if _missing(value) else f"{int(value):,}"


def pm(mean, std, digits: int = 2) -> str:
    """Mean ± sample std over seeds, or the single value when there is one seed."""
    if _missing(mean):
        return "-"
    return num(mean, digits) if _missing(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> dict:
    """A Markdown table for the template: text columns left-aligned, numbers right-aligned."""
    align = align or "l" * len(header)
    return {"header": header, "align": ["---" if a == "l" else "---:" for a in align], "rows": rows}


def accuracy_by_state(states: pd.DataFrame, methods: list[str], absent: str = "missing") -> dict:
    """Per state: each method's best and final accuracy, and each pruning method's own density
    (``absent`` where a method has not finished the state)."""
    acc = accuracy_table(states).set_index(["method", "state"])
    header = ["state"]
    for m in methods:
        header += ([] if m == "dense" else [f"{m} density"]) + [f"{m} best", f"{m} final"]
    rows = []
    for state in sorted(states["state"].unique()):
        cells = [str(int(state))]
        for m in methods:
            if (m, state) in acc.index:
                r = acc.loc[(m, state)]
                cells += ([] if m == "dense" else [num(r["density"], 3)]) + [
                    pm(r["best"], r["best_std"]),
                    pm(r["final"], r["final_std"]),
                ]
            else:
                cells += [absent] * (2 if m == "dense" else 3)
        rows.append(cells)
    return table(header, rows, "r" * len(header))
