"""Building the reports: every report from the states found (``prunebench report``), and the workflow's
comparison and index jobs from the states they list."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from prunebench.report import analysis as A
from prunebench.report.html import write_report
from prunebench.report.index import write_index
from prunebench.report.load import Results, load_results, plan_from_experiments
from prunebench.report.render import write_comparison_report
from prunebench.report.summary import render_summary
from prunebench.results.layout import (
    INDEX_REPORT,
    SUMMARY_REPORT,
    comparison_paths,
    find_summaries,
    is_shared,
    report_file,
    reports_dir,
    run_of,
)


def build_reports(
    results_dir: str | Path, plan: pd.DataFrame | None = None, experiments: dict[str, dict] | None = None
) -> tuple[list[Path], list[str]]:
    """Every report from whatever states exist now (the partial-results path of ``prunebench report``).

    ``experiments`` (the config's resolved experiments) give the config of groups with no finished
    state in the reports' closing section. Returns the files written and one line per experiment
    with missing states.
    """
    summaries = find_summaries(results_dir)
    if plan is not None:
        # The config decides what is reported: folders of experiments it no longer has are left out.
        planned = set(plan["experiment"])
        summaries = [p for p in summaries if run_of(p.parent) in planned or is_shared(p.parent)]
    results = load_results(summaries, plan)
    written, reports = [], {}
    for dataset, model in results.comparisons():
        md, plot_dir = comparison_paths(reports_dir(results_dir), dataset, model)
        write_comparison_report(results, dataset, model, md, plot_dir, md.with_suffix(".html"), experiments)
        reports[(dataset, model)] = md
        written.append(md)
    index, summary = Path(report_file(results_dir, INDEX_REPORT)), Path(report_file(results_dir, SUMMARY_REPORT))
    write_index(results, index, reports, index.with_suffix(".html"))
    # the states loaded above
    write_report(render_summary(results.states), summary, summary.with_suffix(".html"))
    written += [index, summary]
    written += [p.with_suffix(".html") for p in written]
    comp = A.completeness(results.plan, results.states)
    missing = [f"{r.experiment}: {r.done}/{r.planned} states done, missing {', '.join(map(str, r.missing))}"
               for r in comp.itertuples() if r.missing]  # fmt: skip
    return written, missing


def write_comparison_from_files(
    summary_paths, experiments: dict[str, dict], dataset: str, model: str, output, plot_dir, html=None
) -> None:
    """The workflow's comparison job: load the listed states, plan from the resolved experiments."""
    results = _load_planned(summary_paths, experiments)
    write_comparison_report(results, dataset, model, output, plot_dir, html, experiments)


def write_index_from_files(summary_paths, experiments: dict[str, dict], reports: list, output, html=None) -> None:
    """The workflow's index job; ``reports`` holds (dataset, model, path of the comparison report)."""
    write_index(_load_planned(summary_paths, experiments), output, {(d, m): p for d, m, p in reports}, html)


def _load_planned(summary_paths, experiments: dict[str, dict]) -> Results:
    return load_results(summary_paths, plan_from_experiments(experiments))
