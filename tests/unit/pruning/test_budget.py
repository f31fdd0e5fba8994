"""Budgets in cost: the closed-form cost equals the counted one, and every state meets its target."""

import pytest
import torch

from prunebench.errors import ConfigError
from prunebench.export.compact import compact_model
from prunebench.models import build_model, model_spec
from prunebench.models.cost import model_cost
from prunebench.pruning.budget import build_cost_model, choose_masks
from prunebench.pruning.groups import full_masks, groupsets_of
from prunebench.pruning.schedule import density_at
from tests.conftest import TINY_VIT

MODELS = {
    "vit": (TINY_VIT, ["heads", "neurons"]),
    "small_cnn": ({"arch": "small_cnn", "kwargs": {"widths": [16, 32, 64]}}, ["channels"]),
    "resnet20": ({"arch": "resnet20"}, ["channels"]),
}
# round_to 8 cuts the tiny ViT's 96-neuron MLPs into units of 1.6 % of its MACs: a wider one fits 1 %
WIDE_VIT = {**TINY_VIT, "kwargs": {**TINY_VIT["kwargs"], "depth": 4, "mlp_ratio": 8.0}}


def build(key):
    cfg, kinds = MODELS.get(key, (WIDE_VIT, ["heads", "neurons"]))
    torch.manual_seed(0)
    spec = model_spec(cfg, 10)
    model = build_model(spec)
    with torch.no_grad():  # distinct magnitudes per group, so rankings are not ties
        for p in model.parameters():
            p.mul_(torch.rand(p.shape[0], *([1] * (p.dim() - 1))) + 0.1)
    return spec, model, groupsets_of(model, kinds)


def counted(model, spec, masks):
    return model_cost(compact_model(model, spec, masks)[0], spec)


@pytest.mark.parametrize("key", list(MODELS))
def test_closed_form_cost_equals_the_compact_models_counted_cost(key):
    spec, model, groupsets = build(key)
    cost_model = build_cost_model(model, groupsets)
    gen = torch.Generator().manual_seed(1)
    for density in (1.0, 0.7, 0.3, 0.05):
        masks = {gs.name: torch.rand(gs.size, generator=gen) < density for gs in groupsets}
        for m in masks.values():
            m[0] = True
        params, macs = cost_model.cost(cost_model.counts(masks))
        c = counted(model, spec, masks)
        assert (params, macs) == (c["params"], c["macs"])


@pytest.mark.parametrize("key", list(MODELS))
@pytest.mark.parametrize("ranking", ["layerwise", "global", "mixed"])
@pytest.mark.parametrize("budget", ["params", "macs"])
def test_every_state_of_a_chain_meets_its_cost_target_within_one_percent(key, ranking, budget):
    spec, model, groupsets = build(key)
    prune = {"states": 4, "target_sparsity": 0.6, "schedule": "geometric", "importance": "l1"}
    prune.update(ranking=ranking, budget=budget)
    dense = counted(model, spec, full_masks(groupsets))[budget]
    masks = [full_masks(groupsets)]
    for k in range(1, prune["states"]):
        target, keep = choose_masks(model, groupsets, masks[-1], prune, k)
        assert target == pytest.approx(density_at(k, 4, 0.6))
        reached = counted(model, spec, keep)[budget] / dense
        assert target - 0.01 <= reached <= target, f"state {k}: {reached:.4f} for a target of {target:.4f}"
        for name, m in keep.items():
            assert not (m & ~masks[-1][name]).any(), "a pruned group came back"
            assert m.any(), "a layer lost all its groups"
        masks.append(keep)


@pytest.mark.parametrize(
    ("key", "ranking"),
    [("resnet20", "global"), ("resnet20", "layerwise"), ("wide_vit", "mixed"), ("wide_vit", "global")],
)
def test_round_to_widths_meet_the_macs_target(key, ranking):
    spec, model, groupsets = build(key)
    prune = {"states": 4, "target_sparsity": 0.6, "schedule": "geometric", "importance": "l1"}
    prune.update(ranking=ranking, budget="macs", round_to=8)
    dense = counted(model, spec, full_masks(groupsets))["macs"]
    prev = full_masks(groupsets)
    for k in range(1, 4):
        target, prev = choose_masks(model, groupsets, prev, prune, k)
        assert target - 0.01 <= counted(model, spec, prev)["macs"] / dense <= target
        for gs in groupsets:
            step = 8 // gs.slices[0].width if gs.slices[0].width < 8 else 1
            assert int(prev[gs.name].sum()) % step == 0


