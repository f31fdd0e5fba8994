"""torchvision's ResNet-34/50 at 224 px: sizes, the prunable inner convs, compact export and a REPrune event."""

import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from prunebench.export.compact import compact_model
from prunebench.models import build_model, model_spec
from prunebench.models.cost import model_cost
from prunebench.pruning.groups import MaskedParams, alive_params, full_masks, groupsets_of, param_masks
from prunebench.pruning.representatives import REPruneRun
from tests.conftest import TINY_CONFIG, resolved_experiment


def test_resnet50_has_torchvisions_parameters_and_macs_at_224px():
    model = build_model(model_spec({"arch": "resnet50", "img_size": 224}, 1000)).eval()
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    assert counter.get_total_flops() // 2 == pytest.approx(4.09e9, rel=0.01)  # 4.09 G MACs per image


@pytest.mark.parametrize(("arch", "blocks", "bottleneck"), [("resnet34", 16, False), ("resnet50", 16, True)])
def test_inner_convs_are_prunable_and_block_outputs_are_not(arch, blocks, bottleneck):
    model = build_model(model_spec({"arch": arch}, 10))
    chain = model.channel_chain()
    assert len(chain) == blocks * (2 if bottleneck else 1)
    assert model.conv1.kernel_size == (7, 7) and not isinstance(model.maxpool, torch.nn.Identity)
    consumers = {nxt.rsplit(".", 1)[1] for _, _, nxt in chain}
    assert consumers == ({"conv2", "conv3"} if bottleneck else {"conv2"})
    # the last conv of a block (conv3 of a bottleneck, conv2 of a basic block) feeds the residual stream
    last = "conv3" if bottleneck else "conv2"
    assert not any(conv.endswith(last) for conv, _, _ in chain)


def _random_masks(groupsets, seed=0):
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for gs in groupsets:
        m = torch.rand(gs.size, generator=g) < 0.5
        m[0] = True
        masks[gs.name] = m
    return masks


def test_resnet50_compact_model_computes_what_the_masked_model_computes():
    spec = model_spec({"arch": "resnet50", "img_size": 64}, 10)
    torch.manual_seed(0)
    model = build_model(spec)
    with torch.no_grad():  # trained-looking BN statistics, so that slicing them wrongly would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
    model.eval()
    groupsets = groupsets_of(model, ["channels"])
    masks = _random_masks(groupsets)
    MaskedParams(model, param_masks(model, groupsets, masks)).mask_weights()
    compact, cspec = compact_model(model, spec, masks)
    block = compact.layer2[1]
    assert block.conv1.out_channels == block.bn1.num_features == block.conv2.in_channels
    assert block.conv2.out_channels == int(masks["layer2.1.conv2.channels"].sum()) == block.conv3.in_channels
    assert block.conv3.out_channels == 512  # the residual width stays
    assert sum(p.numel() for p in compact.parameters()) == alive_params(model, param_masks(model, groupsets, masks))
    assert model_cost(compact, cspec)["macs"] < model_cost(model, spec)["macs"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (model(x) - compact(x)).abs().max().item() <= 1e-3 * model(x).abs().max().item()
    rebuilt = build_model(cspec)  # the compact spec rebuilds the slimmed architecture
    assert rebuilt.layer2[1].conv2.out_channels == block.conv2.out_channels


def test_a_reprune_event_on_resnet50_cuts_macs_across_both_inner_convs():
    cfg = {**TINY_CONFIG, "models": {"r50": {"arch": "resnet50", "img_size": 64}}}
    cfg["experiments"] = {"t": {"datasets": ["synthetic"], "models": ["r50"], "methods": ["reprune"], "seeds": [0]}}
    cfg["defaults"] = {
        **TINY_CONFIG["defaults"],
        "train": {**TINY_CONFIG["defaults"]["train"], "epochs": 4},
        "prune": {"states": 1, "target_sparsity": 0.4, "groups": ["channels"], "budget": "macs"},
        "reprune": {"interval_epochs": 1, "prune_until": 0.5},
    }
    exp = resolved_experiment(cfg)
    torch.manual_seed(0)
    model = build_model(model_spec(exp["model"], 10))
    groupsets = groupsets_of(model, ["channels"])
    run = REPruneRun(exp, groupsets)
    started = time.monotonic()
    masks, stats = run.prune(model, full_masks(groupsets), run.event_starts[-1], img_size=64)
    assert time.monotonic() - started < 60
    assert stats["reached"] == pytest.approx(stats["target"], abs=0.05)
    pruned = {name.rsplit(".", 2)[1] for name, m in masks.items() if not bool(m.all())}
    assert pruned == {"conv1", "conv2"}  # both inner convs of the bottlenecks lose channels
    assert all(bool(m.any()) for m in masks.values())
