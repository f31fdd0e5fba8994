"""Writing a comparison report: its template rendered from the context (:mod:`.comparison`), its plots
beside it, Markdown and HTML."""

from __future__ import annotations

import os
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from prunebench.report.comparison import comparison_context
from prunebench.report.html import write_report
from prunebench.report.load import Results
from prunebench.report.plots import write_plots
from prunebench.report.tables import md_escape


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("prunebench", "report/templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = md_escape
    return env


def render_comparison(
    results: Results, dataset: str, model: str, plots: dict[str, str], experiments: dict[str, dict] | None = None
) -> str:
    ctx = comparison_context(results, dataset, model, plots, experiments)
    return environment().get_template("comparison.md.j2").render(**ctx)


def write_comparison_report(
    results: Results,
    dataset: str,
    model: str,
    output: str | Path,
    plot_dir: str | Path,
    html: str | Path | None = None,
    experiments: dict[str, dict] | None = None,
):
    """Plots into ``plot_dir``, the Markdown report (linking them by relative path) to ``output`` and,
    when given, its HTML version (plots embedded) to ``html``; ``experiments``: the workflow's resolved
    experiments, for the configs of groups with no finished state."""
    output = Path(output)
    res = results.select(dataset, model)
    paths = write_plots(res.states, res.epochs, plot_dir, f"{dataset} · {model}", res.references)
    rel = {k: Path(os.path.relpath(p, output.parent)).as_posix() for k, p in paths.items()}
    write_report(render_comparison(results, dataset, model, rel, experiments), output, html)
