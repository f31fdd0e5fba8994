"""A slim chain through the real workflow reports what the masked chain reports (train.slim, issue 23)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import run_snakemake

EXP = "t-synthetic-tiny_vit-refill-s0"


def _accuracy_rows(md: str) -> dict[str, list[float]]:
    """The numbers of every row of the report's per-state accuracy table, by its first cells."""
    section = md.split("## Accuracy per state")[1].split("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not re.fullmatch(r"\d+", cells[0]):
            continue
        numbers = [float(m) for c in cells[1:] for m in re.findall(r"-?\d+\.\d+", c)]
        rows[cells[0]] = numbers
    return rows


@pytest.mark.slow
def test_a_slim_chain_reports_the_masked_chain_accuracies(tmp_path, tiny_config):
    tiny_config["defaults"]["train"]["epochs"] = 2
    tiny_config["defaults"]["prune"]["states"] = 3
    reports = {}
    for slim in ("auto", "off"):
        config = json.loads(json.dumps(tiny_config))
        config["defaults"]["train"]["slim"] = slim
        run_snakemake(tmp_path / slim, config)
        results = tmp_path / slim / "results"
        trained = [json.loads((results / EXP / f"state{k}/summary.json").read_text())["run"] for k in (1, 2)]
        assert [r["training"] for r in trained] == (["slim", "slim"] if slim == "auto" else ["masked", "masked"])
        reports[slim] = _accuracy_rows((results / "reports" / "synthetic_tiny_vit.md").read_text())
    assert reports["auto"].keys() == reports["off"].keys() and len(reports["auto"]) >= 2, reports
    for state, numbers in reports["auto"].items():
        other = reports["off"][state]
        assert len(numbers) == len(other) and all(abs(a - b) <= 0.1 for a, b in zip(numbers, other)), (
            state,
            numbers,
            other,
        )
