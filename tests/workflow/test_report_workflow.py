"""The report rules on a real tiny run: comparison report, plots, index, and `snakemake --report`."""

from __future__ import annotations

import base64
import re

import pytest

from tests.conftest import run_snakemake


@pytest.mark.slow
def test_reports_after_a_tiny_run(tmp_path, tiny_config):
    tiny_config["experiments"]["t"]["methods"] = ["dense", "refill"]
    proc = run_snakemake(tmp_path, tiny_config)
    # one console line per finished state (the local announce_state jobs), and where the reports are
    pattern = r"^prunebench: (\S+) state (\d) done in \d+ s: test [\d.]+ % at its end, [\d.]+ % at its best validation"
    done = re.findall(pattern, proc.stdout, re.MULTILINE)
    assert "prunebench: the reports are in results/reports/index.md" in proc.stdout
    expected = [("t-synthetic-tiny_vit-s0", "0")] + [(f"t-synthetic-tiny_vit-{m}-s0", "1") for m in ("dense", "refill")]
    assert sorted(done) == sorted(expected), proc.stdout
    reports = tmp_path / "results" / "reports"
    md = (reports / "synthetic_tiny_vit.md").read_text()
    assert "4 of 4 planned states are finished" in md
    assert "| state | dense best | dense final | refill density | refill MACs % | refill best | refill final |" in md
    # the dense reference is the shared dense state 0, read by the report job; accuracies carry intervals
    assert "| t-synthetic-tiny_vit-s0 | 0 |" in md and "Its final accuracy: " in md
    assert md.index("## Decision") < md.index("## Contents") < md.index("## Completeness")
    assert "## Accuracy at matched cost" in md and "## How each method trained" in md
    matched = md.split("## Accuracy at matched cost")[1].split("## Accuracy per state")[0]
    assert "| 100.0 |" not in matched  # matched costs are pruned states' costs, never the dense 100 %
    for name in ("pareto", "accuracy_vs_state", "accuracy_vs_cost", "training_curves"):
        assert (reports / "synthetic_tiny_vit" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "[synthetic_tiny_vit](synthetic_tiny_vit.md)" in (reports / "index.md").read_text()
    assert (reports / "summary.md").is_file()

    run_snakemake(tmp_path, tiny_config, "--report", "report.html")
    html = (tmp_path / "report.html").read_text()
    for name in ("synthetic_tiny_vit.html", "pareto.png", "accuracy_vs_state.png", "training_curves.png", "index.html"):
        assert name in html
    # the comparison report is embedded as rendered HTML: its tables as tables, its plots inside it
    (embedded,) = re.findall(
        r"data:text/html;charset=\w+;filename=synthetic_tiny_vit\.html;base64,([A-Za-z0-9+/=]+)", html
    )
    page = base64.b64decode(embedded).decode()
    assert page.count("<table>") >= 10
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", page)
    for cell in ("state", "dense best", "refill best", "MACs kept %", "dense state 0", "retention at last state %"):
        assert cell in headers
    assert page.count('src="data:image/png;base64,') == 4
