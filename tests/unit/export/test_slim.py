"""Slim training (prunebench.export.slim) against masked training, step for step, in fp32 on the CPU.

The masked side is a minimal copy of ``train/loop.py``'s step (forward, cross-entropy with label
smoothing, ``zero_grad(set_to_none)``, backward, masks on the gradients, RSST's penalty, gradient
clipping, the optimizer step, masks on the weights), with the optimizer ``make_optimizer`` builds on
the CPU (foreach SGD with momentum, Nesterov and weight decay; foreach AdamW). The slim side runs the
same step on the slim model, without masks. What the tests prove, on a tiny timm ViT (heads and
neurons, with stochastic depth and dropout outside the pruned dims), a tiny CIFAR ResNet and the
small CNN (a conv cut along both dims):

- the slim model computes what the masked one does, and slim -> dense is exact (bit for bit);
- the per-step losses agree to 1e-5 relative; the expanded weights, BN statistics and optimizer state
  agree with the masked run's (pruned entries bit for bit, alive ones to float rounding);
- the optimizer state maps dense -> slim -> dense exactly, so a run can switch at any step (a mid-state
  resume from a masked resume.pt, or a slim one expanded and rebuilt, which continues bit for bit);
- RSST (penalty on groups kept alive in the slim model, then the hard mask: expand, mask, re-slim)
  and a REPrune event (nested masks mid-state: expand, re-slim) stay exact across the mask change;
- DDP over 2 gloo processes trains slim as it trains masked.

What the integration into the state runner must keep for these to hold:

1. Slim at a state's start only after the plan's train masks were applied to the weights
   (``_bind_masks``) and, for ``rewind: init``, after the rewind; build the optimizer over the slim
   model's parameters the way ``make_optimizer`` does (same order: names index it alike).
2. Build the slim model with :func:`slim_model` (it draws no random number) and keep the global RNG,
   the data generator and the lr schedule exactly as the masked run advances them.
3. Run slim only where :func:`inexact_reasons` is empty; otherwise train masked as today.
4. Before anything reads the dense model (a checkpoint, ``resume.pt``, an evaluation under
   ``masked_view``, a REPrune event, RSST's norm of the penalised groups), ``expand_model`` into it;
   at a mask change, expand the model and the optimizer state, apply the new masks to the dense
   weights (as ``set_plan`` does), then re-slim both (the optimizer state from the expanded one).
5. RSST's penalty on the slim model is ``RSSTPenalty.for_groups(slim, slim_groupsets(...),
   slimming.slim_masks(plan.penalized), ...)``; the hard masks are the slimming itself.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunebench.export.slim import (
    expand_model,
    expand_optimizer_state,
    inexact_reasons,
    optimizer_param_names,
    slim_groupsets,
    slim_model,
    slim_optimizer_state,
)
from prunebench.models import build_model, model_spec
from prunebench.models.cnn import CifarResNet
from prunebench.pruning.groups import MaskedParams, groupsets_of, kept_counts, param_masks, random_masks
from prunebench.pruning.penalty import RSSTPenalty

VIT = {
    "arch": "vit_tiny_patch16_224",
    "img_size": 16,
    "patch_size": 4,
    # stochastic depth and dropout on the residual stream draw as many random numbers slim as masked
    "kwargs": {"embed_dim": 32, "depth": 2, "num_heads": 4, "drop_path_rate": 0.1, "drop_rate": 0.1},
}
MODELS = ("vit", "resnet", "small_cnn")
RSST = {"lambda_schedule": "x", "reg_granularity_prune": 1.0, "exponents": 4}
LOSS_RTOL = 1e-5


def make(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "vit":
        return build_model(model_spec(VIT, 10))
    if kind == "resnet":
        return CifarResNet(8, num_classes=10, widths=(8, 12, 16))
    return build_model(model_spec({"arch": "small_cnn", "kwargs": {"widths": [8, 12, 16]}}, 10))


def batches(n: int, size: int = 16, batch: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, 3, size, size, generator=g), torch.randint(0, 10, (batch,), generator=g)) for _ in range(n)
    ]


def optimizer(model: nn.Module, kind: str) -> torch.optim.Optimizer:
    """As make_optimizer builds it on the CPU."""
    params = [p for p in model.parameters() if p.requires_grad]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, foreach=True)
    return torch.optim.AdamW(params, lr=2e-3, weight_decay=0.05, foreach=True)


def step(model, opt, x, y, *, hard=None, penalty=None, at=0, clip=0.0) -> float:
    """One step of train/loop.py's train_one_epoch (lr set per step as its schedule does)."""
    for group in opt.param_groups:
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * (1.0 - 0.05 * at)
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=0.1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if hard:
        hard.mask_grads()
    if penalty is not None:
        penalty.apply(at)
    if clip:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    if hard:
        hard.mask_weights()
    return loss.item()


