"""Table cells and tables shared by the reports: numbers, mean ± std, and accuracy per state.

Every cell goes through :func:`md_escape` in :func:`table`, and the templates pass every other
value read from result files through the ``md`` filter: a string from a summary (a device name,
an experiment name) can neither end a table cell nor become live HTML or a link.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable

import pandas as pd

from prunebench.report.analysis import accuracy_table


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


_MD_SPECIAL = re.compile(r"([\\`*\[\]|])")


def md_escape(value) -> str:
    """``value`` as literal Markdown text: HTML's <, > and & as entities, Markdown's \\ ` * [ ] and
    the table separator | backslash-escaped, line breaks as spaces."""
    text = html.escape(str(value), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))


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
    return {
        "header": [md_escape(h) for h in header],
        "align": ["---" if a == "l" else "---:" for a in align],
        "rows": [[md_escape(c) for c in r] for r in rows],
    }


def frame_table(frame, columns: list[tuple[str, str, Callable]], *, empty_is_none: bool = True) -> dict | None:
    """:func:`table` with one row per row of ``frame``: ``columns`` are ``(header, "l" or "r", cell)``,
    ``cell`` turning a row (a namedtuple of ``frame.itertuples()``) into its text. None for an empty
    frame unless ``empty_is_none`` is False."""
    if empty_is_none and frame.empty:
        return None
    rows = [[cell(r) for _, _, cell in columns] for r in frame.itertuples()]
    return table([h for h, _, _ in columns], rows, "".join(a for _, a, _ in columns))


#: the columns that name a run's state: method, seed, state
RUN_STATE = [
    ("method", "l", lambda r: r.method),
    ("seed", "r", lambda r: str(r.seed)),
    ("state", "r", lambda r: str(r.state)),
]


def ci(lo, hi, digits: int = 1) -> str:
    """A 95 % interval as "(lo–hi)"; empty when unknown."""
    return "" if _missing(lo) or _missing(hi) else f" ({lo:.{digits}f}–{hi:.{digits}f})"


def acc_cell(mean, std, lo, hi) -> str:
    """An accuracy: the value (mean ± std over seeds with several) and its test-set 95 % Wilson interval."""
    return "-" if _missing(mean) else pm(mean, std) + ci(lo, hi)


def accuracy_by_state(states: pd.DataFrame, methods: list[str], absent: str = "missing") -> dict:
    """Per state: each method's best and final accuracy with their Wilson intervals, and each
    pruning method's measured density and MACs kept (``absent`` where it has not finished the state)."""
    acc = accuracy_table(states).set_index(["method", "state"])
    header = ["state"]
    for m in methods:
        header += ([] if m == "dense" else [f"{m} density", f"{m} MACs %"]) + [f"{m} best", f"{m} final"]
    rows = []
    for state in sorted(states["state"].unique()):
        cells = [str(int(state))]
        for m in methods:
            if (m, state) in acc.index:
                r = acc.loc[(m, state)]
                cells += ([] if m == "dense" else [num(r["density"], 3), num(r["macs_kept"], 1)]) + [
                    acc_cell(r["best"], r["best_std"], r["best_lo"], r["best_hi"]),
                    acc_cell(r["final"], r["final_std"], r["final_lo"], r["final_hi"]),
                ]
            else:
                cells += [absent] * (2 if m == "dense" else 4)
        rows.append(cells)
    return table(header, rows, "r" * len(header))
