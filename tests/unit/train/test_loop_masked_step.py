"""The fused mask/penalty path trains exactly what a plain per-parameter loop would."""

import copy

import torch
import torch.nn.functional as F

from prunebench.data import DeviceData, load_dataset
from prunebench.pruning.groups import MaskedParams, groupsets_of, param_masks
from prunebench.pruning.penalty import RSSTPenalty, rsst_lambda
from prunebench.train.loop import lr_at, make_optimizer, train_one_epoch

TRAIN = {
    "optimizer": "sgd", "lr": 0.05, "min_lr": 0.0, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
    "lr_schedule": "cosine", "label_smoothing": 0.0, "grad_clip": None, "amp": True, "batch_size": 16,
}  # fmt: skip
RSST = {"lambda_schedule": "x", "reg_granularity_prune": 5.0, "exponents": 4}
STEPS = 4


def masks_for(model):
    gs = groupsets_of(model, ["heads", "neurons"])
    keep = {s.name: torch.arange(s.size) % 3 != 0 for s in gs}
    penalized = {s.name: torch.arange(s.size) % 3 == 1 for s in gs}
    hard = param_masks(model, gs, keep)
    pen = {k: 1 - m for k, m in param_masks(model, gs, {k: ~v for k, v in penalized.items()}).items()}
    return hard, pen


def plain_loop(model, data, hard, pen):
    """The step written out naively, one parameter at a time, with the textbook SGD."""
    params = dict(model.named_parameters())
    opt = torch.optim.SGD(model.parameters(), lr=TRAIN["lr"], momentum=0.9, weight_decay=1e-4, foreach=False)
    with torch.no_grad():
        for n, m in hard.items():
            params[n].mul_(m)
    model.train()
    losses = []
    for step, (x, y) in enumerate(data.train_batches(16, torch.Generator().manual_seed(7))):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, STEPS, 0, TRAIN)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        lam = rsst_lambda(step, STEPS, "x", 5.0, 4)
        with torch.no_grad():
            for n, m in hard.items():
                params[n].grad.mul_(m)
            for n, m in pen.items():
                params[n].grad.add_(lam * params[n] * m)
        opt.step()
        with torch.no_grad():
            for n, m in hard.items():
                params[n].mul_(m)
        losses.append(float(loss.detach()))
    return sum(losses) / len(losses)


def test_refill_masks_and_rsst_penalty_give_the_plain_loops_weights(tiny_vit):
    data = DeviceData(load_dataset("synthetic", train_limit=16 * STEPS), "cpu")
    reference = copy.deepcopy(tiny_vit)
    hard, pen = masks_for(tiny_vit)
    masked = MaskedParams(tiny_vit, hard)
    masked.mask_weights()
    stats = train_one_epoch(
        tiny_vit, data, make_optimizer(tiny_vit, TRAIN), TRAIN, step0=0, total_steps=STEPS, warmup_steps=0,
        generator=torch.Generator().manual_seed(7), hard=masked, gradient_hook=RSSTPenalty(tiny_vit, pen, RSST, STEPS),
    )  # fmt: skip
    ref_loss = plain_loop(reference, data, *masks_for(reference))
    assert abs(stats["train_loss"] - ref_loss) < 1e-5 and stats["logged"]["reg_lambda"] == 5.0
    got, want = dict(tiny_vit.named_parameters()), dict(reference.named_parameters())
    for name in got:
        assert torch.allclose(got[name], want[name], atol=1e-6, rtol=1e-5), name
    for name, m in hard.items():  # pruned weights are still exactly zero (masks broadcast to their weights)
        assert not got[name][(m == 0).expand_as(got[name])].any()
    # The penalty really acted: penalised weights shrank relative to the unpenalised ones.
    assert any(
        got[n][(m == 1).expand_as(got[n])].abs().mean()
        < 0.99 * got[n][((m == 0) & (hard[n] == 1)).expand_as(got[n])].abs().mean()
        for n, m in pen.items()
    )
