"""Masks made in broadcast form train bit for bit what the old weight-sized masks trained (applied as
broadcast factors, or written out to their weights' shape once they train).

The reference below is the implementation prunebench used before masks were broadcast: one
full-size float mask per parameter, multiplied in with ``torch._foreach_mul_``, and RSST's penalty
as ``grad += lambda * w * full_mask``.
"""

import copy
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from prunebench.models import build_model, model_spec
from prunebench.pruning.groups import MaskedParams, alive_params, groupsets_of, param_masks
from prunebench.pruning.penalty import RSSTPenalty
from prunebench.train.loop import make_optimizer

RSST = {"lambda_schedule": "x", "reg_granularity_prune": 2.0, "exponents": 4}
SGD = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-3}
STEPS = 3


# --- the reference: weight-sized masks, as before -------------------------------------------------
def full_param_masks(model, groupsets, masks):
    params = dict(model.named_parameters())
    out = {}
    for gs in groupsets:
        gmask = masks[gs.name]
        if bool(gmask.all()):
            continue
        for sl in gs.slices:
            p = params[sl.param]
            em = gmask.repeat_interleave(sl.width).repeat(sl.tile).to(p.dtype)
            shape = [1] * p.dim()
            shape[sl.dim] = -1
            out[sl.param] = out.get(sl.param, torch.ones_like(p)) * em.view(shape)
    return out


class FullMasked:
    def __init__(self, model, pmasks):
        params = dict(model.named_parameters())
        self.params = [params[n] for n in sorted(pmasks)]
        self.masks = [pmasks[n] for n in sorted(pmasks)]

    @torch.no_grad()
    def mask_weights(self):
        torch._foreach_mul_(self.params, self.masks)

    @torch.no_grad()
    def mask_grads(self):
        torch._foreach_mul_([p.grad for p in self.params], self.masks)


class FullPenalty(FullMasked):
    @torch.no_grad()
    def apply(self, lam):
        torch._foreach_addcmul_([p.grad for p in self.params], self.params, self.masks, value=lam)


def full_alive(model, pmasks):
    return sum(int(pmasks[n].count_nonzero()) if n in pmasks else p.numel() for n, p in model.named_parameters())


# --- the models and masks -------------------------------------------------------------------------
VIT = {"arch": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 8, "kwargs": {"embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_ratio": 2.0}}  # fmt: skip
CNN = {"arch": "small_cnn", "kwargs": {"widths": [6, 8, 10]}}
CASES = {
    "vit_qkv_bias": (VIT, {}, ["heads", "neurons"]),
    "vit_no_qkv_bias": (VIT, {"qkv_bias": False}, ["heads", "neurons"]),
    "cnn": (CNN, {}, ["channels"]),
}


def build(case):
    cfg, extra, kinds = CASES[case]
    cfg = copy.deepcopy(cfg)
    cfg.setdefault("kwargs", {}).update(extra)
    torch.manual_seed(0)
    model = build_model(model_spec(cfg, 10))
    groupsets = groupsets_of(model, kinds)
    # a pattern per layer; a ViT's last layer keeps everything (its parameters get no mask at all)
    keep = {gs.name: torch.arange(gs.size) % (i + 2) != 1 for i, gs in enumerate(groupsets)}
    if case != "cnn":
        keep[groupsets[-1].name] = torch.ones(groupsets[-1].size, dtype=torch.bool)
    penalized = {gs.name: (torch.arange(gs.size) % 3 == 0) & keep[gs.name] for gs in groupsets}
    return model, groupsets, keep, penalized


def batches(model, n=STEPS):
    size = 16
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, size, size, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(n)]


def sgd_step(model, opt, hard, apply_penalty, x, y):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    hard.mask_grads()
    apply_penalty()
    opt.step()
    hard.mask_weights()


