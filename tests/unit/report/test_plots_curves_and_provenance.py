"""The training curves (accuracy of every split, learning rate, a penalty's lambda; seeds as mean and band)
and the comparison report's closing "How it was produced" section."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from prunebench.report.build import build_reports
from prunebench.report.load import load_results
from prunebench.report.plots import CURVE_PANELS, plot_training_curves, training_curve_series
from prunebench.report.render import render_comparison
from prunebench.results.layout import find_summaries
from tests.unit.report.conftest import DATASET, MODEL, name
from tests.unit.report.markdown import sections, tables

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_curves_have_a_panel_per_recorded_metric(results_dir, tmp_path):
    res = load_results(find_summaries(results_dir))
    path = tmp_path / "curves.png"
    labels = plot_training_curves(res.epochs, path, "fixture")
    assert path.read_bytes()[:8] == PNG_MAGIC
    # every method of the fixture logs lambda 0 (no penalty): no lambda panel
    assert set(labels) == {"train_acc", "val_acc", "test_acc", "train_loss", "lr"}
    assert labels["lr"] == "learning rate"


def test_curves_average_the_seeds_with_a_band(results_dir):
    res = load_results(find_summaries(results_dir))
    series = training_curve_series(res.epochs)
    assert set(series) == set(CURVE_PANELS)
    refill = series["test_acc"]["refill"]  # seeds 0 and 1 (two groups, one method)
    ep = res.epochs
    s0 = ep[(ep["experiment"] == name("main", "refill", 0)) & (ep["state"] == 1) & (ep["epoch"] == 2)]
    s1 = ep[(ep["experiment"] == name("seeds", "refill", 1)) & (ep["state"] == 1) & (ep["epoch"] == 2)]
    x = 12 + 1 + 2  # state 0's 13 positions (epochs 0-12), then epoch 2 of state 1
    point = refill[refill["x"] == x].iloc[0]
    a, b = float(s0["test_acc"].iloc[0]), float(s1["test_acc"].iloc[0])
    assert point["seeds"] == 2
    assert point["mean"] == pytest.approx((a + b) / 2)
    assert (point["min"], point["max"]) == pytest.approx((min(a, b), max(a, b)))
    assert (series["test_acc"]["dense"]["seeds"] == 1).all()
    # the learning rate and training metrics leave out epoch 0 (the evaluation right after pruning)
    lr = series["lr"]["refill"].set_index("x")["mean"]
    assert np.isnan(lr[0]) and np.isnan(lr[13]) and lr[14] == pytest.approx(0.01)
    assert series["val_acc"]["rsst"]["mean"].notna().sum() > 0
    assert set(series["reg_lambda"]) == {"dense", "refill", "rsst"}


def test_curves_without_results(tmp_path):
    import pandas as pd

    labels = plot_training_curves(pd.DataFrame(), tmp_path / "c.png", "nothing")
    assert labels == {} and (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC


def _add_provenance(results_dir, exp, group, tricky, device=None):
    for state_dir in sorted((results_dir / exp).glob("state*")):
        path = state_dir / "summary.json"
        summary = json.loads(path.read_text())
        summary["provenance"] = {
            "source": {"version": "0.1.0", "git_commit": "ab" * 20, "git_dirty": True},
            "host": "node|7",
            "device": device or {"type": "cuda", "name": "NVIDIA H200", "driver": "570.1"},
            "packages": {
                "python": "3.12.1",
                "torch": "2.9.0",
                "torchvision": "0.24.0",
                "timm": "1.0.20",
                "numpy": "2.3.1",
                "cuda": "13.0",
                "cudnn": "91000",
            },  # fmt: skip
            "slurm": {"job_id": "4242"},
            "started_at": "2026-12-01T06:00:00Z",
            "finished_at": "2026-12-01T07:30:00Z",
            "peak_gpu_mb": 1234.5,
            "peak_host_mb": 2048.0,
            "experiment": {
                "name": exp,
                "group": group,
                "dataset": DATASET,
                "model_key": MODEL,
                "method": "refill",
                "seed": 0,
                "train": {"lr": 0.01, "note": tricky},
            },  # fmt: skip
        }
        path.write_text(json.dumps(summary))


def test_report_ends_with_how_it_was_produced(results_dir):
    tricky = "``` | <b>not html</b>"  # a value that would close a ``` fence and start a table cell
    _add_provenance(results_dir, name("main", "refill", 0), "main", tricky)
    build_reports(results_dir)
    md = (results_dir / "reports" / f"{DATASET}_{MODEL}.md").read_text()
    assert list(sections(md))[-1] == "How it was produced"
    part = sections(md)["How it was produced"]
    # the group's config, as YAML in a fence its content cannot close, read back whole
    assert "### Group main" in part
    block = part.split("````yaml\n", 1)[1].split("\n````", 1)[0]
    config = yaml.safe_load(block)
    assert config["group"] == "main" and config["methods"] == ["refill"] and config["seeds"] == [0]
    assert config["train"] == {"lr": 0.01, "note": tricky}
    assert "name" not in config and "method" not in config
    (versions,) = tables(part)
    rows = {r[""]: r["recorded by the states"] for r in versions}
    assert rows["states with provenance"].startswith("4 of 15 ")  # the fixture's other summaries predate it
    assert rows["prunebench"] == "0.1.0 (git " + "ab" * 6 + ", modified)"
    assert rows["devices"] == "NVIDIA H200 (driver 570.1)"
    assert rows["torch"] == "2.9.0" and rows["CUDA build"] == "13.0 (cuDNN 91000)"
    assert rows["numpy"] == "2.3.1" and rows["scikit-learn"] == "not recorded"  # written before it was
    assert rows["hosts"] == "1: node\\|7"  # escaped: the pipe stays in its cell
    assert rows["SLURM jobs"] == "1" and rows["peak GPU memory (MB)"] == "1234"
    assert rows["trained"] == "2026-12-01T06:00:00Z to 2026-12-01T07:30:00Z"


def test_a_cpu_states_device_names_the_instruction_set_of_its_kernels(results_dir):
    """The same seed gives other numbers on a CPU with other vector instructions: the report says which."""
    cpu = {"type": "cpu", "name": "Intel(R) Xeon(R) Processor", "driver": None, "cpu_count": 2, "capability": "AVX512"}
    _add_provenance(results_dir, name("main", "refill", 0), "main", "x", device=cpu)
    build_reports(results_dir)
    md = (results_dir / "reports" / f"{DATASET}_{MODEL}.md").read_text()
    (versions,) = tables(sections(md)["How it was produced"])
    rows = {r[""]: r["recorded by the states"] for r in versions}
    assert rows["devices"] == "Intel(R) Xeon(R) Processor (AVX512 kernels)"


def test_groups_without_finished_states_show_the_workflows_config(results_dir, fixture_plan):
    from prunebench.config import resolve_config
    from tests.unit.report.conftest import FIXTURE_CONFIG

    experiments = resolve_config(FIXTURE_CONFIG).experiments
    res = load_results(find_summaries(results_dir))
    md = render_comparison(res, DATASET, MODEL, {k: "x.png" for k in ("pareto", "accuracy_vs_state",
                           "accuracy_vs_cost", "training_curves")}, experiments)  # fmt: skip
    part = sections(md)["How it was produced"]
    assert "### Group main" in part and "### Group seeds" in part
    assert "From the workflow's config" in part
    block = part.split("### Group main", 1)[1].split("```yaml\n", 1)[1].split("\n```", 1)[0]
    config = yaml.safe_load(block)
    assert config["methods"] == ["dense", "refill", "rsst"]
    assert config["train"]["epochs"] == 6 and config["prune"]["states"] == 4
