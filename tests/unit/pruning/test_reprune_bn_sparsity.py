"""REPrune's per-layer channel counts from one global threshold on |BN gamma|."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from prunebench.export.compact import compact_model
from prunebench.models import build_model, model_spec
from prunebench.models.cnn import SmallCNN
from prunebench.models.cost import model_cost
from prunebench.pruning.groups import full_masks, groupsets_of
from prunebench.pruning.representatives import ChannelCost, bn_gammas, layer_keep_counts


@pytest.fixture
def model():
    """A small CNN with 4 channels per conv whose BN scales are set by hand."""
    net = SmallCNN(widths=(4, 4, 4))
    with torch.no_grad():
        net.bn1.weight.copy_(torch.tensor([0.9, -0.8, 0.01, 0.02]))  # the sign does not matter
        net.bn2.weight.copy_(torch.tensor([0.5, 0.6, 0.7, -0.03]))
        net.bn3.weight.copy_(torch.tensor([0.04, 0.05, 0.001, 0.9]))
    return net


def test_global_threshold_sets_each_layers_share(model):
    gs = groupsets_of(model, ["channels"])
    keep = layer_keep_counts(bn_gammas(model, gs), full_masks(gs), channel_sparsity=0.5)
    # the 6 smallest |gamma| of all 12: 0.001, 0.04, 0.05 (conv3), 0.01, 0.02 (conv1), 0.03 (conv2)
    assert keep == {"conv1.channels": 2, "conv2.channels": 3, "conv3.channels": 1}


def test_every_layer_keeps_a_channel(model):
    gs = groupsets_of(model, ["channels"])
    keep = layer_keep_counts(bn_gammas(model, gs), full_masks(gs), channel_sparsity=0.95)
    assert keep == {"conv1.channels": 1, "conv2.channels": 1, "conv3.channels": 1}


def test_masked_channels_count_first(model):
    gs = groupsets_of(model, ["channels"])
    masks = full_masks(gs)
    masks["conv1.channels"][0] = False  # pruned earlier, although its gamma is large
    keep = layer_keep_counts(bn_gammas(model, gs), masks, channel_sparsity=0.25)
    assert keep == {"conv1.channels": 2, "conv2.channels": 4, "conv3.channels": 3}


def test_channel_costs_add_up_to_the_flop_counter(model):
    gs = groupsets_of(model, ["channels"])
    cost = ChannelCost(model, gs, 32, "macs")
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, 32, 32))
    assert cost.total == counter.get_total_flops() // 2
    full = {g.name: 4 for g in gs}
    # conv1's channel: its 3x3x3 filter at 32x32, and conv2's 4x3x3 input slice at 16x16
    assert cost.saving(full, "conv1.channels") == 27 * 32 * 32 + 4 * 9 * 16 * 16
    assert cost.saving(full, "conv3.channels") == 4 * 9 * 8 * 8 + 10  # conv3 at 8x8, then one fc input
    # chained prunable convs: conv2's weight entries of a channel conv1 already lost are not saved twice
    fewer = {**full, "conv1.channels": 3}
    assert cost.saving(fewer, "conv2.channels") == 3 * 9 * 16 * 16 + 4 * 9 * 8 * 8


@pytest.mark.parametrize("kind", ["macs", "params"])
def test_channel_cost_is_that_of_the_compact_model(kind):
    spec = model_spec({"arch": "small_cnn", "kwargs": {"widths": [6, 8, 10]}}, 10)
    torch.manual_seed(0)
    net = build_model(spec)
    gs = groupsets_of(net, ["channels"])
    masks = full_masks(gs)
    for name, drop in (("conv1.channels", [0, 3]), ("conv2.channels", [1, 2, 5]), ("conv3.channels", [9])):
        masks[name][drop] = False
    compact, cspec = compact_model(net, spec, masks)
    counted = model_cost(compact, cspec)[kind]
    cost = ChannelCost(net, gs, 32, kind)
    assert cost.cost({k: int(m.sum()) for k, m in masks.items()}) == counted
    assert cost.total == model_cost(net, spec)[kind]


def test_macs_budget_lands_as_close_to_the_target_as_a_channel_allows(model):
    gs = groupsets_of(model, ["channels"])
    cost = ChannelCost(model, gs, 32, "macs")
    keep = layer_keep_counts(bn_gammas(model, gs), full_masks(gs), cost=cost, reduction=0.3, min_keep=None)
    cut = 1 - cost.cost(keep) / cost.total
    # 156,712 MACs; in |gamma| order: 0.001 (conv3, 2,314 MACs), 0.01 (conv1, 36,864) leave 7,836 short
    # of 30 %; 0.02 (conv1, 36,864 more) would overshoot by 29,028 and is passed over; 0.03 (conv2:
    # 3 live inputs x 9 x 16x16 + 3 live conv3 filters x 9 x 8x8 = 8,640) overshoots by only 804
    assert keep == {"conv1.channels": 3, "conv2.channels": 3, "conv3.channels": 3}
    assert cut == pytest.approx(47_818 / 156_712)


def test_layer_floor_holds_back_the_threshold(model):
    gs = groupsets_of(model, ["channels"])
    floor = {"conv1.channels": 3, "conv2.channels": 1, "conv3.channels": 2}
    keep = layer_keep_counts(bn_gammas(model, gs), full_masks(gs), channel_sparsity=0.5, min_keep=floor)
    # removed in |gamma| order: 0.001 (conv3), 0.01 (conv1, now at its floor), 0.03 and 0.04,
    # then 0.5 and 0.6 of conv2 because 0.02 (conv1) and 0.05 (conv3) are held by the floors
    assert keep == {"conv1.channels": 3, "conv2.channels": 1, "conv3.channels": 2}


def test_macs_budget_never_keeps_more_than_its_target(model):
    """The kept cost ends at or under the target, as for Refill, RSST and the baselines (pruning.budget)."""
    gs = groupsets_of(model, ["channels"])
    cost = ChannelCost(model, gs, 32, "macs")
    for reduction in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        keep = layer_keep_counts(bn_gammas(model, gs), full_masks(gs), cost=cost, reduction=reduction, min_keep=None)
        assert 1 - cost.cost(keep) / cost.total >= reduction - 1e-12
