"""The oneshot baseline on the demo CNN: global channel ranking no longer empties a layer.

The old failure (issue 21): global ranking pooled the raw L1 sums of conv1-3, whose scales differ, and
oneshot's masks kept 8/32/1 channels (15.6 % test accuracy against Refill's 96.7 %). Here both run on
config/demo.yaml's CNN and digits at 30 % of the dense MACs, on a shorter schedule (about a minute on
one core), from one shared state 0 as the workflow gives them.
"""

import yaml

from prunebench.config import resolve_config, shared_state0_run
from prunebench.results.layout import StatePaths
from prunebench.train.job import train_state
from prunebench.train.share import adopt_state0
from tests.conftest import REPO


def demo_cnn_experiments(methods: list[str]) -> dict[str, dict]:
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    group = config["experiments"]["demo_cnn"]
    group.update(methods=methods, seeds=[0], dense_control=False)
    group["overrides"]["train"].update(state0_epochs=6, epochs=3)
    group["overrides"]["prune"].update(states=3, target_sparsity=0.7)  # 30 % of the dense MACs from state 1 on
    config.update(experiments={"demo_cnn": group}, device="cpu")
    config["defaults"]["measure"] = {"enabled": False}
    return {e["method"]: e for e in resolve_config(config).experiments.values()}


def test_oneshot_on_the_demo_cnn_is_within_5_points_of_refill_at_30_percent_of_the_macs(tmp_path):
    experiments = demo_cnn_experiments(["refill", "oneshot"])
    shared, dense = shared_state0_run(experiments["refill"])
    train_state(dense, 0, StatePaths.under(tmp_path, shared, 0), download=False, device="cpu", threads=1)
    final = {}
    for method, exp in experiments.items():
        adopt_state0(tmp_path / shared / "state0", tmp_path / exp["name"] / "state0", exp)
        for k in (1, 2):
            final[method] = train_state(
                exp, k, StatePaths.under(tmp_path, exp["name"], k), download=False, device="cpu"
            )
    for method, summary in final.items():
        cost = summary["cost"]
        assert cost["compact"]["macs"] <= 0.30 * cost["dense"]["macs"], method
        kept = {layer: counts["channel"] for layer, counts in summary["kept"].items()}
        assert set(kept) == {"conv1", "conv2", "conv3"}
        assert all(n >= 1 for n in kept.values()), (method, kept)  # every layer keeps its floor...
        assert all(n > 1 for n in kept.values()), (method, kept)  # ...and none is pushed down to it by scale
    assert final["oneshot"]["final_test_acc"] >= final["refill"]["final_test_acc"] - 5.0, final
