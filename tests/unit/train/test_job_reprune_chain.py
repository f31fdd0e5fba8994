"""A tiny REPrune run through two prune states: events, frozen architecture, masks in checkpoints."""

import json
import math

import pytest

from prunebench.results.checkpoint import load_checkpoint
from prunebench.results.layout import StatePaths
from prunebench.train.job import train_state
from tests.conftest import resolved_experiment


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """ResNet-20, 2 states x 2 epochs, pruning after 1, 2 and 3 trained epochs (T_prune = 0.75 x 4),
    that is at the start of global epochs 2, 3 and 4."""
    from tests.conftest import TINY_CONFIG

    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["models"] = {"r20": {"arch": "resnet20"}}
    cfg["experiments"]["t"]["models"] = ["r20"]
    cfg["defaults"]["train"].update(epochs=2, optimizer="sgd", lr=0.05)
    cfg["defaults"]["prune"].update(groups=["channels"], target_sparsity=0.5, budget="groups")
    cfg["defaults"]["data"]["train_limit"] = 128
    cfg["defaults"]["reprune"] = {"interval_epochs": 1, "prune_until": 0.75, "regrowth": 0.5}
    exp = resolved_experiment(cfg, "reprune")
    root = tmp_path_factory.mktemp("reprune")
    out = {}
    for k in range(2):
        paths = StatePaths(root / f"state{k}", root / f"recovery{k}", root / "state0/last.pt" if k else None)
        out[k] = train_state(exp, k, paths, data_dir=str(root / "data"), download=False, device="cpu", threads=1)
    return root, out


def _rows(root, k):
    return [json.loads(line) for line in (root / f"state{k}/metrics.jsonl").read_text().splitlines()]


def test_events_follow_the_global_epoch_numbering(chain):
    root, summaries = chain
    events = {k: [r["global_epoch"] for r in _rows(root, k) if r.get("coverage") is not None] for k in (0, 1)}
    assert events == {0: [2], 1: [3, 4]}
    assert [e["epoch"] for e in summaries[1]["reprune"]["events"]] == [3, 4]
    assert [s["event_epochs"] for s in summaries.values()] == [[2], [1, 2]]  # state-local
    assert summaries[0]["reprune"]["frozen"] is False and summaries[1]["reprune"]["frozen"] is True


def test_no_reported_accuracy_is_of_a_just_pruned_model(chain):
    """Every event prunes before its epoch trains, so best and final are trained after the last event."""
    root, summaries = chain
    for k, summary in summaries.items():
        rows = _rows(root, k)
        last_event = max(summary["event_epochs"])
        assert summary["best_epoch"] >= last_event and summary["epoch"] >= last_event
        for r in rows:
            if r.get("reprune_event"):
                assert r["train_loss"] is not None and r["density"] == r["reprune_event"]["reached"]
        final = rows[-1]
        assert (summary["final_test_acc"], summary["density"]) == (final["test_acc"], final["density"])


def test_the_accuracy_right_after_each_event_is_logged_on_its_row(chain):
    """As RSST logs its model just before its hard mask: the pruned model, evaluated before it trains again."""
    root, summaries = chain
    for k, summary in summaries.items():
        events = [r for r in _rows(root, k) if r.get("reprune_event")]
        assert [r["epoch"] for r in events] == summary["event_epochs"]
        for r in events:
            after = {"val_acc": r["after_prune_val_acc"], "test_acc": r["after_prune_test_acc"]}
            assert all(0.0 <= v <= 100.0 for v in after.values())
            assert r["reprune_event"]["after_prune"] == after
        assert all("after_prune_test_acc" not in r for r in _rows(root, k) if not r.get("reprune_event"))
    assert [e["after_prune"] for e in summaries[1]["reprune"]["events"]] == [
        r["reprune_event"]["after_prune"] for r in _rows(root, 1) if r.get("reprune_event")
    ]


def test_coverage_is_logged_per_layer(chain):
    root, summaries = chain
    event = summaries[1]["reprune"]["events"][-1]
    assert set(event["layers"]) == {f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)}
    assert all(0.0 < layer["coverage"] <= 1.0 for layer in event["layers"].values())
    assert event["regrow_fraction"] == 0.0  # the cosine reaches zero at the last event
    assert event["budget_share"] == 1.0 and event["target"] == 0.5 == event["reached"]  # the whole budget


def test_regrowth_decays_to_the_target(chain):
    root, summaries = chain
    kept = [sum(v["kept"] for v in e["layers"].values()) for s in (0, 1) for e in summaries[s]["reprune"]["events"]]
    assert kept[0] > kept[1] > kept[2] == 168  # half of ResNet-20's 336 inner channels at the last event


def test_masks_are_nested_and_pruned_weights_zero(chain):
    root, _ = chain
    first = load_checkpoint(root / "state0/last.pt")["masks"]
    last = load_checkpoint(root / "state1/last.pt")
    for name, mask in last["masks"].items():
        assert not bool((mask & ~first[name]).any())
    sd, mask = last["state_dict"], last["masks"]["layer2.1.conv1.channels"]
    gone = ~mask
    assert bool(gone.any())
    assert sd["layer2.1.conv1.weight"][gone].abs().sum() == 0
    assert sd["layer2.1.bn1.weight"][gone].abs().sum() == 0 and sd["layer2.1.bn1.bias"][gone].abs().sum() == 0
    assert sd["layer2.1.conv2.weight"][:, gone].abs().sum() == 0
    assert sd["layer2.1.conv1.weight"][mask].abs().sum() > 0


def test_lr_schedule_spans_the_chain(chain):
    root, _ = chain
    lrs = [r["lr"] for k in (0, 1) for r in _rows(root, k) if r["epoch"] > 0]
    # 128 images / batch 64 = 2 steps an epoch; one cosine over all 8 steps of the chain, no restart
    expected = [0.05 * 0.5 * (1 + math.cos(math.pi * (2 * g - 1) / 8)) for g in (1, 2, 3, 4)]
    assert lrs == pytest.approx(expected)
