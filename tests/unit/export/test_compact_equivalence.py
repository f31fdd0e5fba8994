"""A compact model computes what the masked model computes, with the pruned groups physically gone."""

import torch

from prunebench.export.compact import compact_model
from prunebench.models import build_model, model_spec
from prunebench.pruning.groups import MaskedParams, alive_params, groupsets_of, param_masks

VIT = {
    "arch": "vit_tiny_patch16_224",
    "img_size": 32,
    "patch_size": 8,
    "kwargs": {"embed_dim": 64, "depth": 3, "num_heads": 4, "mlp_ratio": 2.0},
}


def _mask(size: int, keep: list[int]) -> torch.Tensor:
    m = torch.zeros(size, dtype=torch.bool)
    m[keep] = True
    return m


def _masked(spec: dict, masks: dict):
    torch.manual_seed(0)
    model = build_model(spec).eval()
    groupsets = [gs for gs in groupsets_of(model) if gs.name in masks]
    MaskedParams(model, param_masks(model, groupsets, masks)).mask_weights()
    return model, groupsets


def test_vit_with_uneven_heads_and_a_single_head_block_matches_the_masked_model():
    spec = model_spec(VIT, 10)
    masks = {
        "blocks.0.attn.heads": _mask(4, [0, 2, 3]),
        "blocks.0.mlp.neurons": _mask(128, list(range(0, 128, 3))),
        "blocks.1.attn.heads": _mask(4, [2]),  # a block that keeps one head
        "blocks.1.mlp.neurons": _mask(128, [5]),
        "blocks.2.attn.heads": _mask(4, [0, 1, 2, 3]),
        "blocks.2.mlp.neurons": _mask(128, list(range(100))),
    }
    model, groupsets = _masked(spec, masks)
    compact, cspec = compact_model(model, spec, masks)

    heads = [b.attn.num_heads for b in compact.blocks]
    assert heads == [3, 1, 4]
    assert [b.mlp.fc1.out_features for b in compact.blocks] == [43, 1, 100]
    assert compact.blocks[1].attn.qkv.weight.shape == (3 * 16, 64)
    assert compact.blocks[1].attn.proj.weight.shape == (64, 16)
    assert all(b.attn.scale == 16**-0.5 for b in compact.blocks)  # head_dim kept, so the scale too
    assert cspec["widths"]["blocks.1"] == {"head": 1, "neuron": 1}
    assert sum(p.numel() for p in compact.parameters()) == alive_params(model, param_masks(model, groupsets, masks))

    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        diff = (model(x) - compact(x)).abs().max().item()
    assert diff <= 1e-4


def test_vit_with_only_neurons_pruned_keeps_every_head():
    spec = model_spec(VIT, 10)
    torch.manual_seed(1)
    masks = {f"blocks.{i}.mlp.neurons": torch.rand(128) > 0.6 for i in range(3)}
    model, _ = _masked(spec, masks)
    compact, _ = compact_model(model, spec, masks)
    assert [b.attn.num_heads for b in compact.blocks] == [4, 4, 4]
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert (model(x) - compact(x)).abs().max().item() <= 1e-4


def test_cnn_channels_are_removed_with_their_bn_entries_and_the_next_layer_inputs():
    spec = model_spec({"arch": "small_cnn"}, 10)
    masks = {
        "conv1.channels": _mask(32, [0, 3, 7, 31]),
        "conv2.channels": _mask(64, [10]),
        "conv3.channels": _mask(128, list(range(0, 128, 2))),
    }
    torch.manual_seed(0)
    model = build_model(spec)
    with torch.no_grad():  # trained-looking BN statistics, so that slicing them wrongly would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    model.eval()
    groupsets = groupsets_of(model)
    MaskedParams(model, param_masks(model, groupsets, masks)).mask_weights()
    compact, cspec = compact_model(model, spec, masks)

    assert (compact.conv1.out_channels, compact.conv2.in_channels) == (4, 4)
    assert (compact.conv2.out_channels, compact.bn2.num_features, compact.conv3.in_channels) == (1, 1, 1)
    assert compact.fc.in_features == 64
    assert cspec["widths"] == {"conv1": {"channel": 4}, "conv2": {"channel": 1}, "conv3": {"channel": 64}}
    assert sum(p.numel() for p in compact.parameters()) == alive_params(model, param_masks(model, groupsets, masks))
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert (model(x) - compact(x)).abs().max().item() <= 1e-4
