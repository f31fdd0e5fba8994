"""Reading rendered Markdown reports back: sections, tables and the numbers in their cells."""

from __future__ import annotations

import re


def sections(md: str) -> dict[str, str]:
    """Text under each `## heading`."""
    out, current = {}, None
    for line in md.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in ``text`` as a list of rows keyed by header."""
    out, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            header, rows = block[0], block[2:]
            out.append([dict(zip(header, r)) for r in rows])
            block = []
    return out


def numbers(cell: str) -> list[float]:
    """The numbers in a cell: "1,234 / 567" -> [1234, 567], "90.12 ± 0.34" -> [90.12, 0.34]."""
    return [float(x.replace(",", "")) for x in re.findall(r"-?\d[\d,]*(?:\.\d+)?", cell)]


def decimals(cell: str) -> int:
    m = re.search(r"\.(\d+)", cell)
    return len(m.group(1)) if m else 0


def assert_cell(cell: str, *expected: float, where: str = "") -> None:
    """The cell shows exactly the expected values, to the precision it prints."""
    got = numbers(cell)
    assert len(got) == len(expected), f"{where}: cell {cell!r}, expected {expected}"
    tol = 0.5 * 10 ** -decimals(cell) + 1e-9
    for g, e in zip(got, expected):
        assert abs(g - e) <= tol, f"{where}: cell {cell!r} shows {g}, recomputed {e}"
