"""Strings read from result files reach the Markdown reports as text: no live HTML, no broken table."""

from __future__ import annotations

import json

from prunebench.report.build import build_reports
from prunebench.report.index import render_index
from prunebench.report.load import load_results
from prunebench.report.summary import render_summary
from prunebench.results.layout import find_summaries

from .conftest import DATASET, MODEL
from .markdown import cells, sections, tables

CRAFTED = "<img src=x onerror=alert(1)>|x"


def test_a_crafted_device_name_stays_text(results_dir):
    for path in find_summaries(results_dir):
        s = json.loads(path.read_text())
        s["device"] = CRAFTED
        path.write_text(json.dumps(s))
    build_reports(results_dir)
    md = (results_dir / "reports" / f"{DATASET}_{MODEL}.md").read_text()
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;\\|x" in md
    text = sections(md)["Time and throughput"]
    for line in (line for line in text.splitlines() if line.startswith("|")):
        assert len(cells(line)) in (5, 8, 10), line  # every row as wide as its table's header
    totals, per_state, _ = tables(text)
    assert {r["device"] for r in per_state} <= {"&lt;img src=x onerror=alert(1)&gt;\\|x", "&lt;img src=x "
                                                 "onerror=alert(1)&gt;\\|x (shared)"}  # fmt: skip


def test_crafted_names_in_the_summary_and_index(results_dir):
    (path,) = [p for p in find_summaries(results_dir) if "refill-s0/state1" in p.as_posix()]
    s = json.loads(path.read_text())
    s["model"] = "<script>x</script>[a](javascript:1)"
    path.write_text(json.dumps(s))
    results = load_results([path])
    for md in (render_summary(results.states), render_index(results, {})):
        assert "<script>" not in md and "[a](javascript" not in md
        assert "&lt;script&gt;x&lt;/script&gt;\\[a\\](javascript:1)" in md
