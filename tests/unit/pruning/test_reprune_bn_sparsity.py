"""REPrune's per-layer channel counts from one global threshold on |BN gamma|."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from prunebench.models.cnn import SmallCNN
from prunebench.pruning.groups import full_masks, groupsets_of
from prunebench.pruning.reprune import bn_gammas, channel_macs, layer_keep_counts


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


def test_channel_macs_add_up_to_the_flop_counter(model):
    gs = groupsets_of(model, ["channels"])
    per_channel, total = channel_macs(model, gs, 32)
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, 32, 32))
    assert total == counter.get_total_flops() // 2
    # conv1's channel: its 3x3x3 filter at 32x32, and conv2's 4x3x3 input slice at 16x16
    assert per_channel["conv1.channels"] == 27 * 32 * 32 + 4 * 9 * 16 * 16
    assert per_channel["conv3.channels"] == 4 * 9 * 8 * 8 + 10  # conv3 at 8x8, then one fc input


def test_macs_budget_removes_at_least_the_target(model):
    gs = groupsets_of(model, ["channels"])
    macs = channel_macs(model, gs, 32)
    keep = layer_keep_counts(bn_gammas(model, gs), full_masks(gs), macs=macs, macs_reduction=0.3)
    removed = sum((4 - keep[g.name]) * macs[0][g.name] for g in gs)
    assert removed >= 0.3 * macs[1]
    # in |gamma| order: 0.001 (conv3, 2,314 MACs), 0.01 and 0.02 (conv1, 36,864 each) pass 30 %, then stop
    assert keep == {"conv1.channels": 2, "conv2.channels": 4, "conv3.channels": 3}


def test_layer_floor_holds_back_the_threshold(model):
    gs = groupsets_of(model, ["channels"])
    floor = {"conv1.channels": 3, "conv2.channels": 1, "conv3.channels": 2}
    keep = layer_keep_counts(bn_gammas(model, gs), full_masks(gs), channel_sparsity=0.5, min_keep=floor)
    # removed in |gamma| order: 0.001 (conv3), 0.01 (conv1, now at its floor), 0.03 and 0.04,
    # then 0.5 and 0.6 of conv2 because 0.02 (conv1) and 0.05 (conv3) are held by the floors
    assert keep == {"conv1.channels": 3, "conv2.channels": 1, "conv3.channels": 2}
