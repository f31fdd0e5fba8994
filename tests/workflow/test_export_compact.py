"""The workflow exports the final state of every experiment as a compact model."""

import json

import pytest

from prunebench.export.compact import load_compact
from tests.conftest import run_snakemake


@pytest.mark.slow
def test_workflow_exports_final_state_as_compact_model(tmp_path, tiny_config):
    tiny_config["defaults"]["measure"] = {"batch_sizes": [1, 8], "warmup": 0, "repeats": 1}
    run_snakemake(tmp_path, tiny_config)
    exp = "t-synthetic-tiny_vit-refill-s0"
    cost = json.loads((tmp_path / "results" / exp / "compact" / "cost.json").read_text())
    summary = json.loads((tmp_path / "results" / exp / "state1" / "summary.json").read_text())
    assert cost["state"] == 1 and cost["cost"] == summary["cost"]
    timed = json.loads((tmp_path / "results" / exp / "state1" / "throughput.json").read_text())
    assert timed["throughput"]["compact"] and cost["throughput"] == timed["throughput"]
    assert cost["cost"]["compact"]["params"] == summary["params_alive"] < summary["params_dense"]
    model = load_compact(tmp_path / "results" / exp / "compact" / "model.pt")
    assert sum(p.numel() for p in model.parameters()) == summary["params_alive"]
