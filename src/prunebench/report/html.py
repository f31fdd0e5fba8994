"""HTML versions of the Markdown reports: what ``snakemake --report`` shows and a browser opens.

Python-Markdown renders the report (its ``tables`` extension the tables, ``toc`` the heading
anchors). Snakemake's report embeds each file on its own, so the plots a report links by relative
path are embedded as data: URIs, and a link to another report's ``.md`` points to its ``.html``.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

from prunebench.io import atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; line-height: 1.45; max-width: 72rem; margin: 1.5rem auto; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.2rem 0.5rem; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def _local_path(url: str | None, base_dir: Path) -> Path | None:
    """The file a relative URL of the report points to (None for absolute URLs, anchors, other hosts)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
        return None
    return base_dir / unquote(parts.path)


def data_uri(path: Path) -> str:
    """The file as a data: URI (its type guessed from the name)."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


class _LocalFiles(Treeprocessor):
    """Embeds the images the report links by relative path; links to ``.md`` reports go to their ``.html``."""

    def __init__(self, md: markdown.Markdown, base_dir: Path):
        super().__init__(md)
        self.base_dir = base_dir

    def run(self, root):
        for img in root.iter("img"):
            path = _local_path(img.get("src"), self.base_dir)
            if path is not None and path.is_file():
                img.set("src", data_uri(path))
        for a in root.iter("a"):
            href = a.get("href")
            if _local_path(href, self.base_dir) is not None:
                parts = urlsplit(href)
                if parts.path.endswith(".md"):
                    a.set("href", urlunsplit(parts._replace(path=parts.path[: -len(".md")] + ".html")))


class _LocalFilesExtension(Extension):
    def __init__(self, base_dir: Path):
        super().__init__()
        self.base_dir = base_dir

    def extendMarkdown(self, md: markdown.Markdown) -> None:
        # below the inline processor (20), which turns ![..](..) and [..](..) into elements
        md.treeprocessors.register(_LocalFiles(md, self.base_dir), "prunebench_local_files", 5)


def render_html(text: str, base_dir: str | Path) -> str:
    """A Markdown report as one self-contained HTML page; relative links resolve against ``base_dir``."""
    md = markdown.Markdown(
        extensions=["tables", "fenced_code", "toc", _LocalFilesExtension(Path(base_dir))], output_format="html"
    )
    body = md.convert(text)
    title = html.unescape(md.toc_tokens[0]["name"]) if md.toc_tokens else "prunebench report"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def write_report(text: str, md_path: str | Path, html_path: str | Path | None = None) -> None:
    """Write the Markdown report to ``md_path`` and, when given, its HTML version to ``html_path``
    (its plots are read from where the Markdown links them, so they must exist by now)."""
    md_path = Path(md_path)
    atomic_write_text(md_path, text)
    if html_path is not None:
        atomic_write_text(html_path, render_html(text, md_path.parent))
