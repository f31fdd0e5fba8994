"""Refill and RSST plans, RSST's lambda schedule and where its penalty goes."""

import math

import pytest
import torch

from prunebench.pruning.groups import full_masks, groupsets_of, param_masks
from prunebench.pruning.penalty import RSSTPenalty, rsst_lambda
from prunebench.pruning.registry import plan_state

PRUNE = {"states": 4, "target_sparsity": 0.5, "schedule": "linear", "ranking": "layerwise", "importance": "l1"}
RSST = {"lambda_schedule": "exp_custom_exponents", "reg_granularity_prune": 1.0, "exponents": 4}


@pytest.mark.parametrize(
    ("schedule", "formula"),
    [
        ("exp_custom_exponents", lambda u: 2.0 * (math.exp(u**4) - 1) / (math.e - 1)),
        ("x", lambda u: 2.0 * u),
        ("x^2", lambda u: 2.0 * u**2),
        ("x^3", lambda u: 2.0 * u**3),
    ],
)
def test_lambda_at_first_middle_last_step_of_the_state(schedule, formula):
    total = 1000  # steps of the WHOLE state, not of an epoch
    for step in (0, 499, 999):
        assert rsst_lambda(step, total, schedule, 2.0, 4) == pytest.approx(formula((step + 1) / total))
    assert rsst_lambda(999, total, schedule, 2.0, 4) == pytest.approx(2.0)  # reaches g at the end
    assert rsst_lambda(0, total, "exp_custom_exponents", 1.0, 4) > 1e-13  # no vanishing gate


def test_refill_trains_with_the_new_mask_rsst_with_the_old(tiny_vit):
    groupsets = groupsets_of(tiny_vit, ["heads", "neurons"])
    prev = full_masks(groupsets)
    refill = plan_state("refill", tiny_vit, groupsets, prev, PRUNE, 1)
    rsst = plan_state("rsst", tiny_vit, groupsets, prev, PRUNE, 1)
    for name in prev:
        assert torch.equal(refill.train_masks[name], refill.final_masks[name])
        assert torch.equal(rsst.final_masks[name], refill.final_masks[name])  # same groups chosen
        assert torch.equal(rsst.train_masks[name], prev[name])  # still alive while training
        assert torch.equal(rsst.penalized[name], prev[name] & ~rsst.final_masks[name])
    assert not refill.has_penalty and rsst.has_penalty
    dense = plan_state("dense", tiny_vit, groupsets, prev, PRUNE, 1)
    assert dense.density == 1.0 and all(m.all() for m in dense.final_masks.values())


def test_penalty_reaches_only_the_groups_to_be_pruned(tiny_vit):
    groupsets = groupsets_of(tiny_vit, ["heads", "neurons"])
    plan = plan_state("rsst", tiny_vit, groupsets, full_masks(groupsets), PRUNE, 3)
    assert plan.penalized["blocks.0.attn.heads"].any()
    not_pen = {k: ~v for k, v in plan.penalized.items()}
    pen = {k: 1 - m for k, m in param_masks(tiny_vit, groupsets, not_pen).items()}
    penalty = RSSTPenalty(tiny_vit, pen, RSST, total_steps=10)
    for p in tiny_vit.parameters():
        p.grad = torch.zeros_like(p)
    lam = penalty.apply(step=9)
    assert lam == pytest.approx(1.0)
    params = dict(tiny_vit.named_parameters())
    touched = 0
    for name, p in params.items():
        if name in pen:
            expected = lam * p.detach() * pen[name]
            assert torch.allclose(p.grad, expected)
            touched += int(pen[name].count_nonzero())
        else:
            assert not p.grad.any(), f"{name} was penalised"
    # exactly the rows/columns of the penalised heads and neurons
    block0_heads = plan.penalized["blocks.0.attn.heads"]
    qkv_rows = pen["blocks.0.attn.qkv.weight"][:, 0].view(3, -1, tiny_vit.blocks[0].attn.head_dim)
    assert torch.equal(qkv_rows[:, :, 0].bool(), block0_heads.expand(3, -1))
    assert touched > 0
