"""The summary report: every number comes from the summary files."""

import json

import pytest

from prunebench.report.summary import write_summary_report

from .markdown import tables


def summary(method, state, seed, best, final, density):
    return {
        "experiment": f"g-cifar10-vit-{method}-s{seed}", "dataset": "cifar10", "model": "vit", "method": method,
        "seed": seed, "state": state, "density": density, "best_test_acc": best, "final_test_acc": final,
    }  # fmt: skip


@pytest.fixture
def summaries(tmp_path):
    rows = [
        summary("dense", 0, 0, 90.0, 89.5, 1.0), summary("dense", 1, 0, 91.25, 91.0, 1.0),
        summary("refill", 0, 0, 90.0, 89.5, 1.0), summary("refill", 1, 0, 88.125, 87.0, 0.548),
        summary("rsst", 0, 0, 90.0, 89.5, 1.0), summary("rsst", 1, 0, 89.0, 88.0, 0.548),
        summary("rsst", 0, 1, 92.0, 91.5, 1.0), summary("rsst", 1, 1, 87.0, 86.0, 0.548),
    ]  # fmt: skip
    paths = []
    for i, row in enumerate(rows):
        path = tmp_path / f"s{i}.json"
        path.write_text(json.dumps(row))
        paths.append(path)
    return rows, paths


def test_every_number_in_the_table_is_computed_from_the_summaries(summaries, tmp_path):
    rows, paths = summaries
    out = tmp_path / "reports" / "summary.md"
    write_summary_report(paths, out)
    table = {int(r["state"]): r for r in tables(out.read_text())[0]}
    assert set(table) == {0, 1}
    for state, r in table.items():
        for method in ("dense", "refill"):
            (src,) = [x for x in rows if x["method"] == method and x["state"] == state]
            assert float(r[f"{method} best"]) == pytest.approx(src["best_test_acc"], abs=0.005)
            assert float(r[f"{method} final"]) == pytest.approx(src["final_test_acc"], abs=0.005)
        rsst = [x["best_test_acc"] for x in rows if x["method"] == "rsst" and x["state"] == state]
        mean = sum(rsst) / 2
        std = (sum((v - mean) ** 2 for v in rsst)) ** 0.5  # sample std of two values: |a-b|/sqrt(2)
        assert r["rsst best"] == f"{mean:.2f} ± {std:.2f}"
    assert float(table[1]["refill density"]) == pytest.approx(0.548)
    assert float(table[1]["rsst density"]) == pytest.approx(0.548)
    assert "dense density" not in table[1]
    assert "Built from 8 state summaries of 4 experiments" in out.read_text()


def test_methods_are_columns_with_dense_first(summaries, tmp_path):
    _, paths = summaries
    out = tmp_path / "summary.md"
    write_summary_report(paths, out)
    header = [line for line in out.read_text().splitlines() if line.startswith("| state")][0]
    assert header.index("dense best") < header.index("refill best") < header.index("rsst best")


def test_each_pruned_method_has_its_own_density(tmp_path):
    rows = [summary("refill", 1, 0, 88.0, 87.0, 0.548), summary("reprune", 1, 0, 86.0, 85.5, 0.31)]
    paths = []
    for i, row in enumerate(rows):
        paths.append(tmp_path / f"s{i}.json")
        paths[-1].write_text(json.dumps(row))
    write_summary_report(paths, tmp_path / "summary.md")
    (r,) = tables((tmp_path / "summary.md").read_text())[0]
    assert (r["refill density"], r["reprune density"]) == ("0.548", "0.310")
