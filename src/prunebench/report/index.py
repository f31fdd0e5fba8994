"""The index report: one entry per comparison (its states done and missing, each method's last state),
linking the comparison reports."""

from __future__ import annotations

import os
from pathlib import Path

from prunebench.report import analysis as A
from prunebench.report.html import write_report
from prunebench.report.load import Results
from prunebench.report.render import environment
from prunebench.report.sections import completeness_table
from prunebench.report.tables import _missing, num, pm


def index_context(results: Results, reports: dict[tuple[str, str], str]) -> dict:
    entries = []
    for dataset, model in results.comparisons():
        res = results.select(dataset, model)
        _, missing, done, planned = completeness_table(res)
        line = []
        if not res.states.empty:
            for m in A.method_order(res.states["method"]):
                part = res.states[res.states["method"] == m]
                last = int(part["state"].max())
                at_last = part[part["state"] == last]
                acc, macs = at_last["final_test_acc"], at_last["macs_kept"].mean()
                cost = "" if _missing(macs) else f", {num(macs, 1)} % MACs"
                line.append(f"{m} {pm(acc.mean(), acc.std())} (state {last}{cost})")
        entries.append(
            {
                "dataset": dataset,
                "model": model,
                "link": reports.get((dataset, model)),
                "done": done,
                "planned": planned,
                "missing": missing,
                "last": "; ".join(line) or "no finished states",
            }
        )
    return {"entries": entries}


def render_index(results: Results, reports: dict[tuple[str, str], str]) -> str:
    return environment().get_template("index.md.j2").render(**index_context(results, reports))


def write_index(
    results: Results, output: str | Path, reports: dict[tuple[str, str], str | Path], html: str | Path | None = None
) -> None:
    """The index report linking every comparison report (paths made relative to the index), and
    its HTML version (linking theirs) when ``html`` is given."""
    output = Path(output)
    rel = {k: Path(os.path.relpath(v, output.parent)).as_posix() for k, v in reports.items()}
    write_report(render_index(results, rel), output, html)
