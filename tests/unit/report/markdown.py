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


def cells(line: str) -> list[str]:
    """The cells of one table row; an escaped pipe (\\|) stays inside its cell."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in ``text`` as a list of rows keyed by header."""
    out, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(cells(line))
        elif block:
            header, rows = block[0], block[2:]
            out.append([dict(zip(header, r)) for r in rows])
            block = []
    return out


NUMBER = r"-?\d[\d,]*(?:\.\d+)?"


def numbers(cell: str) -> list[float]:
    """The numbers in a cell: "1,234 / 567" -> [1234, 567], "90.12 ± 0.34 (88.1–92.0)" -> [90.12, 0.34, 88.1, 92.0]."""
    return [float(x.replace(",", "")) for x in re.findall(NUMBER, cell)]


def decimals(text: str) -> int:
    m = re.search(r"\.(\d+)", text)
    return len(m.group(1)) if m else 0


def assert_cell(cell: str, *expected: float, where: str = "") -> None:
    """The cell shows exactly the expected values, each to the precision it is printed with."""
    found = re.findall(NUMBER, cell)
    assert len(found) == len(expected), f"{where}: cell {cell!r}, expected {expected}"
    for text, e in zip(found, expected):
        g, tol = float(text.replace(",", "")), 0.5 * 10 ** -decimals(text) + 1e-9
        assert abs(g - e) <= tol, f"{where}: cell {cell!r} shows {g}, recomputed {e}"
