"""The baselines: random groups on Refill's schedule, and one-shot pruning to the final budget."""

import pytest
import torch

from prunebench.pruning.groups import full_masks, groupsets_of
from prunebench.pruning.refill import OneShot, RandomPruning, Refill
from prunebench.pruning.registry import plan_state
from prunebench.results.checkpoint import load_checkpoint
from tests.conftest import resolved_experiment
from tests.unit.train.chains import run_chain

PRUNE = {"states": 3, "target_sparsity": 0.5, "schedule": "geometric", "ranking": "global", "importance": "l1"}


def test_random_keeps_refills_budget_with_other_groups_seeded_by_experiment_and_state(tiny_vit):
    groupsets = groupsets_of(tiny_vit, ["heads", "neurons"])
    full = full_masks(groupsets)
    refill = plan_state("refill", tiny_vit, groupsets, full, PRUNE, 1)
    rand = [plan_state("random", tiny_vit, groupsets, full, PRUNE, 1, seed=s) for s in (0, 0, 1)]
    count = lambda plan: sum(int(m.sum()) for m in plan.final_masks.values())  # noqa: E731
    assert count(refill) == count(rand[0]) and rand[0].density == refill.density
    assert all(torch.equal(rand[0].final_masks[k], rand[1].final_masks[k]) for k in full)  # a rerun: same groups
    assert any(not torch.equal(rand[0].final_masks[k], rand[2].final_masks[k]) for k in full)  # another seed
    assert any(not torch.equal(rand[0].final_masks[k], refill.final_masks[k]) for k in full)


def test_oneshot_prunes_to_the_final_budget_before_state_1_then_keeps_it(tiny_config, tmp_path):
    exp, summaries = run_chain(tiny_config, tmp_path, "oneshot", states=3)
    assert [s["budget"]["target"] for s in summaries] == [1.0, pytest.approx(0.5), pytest.approx(0.5)]
    assert summaries[1]["kept"] == summaries[2]["kept"] and summaries[1]["density"] < 1.0
    m1 = load_checkpoint(tmp_path / "state1/last.pt")["masks"]
    m2 = load_checkpoint(tmp_path / "state2/last.pt")["masks"]
    assert all(torch.equal(m1[k], m2[k]) for k in m1)
    # state 1's masks are those Refill would choose for the last state, on state 0's trained weights
    model = _state0_model(tmp_path)
    groupsets = groupsets_of(model, ["heads", "neurons"])
    last = plan_state("refill", model, groupsets, full_masks(groupsets), exp["prune"], 2)
    assert all(torch.equal(m1[k], last.final_masks[k]) for k in m1)


def test_random_chain_trains_and_writes_its_fields(tiny_config, tmp_path):
    _, (s0, s1) = run_chain(tiny_config, tmp_path, "random")
    assert s0["density"] == 1.0 and s1["density"] == pytest.approx(0.5)
    assert s1["budget"] == {"kind": "groups", "target": pytest.approx(0.5)} and s1["event_epochs"] == []


def test_only_importance_rankings_ask_for_taylor_batches(tiny_config):
    tiny_config["defaults"]["prune"]["states"] = 3
    exp = resolved_experiment(tiny_config)
    exp["prune"]["importance"] = "taylor"
    gs = []
    assert Refill(exp, 1, gs).needs_batches and Refill(exp, 2, gs).needs_batches
    assert not Refill(exp, 0, gs).needs_batches and not RandomPruning(exp, 1, gs).needs_batches
    assert OneShot(exp, 1, gs).needs_batches and not OneShot(exp, 2, gs).needs_batches


def _state0_model(root):
    from prunebench.models import build_model

    ckpt = load_checkpoint(root / "state0/last.pt")
    model = build_model(ckpt["model_spec"])
    model.load_state_dict(ckpt["state_dict"])
    return model
