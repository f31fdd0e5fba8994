"""REPrune's budget: the last event prunes all of it, whatever dT and T_prune, and the compact model
it leaves has the target's MACs (counted on the physically slimmed model) within 0.5 %."""

import pytest
import torch

from prunebench.export.compact import compact_model
from prunebench.models import build_model, model_spec
from prunebench.models.cost import model_cost
from prunebench.pruning.groups import full_masks, groupsets_of
from prunebench.pruning.representatives import REPruneRun

SPEC = model_spec({"arch": "resnet20"}, 10)


def _experiment(interval, until, states, epochs, budget="macs", sparsity=0.6038):
    return {
        "name": "t", "model": {"arch": "resnet20"},
        "train": {"epochs": epochs, "state0_epochs": None},
        "prune": {"states": states, "target_sparsity": sparsity, "groups": ["channels"], "budget": budget},
        "reprune": {"interval_epochs": interval, "prune_until": until, "linkage": "ward", "ramp": "linear",
                    "min_layer_density": 0.0, "regrowth": 0.0},
    }  # fmt: skip


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build_model(SPEC)
    with torch.no_grad():
        for _, bn, _ in net.channel_chain():
            net.get_submodule(bn).weight.uniform_(0.2, 1.0)  # a trained net's BN scales differ per channel
    return net


@pytest.mark.parametrize(
    ("interval", "until", "states", "epochs", "last_start"),
    [
        (2, 0.65, 10, 3, 21),  # 30 epochs, T_prune 20: events before epochs 3, 5, ... 21
        (3, 0.5, 5, 4, 10),  # 20 epochs, T_prune 10: the last multiple of 3 is 9, so its event is before epoch 10
        (4, 1.0, 3, 4, 9),  # 12 epochs, T_prune 12: an event after epoch 12 would train no more, so 8 is the last
    ],
)
def test_last_event_prunes_the_whole_budget_whatever_dt_and_t_prune(model, interval, until, states, epochs, last_start):
    run = REPruneRun(_experiment(interval, until, states, epochs), groupsets_of(model, ["channels"]))
    assert run.event_starts[-1] == last_start
    assert run.share(last_start) == 1.0 and run.target_at(run.total_epochs) == pytest.approx(1 - 0.6038)
    assert all(run.share(e) < 1.0 for e in run.event_starts[:-1])


@pytest.mark.parametrize(("interval", "until"), [(2, 0.65), (3, 0.5)])
def test_counted_macs_of_the_last_event_are_within_half_a_percent(model, interval, until):
    groupsets = groupsets_of(model, ["channels"])
    run = REPruneRun(_experiment(interval, until, 5, 4), groupsets)
    masks = full_masks(groupsets)
    for start in run.event_starts:
        new, event = run.prune(model, masks, start, 32)
        assert all(not bool((new[k] & ~masks[k]).any()) for k in masks)  # nested
        masks = new
    compact, cspec = compact_model(model, SPEC, masks)
    cut = 1 - model_cost(compact, cspec)["macs"] / model_cost(model, SPEC)["macs"]
    assert abs(cut - 0.6038) < 0.005
    assert event["reached"] == pytest.approx(1 - cut)  # what the summary reports is what is counted


def test_params_budget_is_met_on_the_compact_model(model):
    groupsets = groupsets_of(model, ["channels"])
    run = REPruneRun(_experiment(1, 1.0, 2, 1, budget="params", sparsity=0.4), groupsets)
    masks, event = run.prune(model, full_masks(groupsets), run.event_starts[-1], 32)
    compact, cspec = compact_model(model, SPEC, masks)
    kept = model_cost(compact, cspec)["params"] / model_cost(model, SPEC)["params"]
    assert abs(kept - 0.6) < 0.005 and event["reached"] == pytest.approx(kept)