@pytest.mark.parametrize("case", sorted(CASES))
def test_broadcast_masks_train_exactly_what_full_masks_trained(case):
    model, groupsets, keep, penalized = build(case)
    reference = copy.deepcopy(model)
    params, ref_params = dict(model.named_parameters()), dict(reference.named_parameters())

    pm = param_masks(model, groupsets, keep)
    assert pm and set(pm) == set(full_param_masks(reference, groupsets, keep))
    for name, m in pm.items():  # vectors (or an (out, in, 1, 1) factor), never the weight's size
        p = params[name]
        assert torch.broadcast_shapes(m.shape, p.shape) == p.shape and m.dim() == p.dim()
        if p.dim() > 1:
            assert m.numel() * min(p.shape[1:].numel(), 9) <= p.numel(), (name, tuple(m.shape))
        assert torch.equal(m.expand_as(p), full_param_masks(reference, groupsets, keep)[name]), name
    if case == "cnn":  # conv2 consumes conv1's channels and owns its own: both factors
        assert pm["conv2.weight"].shape == (8, 6, 1, 1) and pm["fc.weight"].shape == (1, 10)
        assert {"bn1.weight", "bn1.bias", "bn2.weight", "bn2.bias"} <= set(pm)
    else:
        assert ("blocks.0.attn.qkv.bias" in pm) == (case == "vit_qkv_bias")
        assert "blocks.1.mlp.fc1.weight" not in pm
        assert pm["blocks.0.attn.qkv.weight"].shape == (3 * 32, 1)
    assert alive_params(model, pm) == full_alive(reference, full_param_masks(reference, groupsets, keep))

    hard = MaskedParams(model, pm)
    penalty = RSSTPenalty.for_groups(model, groupsets, penalized, RSST, total_steps=STEPS)
    # masks applied every step are written out to their parameters' shape and strides (CUDA's foreach fast path)
    assert all(
        m.shape == params[n].shape and m.stride() == params[n].stride() for n, m in zip(penalty.names, penalty.masks)
    )
    ref_hard = FullMasked(reference, full_param_masks(reference, groupsets, keep))
    spared = {k: ~v for k, v in penalized.items()}
    ref_pen = FullPenalty(reference, {k: 1 - m for k, m in full_param_masks(reference, groupsets, spared).items()})

    hard.mask_weights()
    ref_hard.mask_weights()
    opt, ref_opt = make_optimizer(model, SGD), make_optimizer(reference, SGD)
    for step, (x, y) in enumerate(batches(model)):
        sgd_step(model, opt, hard, partial(penalty.apply, step), x, y)
        sgd_step(reference, ref_opt, ref_hard, partial(ref_pen.apply, penalty.lam(step)), x, y)
        for name, p in params.items():
            assert torch.equal(p, ref_params[name]), (step, name)
            assert torch.equal(p.grad, ref_params[name].grad), (step, name)
    assert [tuple(m.shape) for m in hard.masks] == [tuple(pm[n].shape) for n in hard.names]  # still broadcast
    assert all(torch.equal(d, m.expand_as(d)) for d, m in zip(hard.dense, hard.masks))  # written out once trained
    for name, m in pm.items():  # pruned entries are exactly zero, penalised ones shrank
        assert not params[name][(m == 0).expand_as(params[name])].any(), name


def test_rsst_penalty_adds_lambda_w_to_exactly_the_penalised_entries():
    model, groupsets, _, penalized = build("cnn")
    reference = copy.deepcopy(model)
    spared = {k: ~v for k, v in penalized.items()}
    penalty = RSSTPenalty.for_groups(model, groupsets, penalized, RSST, total_steps=4)
    ref_pen = FullPenalty(reference, {k: 1 - m for k, m in full_param_masks(reference, groupsets, spared).items()})
    g = torch.Generator().manual_seed(3)
    for p, q in zip(model.parameters(), reference.parameters()):
        p.grad = torch.randn(p.shape, generator=g)
        q.grad = p.grad.clone()
    lam = penalty.apply(step=2)
    ref_pen.apply(lam)
    assert lam == pytest.approx(1.5)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(p.grad, q.grad), name
    # conv2's penalty covers its own penalised filters and its inputs from conv1's penalised channels
    m = dict(zip(penalty.names, penalty.masks))["conv2.weight"]
    assert m.shape == (8, 6, 3, 3) and torch.equal(m, m[:, :, :1, :1].expand_as(m))
    assert torch.equal(
        m[:, :, 0, 0].bool(), penalized["conv1.channels"][None, :] | penalized["conv2.channels"][:, None]
    )


