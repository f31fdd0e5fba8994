"""Which groups each ranking keeps, state after state."""

import math

import pytest
import torch

from prunebench.pruning.budget import choose_masks
from prunebench.pruning.groups import full_masks, group_costs, group_importance, groupsets_of
from prunebench.pruning.schedule import density_at

PRUNE = {"states": 5, "target_sparsity": 0.7, "schedule": "geometric", "importance": "l1"}


def chain(model, ranking, prune=PRUNE):
    """Masks of every state of a chain, scoring the (unchanged) weights at each state."""
    groupsets = groupsets_of(model, ["heads", "neurons"])
    masks = [full_masks(groupsets)]
    for k in range(1, prune["states"]):
        _, keep = choose_masks(model, groupsets, masks[-1], {**prune, "ranking": ranking}, k)
        masks.append(keep)
    return groupsets, masks


def randomise(model):
    """Give heads and neurons distinct magnitudes so rankings are not ties."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * torch.rand(p.shape[0], *([1] * (p.dim() - 1))))
    return model


@pytest.mark.parametrize("ranking", ["layerwise", "global", "mixed"])
def test_masks_are_nested_and_every_layer_keeps_a_head_and_a_neuron(tiny_vit, ranking):
    groupsets, masks = chain(randomise(tiny_vit), ranking, {**PRUNE, "target_sparsity": 0.99})
    for prev, cur in zip(masks, masks[1:]):
        for name in cur:
            assert not (cur[name] & ~prev[name]).any(), "a pruned group came back"
    for gs in groupsets:
        assert masks[-1][gs.name].sum() >= 1


def test_layerwise_keeps_each_layers_share(tiny_vit):
    groupsets, masks = chain(randomise(tiny_vit), "layerwise")
    for k in range(1, PRUNE["states"]):
        d = density_at(k, PRUNE["states"], PRUNE["target_sparsity"])
        for gs in groupsets:
            assert int(masks[k][gs.name].sum()) == max(1, math.floor(d * gs.size + 0.5))


def test_global_keeps_a_share_of_each_pool(tiny_vit):
    groupsets, masks = chain(randomise(tiny_vit), "global")
    for k in range(1, PRUNE["states"]):
        d = density_at(k, PRUNE["states"], PRUNE["target_sparsity"])
        for kind in ("head", "neuron"):
            pool = [gs for gs in groupsets if gs.kind == kind]
            total = sum(gs.size for gs in pool)
            kept = sum(int(masks[k][gs.name].sum()) for gs in pool)
            assert kept == max(len(pool), math.floor(d * total + 0.5))


def test_global_ranks_across_layers_by_each_groups_standing_in_its_layer(tiny_vit):
    """A layer whose neurons are all weaker by one factor keeps what it would keep at full scale (the
    pool compares scores normalised per layer, not raw sums that grow with a layer's scale), while a
    layer with half its neurons far below its own mean loses more of them than the other layer."""
    model = randomise(tiny_vit)
    _, unscaled = chain(model, "global")
    with torch.no_grad():
        model.blocks[0].mlp.fc1.weight.mul_(0.01)
        model.blocks[0].mlp.fc1.bias.mul_(0.01)
        model.blocks[0].mlp.fc2.weight.mul_(0.01)
    groupsets, masks = chain(model, "global")
    assert all(torch.equal(masks[-1][k], unscaled[-1][k]) for k in masks[-1])
    with torch.no_grad():
        model.blocks[1].mlp.fc1.weight[:48].mul_(0.01)
        model.blocks[1].mlp.fc2.weight[:, :48].mul_(0.01)
    groupsets, masks = chain(model, "global")
    kept = {gs.layer: masks[-1][gs.name] for gs in groupsets if gs.kind == "neuron"}
    assert not kept["blocks.1"][:48].any()  # the weak half of block 1 went
    assert int(kept["blocks.1"].sum()) < int(kept["blocks.0"].sum())


def test_mixed_uses_one_parameter_budget(tiny_vit):
    model = randomise(tiny_vit)
    groupsets, masks = chain(model, "mixed")
    costs = {gs.name: group_costs(model, gs) for gs in groupsets}
    total = sum(gs.size * costs[gs.name] for gs in groupsets)
    for k in range(1, PRUNE["states"]):
        d = density_at(k, PRUNE["states"], PRUNE["target_sparsity"])
        kept = sum(int(masks[k][gs.name].sum()) * costs[gs.name] for gs in groupsets)
        assert kept <= d * total
        assert kept >= d * total - max(costs.values()) * len(groupsets)


def test_mixed_pools_heads_and_neurons_by_magnitude_relative_to_their_tensors(tiny_vit):
    """Heads made weak next to the other heads of their tensors go first in the one mixed pool."""
    model = randomise(tiny_vit)
    hd = model.blocks[0].attn.head_dim
    with torch.no_grad():
        for block in model.blocks:
            qkv = block.attn.qkv.weight.view(3, -1, hd, block.attn.qkv.in_features)
            qkv[:, 1:].mul_(0.05)  # heads 1 and 2 of every block
            block.attn.proj.weight[:, hd:].mul_(0.05)
    groupsets, mixed = chain(model, "mixed", {**PRUNE, "states": 2, "target_sparsity": 0.3})
    for gs in groupsets:
        if gs.kind == "head":
            assert mixed[-1][gs.name].tolist() == [True, False, False]
    neurons = [gs for gs in groupsets if gs.kind == "neuron"]
    assert sum(int(mixed[-1][gs.name].sum()) for gs in neurons) > 0.8 * sum(gs.size for gs in neurons)


def test_head_cost_and_importance_cover_qkv_rows_and_proj_columns(tiny_vit):
    gs = groupsets_of(tiny_vit, ["heads"])[0]
    attn = tiny_vit.blocks[0].attn
    dim, hd = attn.qkv.in_features, attn.head_dim
    assert group_costs(tiny_vit, gs) == 3 * hd * dim + 3 * hd + hd * dim
    with torch.no_grad():
        attn.qkv.weight.fill_(1.0)
        attn.qkv.bias.fill_(0.0)
        attn.proj.weight.fill_(2.0)
    expected = 3 * hd * dim * 1.0 + hd * dim * 2.0
    assert torch.allclose(group_importance(tiny_vit, gs), torch.full((attn.num_heads,), expected, dtype=torch.float64))
