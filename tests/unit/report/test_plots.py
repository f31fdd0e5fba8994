"""The comparison's plots are written as valid PNGs, also before any state has finished."""

from __future__ import annotations

import pandas as pd

from prunebench.report.load import load_results
from prunebench.report.plots import PLOTS, write_plots
from prunebench.results.layout import find_summaries

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_pngs(paths, min_bytes=10_000):
    assert sorted(p.name for p in paths.values()) == sorted(PLOTS.values())
    for path in paths.values():
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC, path
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width > 500 and height > 300, f"{path} is {width}x{height}"
        assert len(data) > min_bytes, f"{path} is suspiciously small: nothing drawn?"


def test_plots_are_pngs(results_dir, tmp_path):
    res = load_results(find_summaries(results_dir))
    assert len(res.references) == 2  # the dense reference star of the Pareto and cost plots
    _check_pngs(write_plots(res.states, res.epochs, tmp_path / "plots", "fixture", res.references))


def test_plots_without_results(tmp_path):
    _check_pngs(write_plots(pd.DataFrame(), pd.DataFrame(), tmp_path / "plots", "nothing yet"), min_bytes=2_000)


def test_report_links_its_plots(results_dir):
    from prunebench.report.build import build_reports

    build_reports(results_dir)
    md = (results_dir / "reports" / "cifar10_vit_s.md").read_text()
    for name in PLOTS.values():
        assert f"](cifar10_vit_s/{name})" in md
        assert (results_dir / "reports" / "cifar10_vit_s" / name).read_bytes()[:8] == PNG_MAGIC


def _drawn_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_no_lambda_panel_when_no_method_logged_one(results_dir):
    from prunebench.report.plots import CURVE_PANELS, curves_figure

    epochs = load_results(find_summaries(results_dir)).epochs  # every method logs lambda 0
    fig = curves_figure(epochs, "fixture")
    labels = [ax.get_ylabel() for ax in _drawn_axes(fig)]
    assert CURVE_PANELS["reg_lambda"] not in labels and len(labels) == 5
    assert all(ax.get_lines() for ax in _drawn_axes(fig))  # no empty panel
    epochs.loc[epochs["method"] == "rsst", "reg_lambda"] = 0.5  # one method has a penalty: its panel, its line
    fig = curves_figure(epochs, "fixture")
    (ax,) = [ax for ax in fig.axes if ax.get_ylabel() == CURVE_PANELS["reg_lambda"]]
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == ["rsst"]


def _tick_texts(fig, tmp_path):
    fig.savefig(tmp_path / "draw.png")  # tick labels and offsets are set when drawn
    return [(ax.xaxis, [t.get_text() for t in ax.get_xticklabels()]) for ax in fig.axes if ax.get_xlabel()]


def test_cost_axes_have_plain_tick_labels(tmp_path):
    from prunebench.report.plots import plain_count, plot_accuracy_vs_cost
    from tests.unit.report.conftest import write_cnn_results

    res = load_results(find_summaries(write_cnn_results(tmp_path)))
    fig = plot_accuracy_vs_cost(res.states, tmp_path / "cost.png", "cnn", res.references)
    axes = _tick_texts(fig, tmp_path)
    assert len(axes) == 2  # MACs (up to 1M) and parameters (up to 10k)
    for axis, texts in axes:
        assert axis.get_offset_text().get_text() == ""  # no 1e6 above the axis
        labels = [t for t in texts if t]
        assert 3 <= len(labels) <= 7, labels  # a few, so that they do not overlap
        assert not any("e" in t or "\N{MULTIPLICATION SIGN}" in t for t in labels), labels
    assert any(t.endswith("k") for t in axes[1][1]) and any(t.endswith(("k", "M")) for t in axes[0][1])
    assert [plain_count(v) for v in (350_000, 1_200_000, 2.5e9, 40)] == ["350k", "1.2M", "2.5G", "40"]


def test_the_pareto_fronts_legend_entry_is_the_drawn_line(results_dir, tmp_path):
    from prunebench.report.plots import plot_pareto

    res = load_results(find_summaries(results_dir))
    fig = plot_pareto(res.states, res.references, tmp_path / "pareto.png", "fixture")
    (ax,) = fig.axes
    (front,) = [line for line in ax.get_lines() if line.get_label() == "Pareto front"]
    legend = ax.get_legend()
    (handle,) = [h for h, t in zip(legend.legend_handles, legend.get_texts()) if t.get_text() == "Pareto front"]
    assert handle.get_visible() and handle.get_linewidth() == front.get_linewidth() >= 1.5
    assert (handle.get_color(), handle.get_linestyle()) == (front.get_color(), front.get_linestyle())
    assert front.get_color() not in ("grey", "#808080")  # dark enough to see, also in the legend