def test_masks_must_broadcast_to_their_parameter():
    model, groupsets, keep, _ = build("vit_qkv_bias")
    with pytest.raises(ValueError, match="does not broadcast"):
        MaskedParams(model, {"blocks.0.attn.qkv.weight": torch.ones(96)})
    with pytest.raises(ValueError, match="does not broadcast"):
        RSSTPenalty(model, {"blocks.0.attn.qkv.weight": torch.ones(1, 96)}, RSST, 10)
    with pytest.raises(KeyError, match="does not have"):
        MaskedParams(model, {"nope.weight": torch.ones(1)})


def test_a_compiled_model_sees_the_masks_applied_in_place_outside_it():
    """torch.compile (TorchDynamo + AOTAutograd) reads the live parameters on every call, so the masks
    applied outside the compiled region take effect; training matches eager training."""
    model, groupsets, keep, penalized = build("vit_qkv_bias")
    eager = copy.deepcopy(model)
    compiled = torch.compile(model, backend="aot_eager")
    runs = []
    for net, module in ((compiled, model), (eager, eager)):
        hard = MaskedParams(module, param_masks(module, groupsets, keep))
        penalty = RSSTPenalty.for_groups(module, groupsets, penalized, RSST, total_steps=STEPS)
        hard.mask_weights()
        opt = make_optimizer(module, SGD)
        for step, (x, y) in enumerate(batches(module)):
            sgd_step(net, opt, hard, partial(penalty.apply, step), x, y)
        runs.append(dict(module.named_parameters()))
    for name, p in runs[0].items():
        assert torch.allclose(p, runs[1][name], atol=1e-6, rtol=1e-5), name
    pm = param_masks(model, groupsets, keep)
    for name, m in pm.items():
        assert not runs[0][name][(m == 0).expand_as(runs[0][name])].any(), name
    # a mask applied after compilation changes what the compiled model computes
    x = batches(model, 1)[0][0]
    more = {k: v & (torch.arange(len(v)) % 2 == 0) for k, v in keep.items()}
    with torch.no_grad():
        before = compiled(x).clone()
        MaskedParams(model, param_masks(model, groupsets, more)).mask_weights()
        MaskedParams(eager, param_masks(eager, groupsets, more)).mask_weights()
        after = compiled(x)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, eager(x), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graphed_model_trains_with_masks_applied_outside_the_graph():
    """CUDA graphs replay on the parameters' fixed addresses; masks, penalty and optimizer update
    those in place between replays, so the graphed model trains as the eager one does."""
    model, groupsets, keep, penalized = build("vit_qkv_bias")
    eager = copy.deepcopy(model).cuda()
    model.cuda()
    graphed = torch.compile(model, mode="reduce-overhead")
    for net, module in ((graphed, model), (eager, eager)):
        hard = MaskedParams(module, param_masks(module, groupsets, keep))
        penalty = RSSTPenalty.for_groups(module, groupsets, penalized, RSST, total_steps=6)
        hard.mask_weights()
        opt = make_optimizer(module, SGD)
        for step, (x, y) in enumerate(batches(module, 6)):  # warm-up, recording, then replays
            sgd_step(net, opt, hard, partial(penalty.apply, step), x.cuda(), y.cuda())
    params, ref = dict(model.named_parameters()), dict(eager.named_parameters())
    for name, m in param_masks(model, groupsets, keep).items():
        assert not params[name][(m == 0).expand_as(params[name])].any(), name
    for name, p in params.items():
        assert torch.allclose(p, ref[name], atol=1e-4, rtol=1e-3), name
