"""Every state's summary.json carries dense vs compact costs and (when enabled) measured throughput."""

import json

from prunebench.train.state import StatePaths, run_state
from tests.conftest import resolved_experiment


def _run(tmp_path, experiment, k):
    base = tmp_path / "results" / experiment["name"]
    paths = StatePaths(
        base / f"state{k}", base / "recovery" / f"state{k}",
        base / f"state{k - 1}" / "last.pt" if k else None, base / "state0" / "init.pt",
    )  # fmt: skip
    run_state(experiment, k, paths, data_dir=str(tmp_path / "data"), download=False, device="cpu")
    return json.loads((paths.out_dir / "summary.json").read_text())


def test_pruned_state_summary_has_costs_and_throughput(tmp_path, tiny_config):
    tiny_config["defaults"]["measure"] = {"batch_sizes": [1, 4], "warmup": 0, "repeats": 1}
    exp = resolved_experiment(tiny_config)
    s0, s1 = _run(tmp_path, exp, 0), _run(tmp_path, exp, 1)

    assert s0["cost"]["dense"] == s0["cost"]["compact"]  # nothing pruned in state 0
    dense, compact = s1["cost"]["dense"], s1["cost"]["compact"]
    assert dense == s0["cost"]["dense"]
    assert compact["params"] == s1["params_alive"] < dense["params"]
    assert compact["macs"] < dense["macs"]
    assert compact["params_other"] == dense["params_other"]  # embeddings, norms and head are never pruned
    tp = s1["throughput"]
    assert set(tp["dense"]) == set(tp["compact"]) == {"1", "4"}
    assert tp["device_type"] == "cpu" and "torch" in tp["versions"]


def test_throughput_is_null_when_measuring_is_off(tmp_path, tiny_config):
    tiny_config["defaults"]["measure"] = {"enabled": False}
    tiny_config["defaults"]["prune"]["states"] = 1
    summary = _run(tmp_path, resolved_experiment(tiny_config), 0)
    assert summary["throughput"] is None
    assert summary["cost"]["dense"]["macs"] > 0
