"""Every state's summary.json carries dense vs compact costs; the throughput is timed apart (measure_state)."""

import json

from prunebench.export.measure import measure_state
from prunebench.results.layout import StatePaths
from prunebench.results.throughput import read_throughput
from prunebench.train.job import train_state
from tests.conftest import resolved_experiment


def _run(tmp_path, experiment, k):
    base = tmp_path / "results" / experiment["name"]
    paths = StatePaths(
        base / f"state{k}", base / "recovery" / f"state{k}",
        base / f"state{k - 1}" / "last.pt" if k else None, base / "state0" / "init.pt",
    )  # fmt: skip
    train_state(experiment, k, paths, data_dir=str(tmp_path / "data"), download=False, device="cpu")
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
    assert s1["throughput"] is None  # timed by its own job, not at the end of training
    state1 = tmp_path / "results" / exp["name"] / "state1"
    info = measure_state(state1 / "last.pt", state1 / "throughput.json", exp["measure"], device="cpu")
    assert (info["experiment"], info["state"], info["epoch"]) == (exp["name"], 1, s1["epoch"])
    assert info["config_hash"] == s1["config_hash"]
    tp = read_throughput(state1, s1)
    assert tp == info["throughput"] and set(tp["dense"]) == set(tp["compact"]) == {"1", "4"}
    assert tp["device_type"] == "cpu" and "torch" in tp["versions"]
    # throughput.json: the keys readers know (images/s, every round's images/s) and the speedup's spread
    on_disk = json.loads((state1 / "throughput.json").read_text())["throughput"]
    assert on_disk == tp and len(tp["passes"]["dense"]["4"]) == tp["rounds"] == tp["speedup"]["4"]["rounds"]
    for s in tp["speedup"].values():
        assert s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"]
        assert s["within_noise"] == (s["min"] <= 1.0 <= s["max"])
    # measure.compile: auto times compiled inference on CUDA only: eager alone on the CPU
    assert exp["measure"]["compile"] == "auto" and tp["mode"] == "eager" and "compiled" not in tp
    # a timing of another run of the state (here: another epoch) is not taken for this one's
    assert read_throughput(state1, {**s1, "epoch": s1["epoch"] + 1, "throughput": None}) is None


def test_throughput_is_null_when_measuring_is_off(tmp_path, tiny_config):
    tiny_config["defaults"]["measure"] = {"enabled": False}
    tiny_config["defaults"]["prune"]["states"] = 1
    summary = _run(tmp_path, resolved_experiment(tiny_config), 0)
    assert summary["throughput"] is None
    assert summary["cost"]["dense"]["macs"] > 0
