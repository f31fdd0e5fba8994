"""The report rules on a real tiny run: comparison report, plots, index, and `snakemake --report`."""

from __future__ import annotations

import pytest

from tests.conftest import run_snakemake


@pytest.mark.slow
def test_reports_after_a_tiny_run(tmp_path, tiny_config):
    tiny_config["experiments"]["t"]["methods"] = ["dense", "refill"]
    run_snakemake(tmp_path, tiny_config)
    reports = tmp_path / "results" / "reports"
    md = (reports / "synthetic_tiny_vit.md").read_text()
    assert "4 of 4 planned states are finished" in md
    assert "| state | dense best | dense final | refill density | refill MACs % | refill best | refill final |" in md
    # the dense reference is the shared dense state 0, read by the report job; accuracies carry intervals
    assert "| t-synthetic-tiny_vit-s0 | 0 |" in md and "Its final accuracy: " in md
    assert "## Accuracy at matched cost" in md and "| 100.0 |" in md
    for name in ("pareto", "accuracy_vs_state", "accuracy_vs_cost", "training_curves"):
        assert (reports / "synthetic_tiny_vit" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "[synthetic_tiny_vit](synthetic_tiny_vit.md)" in (reports / "index.md").read_text()
    assert (reports / "summary.md").is_file()

    run_snakemake(tmp_path, tiny_config, "--report", "report.html")
    html = (tmp_path / "report.html").read_text()
    for name in ("synthetic_tiny_vit.md", "pareto.png", "accuracy_vs_state.png", "training_curves.png", "index.md"):
        assert name in html