def test_groups_budget_with_global_ranking_keeps_its_share_of_groups():
    spec, model, groupsets = build("vit")
    prune = {"states": 4, "target_sparsity": 0.6, "schedule": "geometric", "importance": "l1", "budget": "groups"}
    prev, total = full_masks(groupsets), sum(gs.size for gs in groupsets)
    for k in range(1, 4):
        target, prev = choose_masks(model, groupsets, prev, {**prune, "ranking": "global"}, k)
        assert abs(sum(int(m.sum()) for m in prev.values()) / total - target) <= 0.01


def test_cnn_channels_default_to_a_macs_budget(tiny_config):
    from tests.conftest import resolved_experiment

    tiny_config["models"] = {"r20": {"arch": "resnet20"}}
    tiny_config["experiments"]["t"]["models"] = ["r20"]
    tiny_config["defaults"]["prune"]["groups"] = ["channels"]
    assert resolved_experiment(tiny_config)["prune"]["budget"] == "macs"
    tiny_config["defaults"]["prune"]["budget"] = "params"
    assert resolved_experiment(tiny_config)["prune"]["budget"] == "params"


def test_vit_heads_and_neurons_default_to_a_groups_budget(tiny_config):
    from tests.conftest import resolved_experiment

    assert resolved_experiment(tiny_config)["prune"]["budget"] == "groups"


def test_an_unreachable_cost_target_names_the_largest_reachable_sparsity():
    spec, model, groupsets = build("small_cnn")
    prune = {"states": 2, "target_sparsity": 0.999, "schedule": "geometric", "importance": "l1"}
    with pytest.raises(ConfigError, match=r"out of reach.*prune.target_sparsity to at most 0\.9"):
        choose_masks(model, groupsets, full_masks(groupsets), {**prune, "ranking": "global", "budget": "macs"}, 1)


def test_layerwise_cost_budget_shrinks_every_layer_alike():
    spec, model, groupsets = build("resnet20")
    prune = {"states": 2, "target_sparsity": 0.5, "schedule": "geometric", "importance": "l1"}
    _, keep = choose_masks(
        model, groupsets, full_masks(groupsets), {**prune, "ranking": "layerwise", "budget": "macs"}, 1
    )
    fractions = [int(keep[gs.name].sum()) / gs.size for gs in groupsets]
    assert max(fractions) - min(fractions) <= 2 / 16 + 1e-9  # one or two channels of the 16-wide layers


def test_global_cost_budget_keeps_the_same_share_of_heads_and_of_neurons():
    spec, model, groupsets = build("wide_vit")
    prune = {"states": 2, "target_sparsity": 0.5, "schedule": "geometric", "importance": "l1"}
    _, keep = choose_masks(model, groupsets, full_masks(groupsets), {**prune, "ranking": "global", "budget": "macs"}, 1)
    share = {}
    for kind in ("head", "neuron"):
        pool = [gs for gs in groupsets if gs.kind == kind]
        share[kind] = sum(int(keep[gs.name].sum()) for gs in pool) / sum(gs.size for gs in pool)
    assert abs(share["head"] - share["neuron"]) <= 1 / 12 + 1e-9  # within one of the 12 heads


def test_a_cnn_trained_at_another_resolution_is_costed_at_that_resolution():
    """A CNN's MACs are counted at its img_size (an ImageNet ResNet's 224 px), not at CIFAR's 32 px."""
    _, model, groupsets = build("small_cnn")
    spec = model_spec({**MODELS["small_cnn"][0], "img_size": 48}, 10)
    prune = {"states": 4, "target_sparsity": 0.6, "schedule": "geometric", "importance": "l1", "budget": "macs"}
    prune["ranking"] = "layerwise"
    cost_model = build_cost_model(model, groupsets, (3, 48, 48))
    assert cost_model.dense()[1] == counted(model, spec, full_masks(groupsets))["macs"] != model_cost(model, {})["macs"]
    target, keep = choose_masks(model, groupsets, full_masks(groupsets), prune, 3, img_size=48)
    reached = counted(model, spec, keep)["macs"] / cost_model.dense()[1]
    assert target - 0.01 <= reached <= target
