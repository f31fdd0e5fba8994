"""The HTML reports: every Markdown table rendered as a <table>, the plots embedded, links to .html."""

from __future__ import annotations

import base64
import html
import json
import re
from html.parser import HTMLParser

from prunebench.report.build import build_reports
from prunebench.report.html import render_html
from prunebench.results.layout import find_summaries

from .conftest import DATASET, MODEL
from .markdown import tables

CRAFTED = "<img src=x onerror=alert(1)>|x"


class _Page(HTMLParser):
    """The tables (header and body cells as text), images and links of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.tables, self.images, self.links, self._cell = [], [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({"header": [], "rows": []})
        elif tag == "tr":
            self._row, self._header = [], False
        elif tag in ("th", "td"):
            self._cell, self._header = "", tag == "th"
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "a":
            self.links.append(attrs.get("href"))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr":
            t = self.tables[-1]
            if self._header:
                t["header"] = self._row
            else:
                t["rows"].append(self._row)


def _md_text(cell: str) -> str:
    """A Markdown cell as the text a browser shows (links as their text, escapes and entities resolved)."""
    cell = re.sub(r"(?<!\\)\[(.*?)(?<!\\)\]\([^)]*\)", r"\1", cell)
    return html.unescape(cell.replace("\\|", "|").replace("\\[", "[").replace("\\]", "]").replace("**", ""))


def test_every_markdown_table_is_an_html_table_with_the_same_cells(results_dir):
    written, _ = build_reports(results_dir)
    reports = results_dir / "reports"
    for stem in (f"{DATASET}_{MODEL}", "index", "summary"):
        assert reports / f"{stem}.html" in written
        md_tables = tables((reports / f"{stem}.md").read_text())
        page = _Page((reports / f"{stem}.html").read_text())
        assert md_tables and len(page.tables) == len(md_tables), stem
        for md_table, html_table in zip(md_tables, page.tables):
            assert html_table["header"] == [_md_text(h) for h in md_table[0]], stem
            assert html_table["rows"] == [[_md_text(c) for c in row.values()] for row in md_table], stem
    headers = [t["header"] for t in _Page((reports / f"{DATASET}_{MODEL}.html").read_text()).tables]
    assert ["state", "dense best", "dense final", "refill density", "refill MACs %", "refill best"] in [
        h[:6] for h in headers
    ]


def test_plots_are_embedded_and_links_point_to_the_html_reports(results_dir):
    build_reports(results_dir)
    reports = results_dir / "reports"
    page = _Page((reports / f"{DATASET}_{MODEL}.html").read_text())
    assert {i["alt"] for i in page.images} == {
        "Accuracy vs MACs kept, Pareto front",
        "Accuracy per state",
        "Training curves",
        "Accuracy vs MACs and parameters",
    }
    for img in page.images:  # the report works alone: no file beside it is needed
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        assert base64.b64decode(img["src"][len(prefix) :])[:4] == b"\x89PNG"
    index = _Page((reports / "index.html").read_text())
    assert f"{DATASET}_{MODEL}.html" in index.links and "summary.html" in index.links
    assert not [link for link in index.links if link.endswith(".md")]


def test_crafted_text_stays_text_in_the_html(results_dir):
    for path in find_summaries(results_dir):
        s = json.loads(path.read_text())
        s["device"] = CRAFTED
        path.write_text(json.dumps(s))
    build_reports(results_dir)
    text = (results_dir / "reports" / f"{DATASET}_{MODEL}.html").read_text()
    page = _Page(text)
    assert "<img src=x" not in text
    (per_state,) = [t for t in page.tables if t["header"][:5] == ["method", "seed", "state", "device", "wall s"]]
    devices = {row[3] for row in per_state["rows"]}
    assert devices == {CRAFTED, f"{CRAFTED} (shared)"}  # one cell, the pipe kept inside it


def test_a_missing_plot_stays_a_link_and_remote_urls_are_untouched(tmp_path):
    text = "# T\n\n![gone](plots/gone.png) ![web](https://example.org/a.png) [other](other.md#top)\n"
    page = _Page(render_html(text, tmp_path))
    assert [i["src"] for i in page.images] == ["plots/gone.png", "https://example.org/a.png"]
    assert page.links == ["other.html#top"]
