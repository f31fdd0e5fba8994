"""Scale-fair mixed ranking, Taylor importance and the random baseline's scores."""

import pytest
import torch
import torch.nn.functional as F

from prunebench.models import build_model, model_spec
from prunebench.pruning.budget import choose_masks
from prunebench.pruning.groups import full_masks, groupsets_of
from prunebench.pruning.importance import magnitude_scores, taylor_scores

VIT = {
    "arch": "vit_tiny_patch16_224",
    "img_size": 32,
    "patch_size": 8,
    "kwargs": {"embed_dim": 96, "depth": 4, "num_heads": 6, "mlp_ratio": 4.0},
}
HALF = {"states": 2, "target_sparsity": 0.5, "schedule": "geometric", "ranking": "mixed"}


def vit():
    torch.manual_seed(0)
    return build_model(model_spec(VIT, 10))


def kept(groupsets, masks, kind):
    return sum(int(masks[gs.name].sum()) for gs in groupsets if gs.kind == kind)


@pytest.mark.parametrize("budget", ["groups", "params", "macs"])
def test_mixed_ranking_keeps_heads_and_neurons_alike_with_l1_and_l2(budget):
    """The old failure: mixed + l2 divided an L2 norm by the parameter count and kept only one head per block."""
    model = vit()
    groupsets = groupsets_of(model, ["heads", "neurons"])
    heads = {}
    for norm in ("l1", "l2"):
        _, keep = choose_masks(
            model, groupsets, full_masks(groupsets), {**HALF, "importance": norm, "budget": budget}, 1
        )
        heads[norm] = kept(groupsets, keep, "head")
        neurons = kept(groupsets, keep, "neuron")
        assert 0.3 * 24 <= heads[norm] <= 0.7 * 24, f"{norm}: {heads[norm]} of 24 heads"
        assert 0.3 * 1536 <= neurons <= 0.7 * 1536
    assert abs(heads["l1"] - heads["l2"]) <= 3


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_rescaling_a_module_does_not_change_what_mixed_ranking_keeps(norm):
    model = vit()
    groupsets = groupsets_of(model, ["heads", "neurons"])
    prune = {**HALF, "importance": norm, "budget": "macs"}
    _, before = choose_masks(model, groupsets, full_masks(groupsets), prune, 1)
    with torch.no_grad():
        # a tensor's scale says nothing about which of its groups matter: rescale some up, some down
        model.blocks[1].mlp.fc1.weight.mul_(10.0)
        model.blocks[1].mlp.fc2.weight.mul_(0.1)
        model.blocks[2].attn.qkv.weight.mul_(10.0)
        model.blocks[3].attn.proj.weight.mul_(0.1)
    _, after = choose_masks(model, groupsets, full_masks(groupsets), prune, 1)
    for name in before:
        assert torch.equal(before[name], after[name]), name


def test_global_ranking_does_not_follow_a_layers_scale():
    """The old failure: global ranking pooled raw L1 sums, so a block whose weights were 10x larger kept
    every one of its neurons. Scores are now normalised per layer: a block whose groups all weigh 100x
    more keeps exactly what it kept before, not all the kept slots."""
    model = vit()
    groupsets = groupsets_of(model, ["heads", "neurons"])
    prune = {**HALF, "ranking": "global", "importance": "l1", "budget": "groups"}
    _, before = choose_masks(model, groupsets, full_masks(groupsets), prune, 1)
    with torch.no_grad():
        model.blocks[1].mlp.fc1.weight.mul_(100.0)
        model.blocks[1].mlp.fc1.bias.mul_(100.0)
        model.blocks[1].mlp.fc2.weight.mul_(100.0)
    raw = magnitude_scores(model, groupsets, "l1")
    pooled_raw = sorted((float(v), n) for n, s in raw.items() if "neurons" in n for v in s)[-768:]
    assert sum(n == "blocks.1.mlp.neurons" for _, n in pooled_raw) == 384  # raw sums: all of block 1 kept
    _, after = choose_masks(model, groupsets, full_masks(groupsets), prune, 1)
    assert int(after["blocks.1.mlp.neurons"].sum()) < 384
    for name in before:
        assert torch.equal(before[name], after[name]), name


