"""A Refill or RSST step launches (almost) no more kernels outside the compiled model than a dense one:
the masks and the penalty take CUDA's multi-tensor fast path, one launch per call, not one per parameter."""

import copy

import torch

from prunebench.accel.launches import LaunchCounter
from prunebench.data import DeviceData, load_dataset
from prunebench.pruning.groups import MaskedParams, groupsets_of, param_masks
from prunebench.pruning.penalty import RSSTPenalty
from prunebench.train.loop import make_optimizer, train_one_epoch

TRAIN = {
    "optimizer": "sgd", "lr": 0.05, "min_lr": 0.0, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
    "lr_schedule": "cosine", "label_smoothing": 0.0, "grad_clip": None, "amp": True, "batch_size": 4,
}  # fmt: skip
RSST = {"lambda_schedule": "x", "reg_granularity_prune": 1.0, "exponents": 4}
STEPS = 2


def epoch(model, data, optimizer, hard, penalty, counter=None) -> None:
    train_one_epoch(
        model, data, optimizer, TRAIN, step0=0, total_steps=100, warmup_steps=0,
        generator=torch.Generator().manual_seed(0), hard=hard, gradient_hook=penalty,
        compiled_region=None if counter is None else counter.paused,
    )  # fmt: skip


def launches_per_step(model, data, hard=None, penalty=None) -> tuple[float, dict[str, int]]:
    """Launches per step outside model(x) / loss.backward() in an epoch of STEPS steps, after a warm-up
    epoch (the optimizer's state and the masks' weight-sized copies are made once)."""
    optimizer = make_optimizer(model, TRAIN, fused=True)  # the optimizer CUDA training uses
    epoch(model, data, optimizer, hard, penalty)
    with LaunchCounter() as counter:
        epoch(model, data, optimizer, hard, penalty, counter)
    return counter.total / STEPS, counter.by_op()


def test_refill_and_rsst_steps_launch_within_10_kernels_of_a_dense_step(tiny_vit):
    data = DeviceData(load_dataset("synthetic", train_limit=TRAIN["batch_size"] * STEPS), "cpu")
    groupsets = groupsets_of(tiny_vit, ["heads", "neurons"])
    keep = {gs.name: torch.arange(gs.size) % 3 != 0 for gs in groupsets}
    penalized = {gs.name: torch.arange(gs.size) % 3 == 1 for gs in groupsets}
    dense, refill, rsst = (copy.deepcopy(tiny_vit) for _ in range(3))
    hard = {m: MaskedParams(m, param_masks(m, groupsets, keep)) for m in (refill, rsst)}
    assert len(hard[refill].params) == 12  # 2 blocks: per parameter, the masks alone would be 24 launches
    dense_n, _ = launches_per_step(dense, data)
    refill_n, refill_ops = launches_per_step(refill, data, hard[refill])
    penalty = RSSTPenalty.for_groups(rsst, groupsets, penalized, RSST, total_steps=100)
    rsst_n, rsst_ops = launches_per_step(rsst, data, hard[rsst], penalty)
    assert refill_ops["aten._foreach_mul_.List [fast]"] == 2 * STEPS  # gradients and weights, one launch each
    assert rsst_ops["aten._foreach_addcmul_.Scalar [fast]"] == STEPS
    assert refill_ops["aten._fused_sgd_.default [fused]"] == STEPS  # make_optimizer(fused=True) on the CPU too
    assert not any("[slow]" in op for op in {**refill_ops, **rsst_ops})
    assert dense_n <= refill_n <= dense_n + 10 and refill_n <= rsst_n <= dense_n + 10, (dense_n, refill_n, rsst_n)