def masked_model(kind: str, keep: float = 0.5, seed: int = 3):
    """A model with ~``keep`` of every layer's groups alive, its pruned weights zeroed as _bind_masks does."""
    model = make(kind)
    groupsets = groupsets_of(model)
    masks = random_masks(groupsets, keep, torch.Generator().manual_seed(seed))
    hard = MaskedParams(model, param_masks(model, groupsets, masks))
    hard.mask_weights()
    return model, groupsets, masks, hard


def nested(masks, keep: float, seed: int):
    """Masks inside ``masks`` (an event, RSST's final masks): each alive group survives with ``keep``, one at least."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in masks.items():
        alive = m.nonzero().flatten()
        new = m & (torch.rand(len(m), generator=g) < keep)
        new[alive[torch.randint(len(alive), (1,), generator=g)]] = True
        out[name] = new
    return out


def assert_losses_match(masked: list[float], slim: list[float]) -> float:
    rel = max(abs(a - b) / abs(a) for a, b in zip(masked, slim))
    assert rel <= LOSS_RTOL, (masked, slim)
    return rel


def pruned_part(t: torch.Tensor, cuts) -> list[torch.Tensor]:
    out = []
    for dim, idx in cuts:
        pruned = torch.ones(t.shape[dim], dtype=torch.bool)
        pruned[idx] = False
        out.append(t.index_select(dim, pruned.nonzero().flatten()))
    return out


def assert_dense_match(expanded: nn.Module, reference: nn.Module, slimming, *, later=None, rtol=1e-4, atol=1e-6):
    """Every tensor close; the entries ``slimming`` prunes (weights, BN statistics) bit for bit, and the
    weights of the groups ``later`` (a slimming of masks that changed since) prunes too."""
    ref = reference.state_dict()
    params = dict(expanded.named_parameters())
    for key, full in expanded.state_dict().items():
        t, ref_t = full, ref[key]
        if key.endswith("attn.qkv.bias"):
            # The key bias has no gradient (softmax ignores a constant per query) but float noise, which
            # Adam normalises into steps of up to lr * 1e-2: both runs move it by noise, differently.
            q, k, v = t.chunk(3)
            rq, rk, rv = ref[key].chunk(3)
            torch.testing.assert_close(k, rk, rtol=0, atol=1e-4, msg=key)
            t, ref_t = torch.cat([q, v]), torch.cat([rq, rv])
        torch.testing.assert_close(t, ref_t, rtol=rtol, atol=atol, msg=key)
        exact = [slimming] + ([later] if later is not None and key in params else [])
        for sl in exact:
            for a, b in zip(pruned_part(full, sl.cuts.get(key, [])), pruned_part(ref[key], sl.cuts.get(key, []))):
                assert torch.equal(a, b), key


# --- the slim model itself ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", MODELS)
def test_slim_model_computes_the_masked_model_and_maps_back_exactly(kind):
    model, groupsets, masks, _ = masked_model(kind)
    model.eval()
    rng_before = torch.get_rng_state()
    slim, slimming = slim_model(model, masks)
    assert torch.equal(torch.get_rng_state(), rng_before)  # building it drew no random number
    assert not slim.training and kept_counts(groupsets_of(slim), {
        gs.name: torch.ones(gs.size, dtype=torch.bool) for gs in groupsets_of(slim)
    }) == kept_counts(groupsets, masks)  # fmt: skip
    assert [n for n, _ in slim.named_parameters()] == [n for n, _ in model.named_parameters()]
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(slim(x), model(x), rtol=1e-5, atol=1e-6)
    # slim -> dense into a model with other weights: every tensor comes back bit for bit
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.normal_()
    expand_model(other, slim, slimming)
    ref = model.state_dict()
    assert all(torch.equal(t, ref[k]) for k, t in other.state_dict().items())


def test_slim_model_equals_the_exported_compact_model():
    """The slicing core is the one export/compact.py cuts a checkpoint with."""
    from prunebench.export.compact import compact_model

    model, _, masks, _ = masked_model("vit")
    slim, _ = slim_model(model, masks)
    compact, _ = compact_model(model, model_spec(VIT, 10), masks)
    ref = compact.state_dict()
    assert all(torch.equal(t, ref[k]) for k, t in slim.state_dict().items())


def test_masks_map_between_dense_and_slim_indices():
    model, groupsets, masks, _ = masked_model("vit")
    _, slimming = slim_model(model, masks)
    inner = nested(masks, 0.5, 7)
    small = slimming.slim_masks(inner)
    assert {k: len(v) for k, v in small.items()} == {k: int(m.sum()) for k, m in masks.items()}
    assert all(torch.equal(slimming.dense_masks(small)[k], inner[k]) for k in inner)


def test_dropout_on_a_pruned_dimension_is_reported_inexact():
    spec = {**VIT, "kwargs": {**VIT["kwargs"], "attn_drop_rate": 0.1, "proj_drop_rate": 0.1}}
    model = build_model(model_spec(spec, 10))
    masks = random_masks(groupsets_of(model), 0.5, torch.Generator().manual_seed(0))
    _, slimming = slim_model(model, masks)
    reasons = inexact_reasons(model, slimming)
    assert any("attention dropout" in r for r in reasons) and any("MLP hidden dropout" in r for r in reasons)
    plain, _, masks, _ = masked_model("vit")
    assert inexact_reasons(plain, slim_model(plain, masks)[1]) == []


# --- training: masked against slim ----------------------------------------------------------------------


@pytest.mark.parametrize("opt_kind", ["sgd", "adamw"])
@pytest.mark.parametrize("kind", MODELS)
def test_slim_training_matches_masked_training(kind, opt_kind):
    data = batches(6)
    model, _, masks, hard = masked_model(kind)
    start = copy.deepcopy(model)
    torch.manual_seed(11)
    opt = optimizer(model, opt_kind)
    masked = [step(model, opt, x, y, hard=hard, at=i, clip=1.0 if opt_kind == "sgd" else 0.0)
              for i, (x, y) in enumerate(data)]  # fmt: skip

    torch.manual_seed(11)  # the same random stream (stochastic depth): building the slim model draws nothing
    slim, slimming = slim_model(start, masks)
    sopt = optimizer(slim, opt_kind)
    slim_losses = [
        step(slim, sopt, x, y, at=i, clip=1.0 if opt_kind == "sgd" else 0.0) for i, (x, y) in enumerate(data)
    ]
    assert_losses_match(masked, slim_losses)

    expand_model(start, slim, slimming)
    assert_dense_match(start, model, slimming)
    # the optimizer state, expanded: zero in the pruned entries as masked training keeps it, the rest close
    names = optimizer_param_names(sopt, slim)
    dense_state = expand_optimizer_state(sopt.state_dict(), names, slimming)
    ref = opt.state_dict()["state"]
    for idx, per_param in dense_state["state"].items():
        for key, value in per_param.items():
            torch.testing.assert_close(value, ref[idx][key], rtol=1e-4, atol=1e-6, msg=f"{names[idx]} {key}")


def test_bn_statistics_of_pruned_channels_follow_a_cumulative_average_too():
    """BatchNorm with momentum=None averages over all batches: the replay follows num_batches_tracked."""
    data = batches(4)
    model, _, masks, hard = masked_model("resnet")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    start = copy.deepcopy(model)
    opt = optimizer(model, "sgd")
    masked = [step(model, opt, x, y, hard=hard, at=i) for i, (x, y) in enumerate(data)]
    slim, slimming = slim_model(start, masks)
    sopt = optimizer(slim, "sgd")
    assert_losses_match(masked, [step(slim, sopt, x, y, at=i) for i, (x, y) in enumerate(data)])
    assert_dense_match(expand_model(start, slim, slimming), model, slimming)


def test_full_masks_narrow_nothing():
    model = make("resnet")
    masks = {gs.name: torch.ones(gs.size, dtype=torch.bool) for gs in groupsets_of(model)}
    assert not slim_model(model, masks)[1].narrows  # state 0: train the dense model as it is
    pruned, _, masks, _ = masked_model("resnet")
    assert slim_model(pruned, masks)[1].narrows


@pytest.mark.parametrize("opt_kind", ["sgd", "adamw"])
def test_optimizer_state_round_trip_and_resume_either_way(opt_kind):
    data = batches(6)
    model, _, masks, hard = masked_model("small_cnn")
    opt = optimizer(model, opt_kind)
    for i, (x, y) in enumerate(data[:3]):
        step(model, opt, x, y, hard=hard, at=i)
    at_switch, state = copy.deepcopy(model), copy.deepcopy(opt.state_dict())
    masked = [step(model, opt, x, y, hard=hard, at=3 + i) for i, (x, y) in enumerate(data[3:])]

    # a masked run's resume.pt continued slim
    slim, slimming = slim_model(at_switch, masks)
    sopt = optimizer(slim, opt_kind)
    names = optimizer_param_names(sopt, slim)
    small = slim_optimizer_state(state, names, slimming)
    back = expand_optimizer_state(small, names, slimming)  # dense -> slim -> dense: bit for bit
    for idx, per_param in state["state"].items():
        assert all(torch.equal(back["state"][idx][k], v) for k, v in per_param.items())
    sopt.load_state_dict(small)
    first = step(slim, sopt, *data[3], at=3)
    # a slim run's resume.pt (dense-shaped weights and optimizer state) rebuilt: it continues bit for bit
    dense = expand_model(copy.deepcopy(at_switch), slim, slimming)
    saved = expand_optimizer_state(sopt.state_dict(), names, slimming)
    rest = [step(slim, sopt, x, y, at=4 + i) for i, (x, y) in enumerate(data[4:])]
    again, slimming2 = slim_model(dense, masks)
    aopt = optimizer(again, opt_kind)
    aopt.load_state_dict(slim_optimizer_state(saved, names, slimming2))
    assert [step(again, aopt, x, y, at=4 + i) for i, (x, y) in enumerate(data[4:])] == rest
    assert_losses_match(masked, [first, *rest])


@pytest.mark.parametrize(("kind", "method"), [("vit", "rsst"), ("small_cnn", "rsst"), ("resnet", "reprune")])
def test_a_mask_change_mid_state_stays_exact(kind, method):
    """RSST: penalty on groups alive until the hard mask, then the mask; REPrune: an event (nested masks).
    Masked: new masks bound to the same model and optimizer. Slim: expand, mask, re-slim."""
    data = batches(7)
    model, groupsets, prev, hard = masked_model(kind, keep=0.75)
    final = nested(prev, 0.6, 5)
    start = copy.deepcopy(model)
    penalized = {k: prev[k] & ~final[k] for k in prev} if method == "rsst" else None
    before = 4

    torch.manual_seed(11)
    opt = optimizer(model, "sgd")
    pen = RSSTPenalty.for_groups(model, groupsets, penalized, RSST, before) if penalized else None
    masked = [step(model, opt, x, y, hard=hard, penalty=pen, at=i) for i, (x, y) in enumerate(data[:before])]
    at_change = copy.deepcopy(model)
    hard = MaskedParams(model, param_masks(model, groupsets, final))
    hard.mask_weights()  # set_plan -> _bind_masks
    masked += [step(model, opt, x, y, hard=hard, at=before + i) for i, (x, y) in enumerate(data[before:])]

    torch.manual_seed(11)  # the same random stream (stochastic depth)
    slim, slimming = slim_model(start, prev)
    first = slimming
    sopt = optimizer(slim, "sgd")
    names = optimizer_param_names(sopt, slim)
    spen = None
    if penalized:
        spen = RSSTPenalty.for_groups(
            slim, slim_groupsets(slim, slimming), slimming.slim_masks(penalized), RSST, before
        )
    losses = [step(slim, sopt, x, y, penalty=spen, at=i) for i, (x, y) in enumerate(data[:before])]
    # the change: what the event or the mask reads is the dense model, as masked training has it
    dense = expand_model(start, slim, slimming)
    assert_dense_match(dense, at_change, slimming)
    dense_state = expand_optimizer_state(sopt.state_dict(), names, slimming)
    MaskedParams(dense, param_masks(dense, groupsets, final)).mask_weights()
    slim, slimming = slim_model(dense, final)
    sopt = optimizer(slim, "sgd")
    sopt.load_state_dict(slim_optimizer_state(dense_state, names, slimming))
    losses += [step(slim, sopt, x, y, at=before + i) for i, (x, y) in enumerate(data[before:])]
    assert_losses_match(masked, losses)
    # bit for bit: everything pruned since the start, and the weights pruned at the change (zero); the
    # BN statistics of channels pruned at the change decay from values that were alive: close
    assert_dense_match(expand_model(dense, slim, slimming), model, first, later=slimming)


# --- DDP: 2 gloo processes ---------------------------------------------------------------------------------


def _ddp_worker(rank, init_file, results):
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        data = batches(4, seed=10 + rank)  # each rank its shard
        model, _, masks, hard = masked_model("resnet")
        start = copy.deepcopy(model)
        net = DDP(model)
        opt = optimizer(model, "sgd")
        masked = [step(net, opt, x, y, hard=hard, at=i) for i, (x, y) in enumerate(data)]
        slim, slimming = slim_model(start, masks)
        snet = DDP(slim)
        sopt = optimizer(slim, "sgd")
        slim_losses = [step(snet, sopt, x, y, at=i) for i, (x, y) in enumerate(data)]
        expand_model(start, slim, slimming)
        ref = model.state_dict()
        diff = max(float((t.float() - ref[k].float()).abs().max()) for k, t in start.state_dict().items())
        results[rank] = (masked, slim_losses, diff)
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_over_two_gloo_processes_trains_slim_as_masked(tmp_path):
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), results), nprocs=2)
        results = dict(results)
    for masked, slim_losses, diff in results.values():
        assert_losses_match(masked, slim_losses)
        assert diff < 1e-5
    assert results[0][0] != results[1][0]  # the ranks trained on different shards