def test_global_channel_ranking_keeps_every_conv_above_its_floor_when_one_is_100x_larger():
    torch.manual_seed(0)
    model = build_model(model_spec({"arch": "small_cnn", "kwargs": {"widths": [16, 32, 64]}}, 10))
    groupsets = groupsets_of(model, ["channels"])
    with torch.no_grad():
        model.conv3.weight.mul_(100.0)
    for budget in ("groups", "macs"):
        prune = {**HALF, "ranking": "global", "importance": "l1", "budget": budget, "groups": ["channels"]}
        _, keep = choose_masks(model, groupsets, full_masks(groupsets), prune, 1)
        kept_per_layer = {gs.name: int(keep[gs.name].sum()) for gs in groupsets}
        assert all(n >= gs.size // 4 for gs, n in zip(groupsets, kept_per_layer.values())), (budget, kept_per_layer)
        assert kept_per_layer["conv3.channels"] < 64, budget


def tiny_cnn_and_batches():
    torch.manual_seed(0)
    model = build_model(model_spec({"arch": "small_cnn", "kwargs": {"widths": [2, 3, 4]}, "img_size": 8}, 5))
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 3, 8, 8, generator=gen), torch.randint(0, 5, (4,), generator=gen)) for _ in range(3)]
    return model, batches


def test_taylor_scores_equal_a_hand_computation():
    model, batches = tiny_cnn_and_batches()
    groupsets = groupsets_of(model, ["channels"])
    scores = taylor_scores(model, groupsets, iter(batches), n_batches=2)  # the third batch is not used
    model.eval()
    expected = torch.zeros(2, dtype=torch.float64)  # conv1's two channels
    for images, labels in batches[:2]:
        model.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        for c in range(2):
            for w, part in (
                (model.conv1.weight, lambda t, c=c: t[c]),
                (model.bn1.weight, lambda t, c=c: t[c]),
                (model.bn1.bias, lambda t, c=c: t[c]),
                (model.conv2.weight, lambda t, c=c: t[:, c]),
            ):
                expected[c] += float((part(w.detach()) * part(w.grad)).abs().sum()) / 2
    assert torch.allclose(scores["conv1.channels"], expected, rtol=1e-5)
    assert all((s > 0).all() for s in scores.values())


def test_taylor_ranking_prunes_under_a_budget_and_needs_batches():
    model, batches = tiny_cnn_and_batches()
    groupsets = groupsets_of(model, ["channels"])
    prune = {**HALF, "ranking": "mixed", "importance": "taylor", "taylor_batches": 2, "budget": "params"}
    _, keep = choose_masks(model, groupsets, full_masks(groupsets), prune, 1, batches=batches)
    assert 0 < sum(int(m.sum()) for m in keep.values()) < 9
    with pytest.raises(ValueError, match="taylor.*batches"):
        choose_masks(model, groupsets, full_masks(groupsets), prune, 1)


def test_random_scores_come_from_the_generator_and_meet_the_same_budget():
    model = vit()
    groupsets = groupsets_of(model, ["heads", "neurons"])
    prune = {**HALF, "ranking": "global", "importance": "l1", "budget": "macs"}
    full = full_masks(groupsets)
    _, a = choose_masks(model, groupsets, full, prune, 1, rng=torch.Generator().manual_seed(3))
    _, b = choose_masks(model, groupsets, full, prune, 1, rng=torch.Generator().manual_seed(3))
    _, c = choose_masks(model, groupsets, full, prune, 1, rng=torch.Generator().manual_seed(4))
    _, magnitude = choose_masks(model, groupsets, full, prune, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert any(not torch.equal(a[k], magnitude[k]) for k in a)
    from prunebench.pruning.budget import build_cost_model

    cost_model = build_cost_model(model, groupsets)
    for masks in (a, c):
        macs = cost_model.cost(cost_model.counts(masks))[1] / cost_model.dense()[1]
        assert 0.49 <= macs <= 0.5
