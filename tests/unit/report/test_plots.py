"""The comparison's plots are written as valid PNGs, also before any state has finished."""

from __future__ import annotations

import pandas as pd

from prunebench.report.load import find_summaries, load_results
from prunebench.report.plots import PLOTS, write_plots

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
    from prunebench.report.comparison import build_reports

    build_reports(results_dir)
    md = (results_dir / "reports" / "cifar10_vit_s.md").read_text()
    for name in PLOTS.values():
        assert f"](cifar10_vit_s/{name})" in md
        assert (results_dir / "reports" / "cifar10_vit_s" / name).read_bytes()[:8] == PNG_MAGIC
