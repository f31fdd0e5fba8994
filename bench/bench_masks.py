"""Hard masks and RSST's penalty: broadcast masks against the old weight-sized ones.

For one model, with ~50 % of every layer's heads and neurons masked and RSST's penalty on a further
~15 %, this times side by side:

- the mask work of one step alone (``mask_grads`` + the penalty + ``mask_weights``), for
  ``full`` (the old implementation: one weight-sized float mask per parameter, ``_foreach_mul_``),
  ``broadcast`` (prunebench's: per-dim factors, ``_foreach_mul_`` / ``_foreach_addcmul_``
  broadcasting them), and three alternatives that were considered: ``loop`` (the same factors,
  one Python-level op per parameter), ``group_view`` (one value per head/neuron, each parameter
  viewed as tiles x groups x width) and ``index_fill`` (zeroing the masked indices with
  ``index_fill_``; the penalty as in ``broadcast``);
- whole training steps (forward, backward, masks, penalty, foreach SGD) without masks
  (``unmasked``), with the old masks (``full``) and with the broadcast ones (``broadcast``).

Since issue 24 ``MaskedParams`` (once it masks gradients) and ``RSSTPenalty`` hold their masks
written out to the weights' shape, for CUDA's multi-tensor fast path (``bench/bench_launches.py``):
the ``broadcast`` variant, built through them, now runs weight-sized masks for the penalty and for
the masks applied after the first ``mask_grads``. The figures in bench/RESULTS.md were taken before.

Rounds interleave the variants in a rotating order, so a noisy shared machine slows all alike;
medians over rounds and medians of per-round ratios are reported, with the masks' memory. On the
CPU the clock is the process's CPU time (run with ``--threads 1``), so time spent descheduled by
other jobs does not count; on CUDA it is wall time after a synchronize.

    PYTHONPATH=src python bench/bench_masks.py --model vit_small --batch 8 --threads 1 \
        --json bench/results/masks_cpu_vit_small.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from prunebench.io import atomic_write_json
from prunebench.models import build_model, model_spec
from prunebench.pruning.groups import MaskedParams, groupsets_of, param_masks
from prunebench.pruning.penalty import RSSTPenalty
from prunebench.train.loop import make_optimizer

MODELS = {
    "demo_vit": {
        "arch": "vit_tiny_patch16_224",
        "img_size": 32,
        "patch_size": 4,
        "kwargs": {"embed_dim": 96, "depth": 4, "num_heads": 3},
    },  # fmt: skip
    "vit_small": {"arch": "vit_small_patch16_224", "img_size": 32, "patch_size": 4},
}
RSST = {"lambda_schedule": "x", "reg_granularity_prune": 1.0, "exponents": 4}
SGD = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4}
OPS = ("full", "broadcast", "loop", "group_view", "index_fill")
STEPS = ("unmasked", "full", "broadcast")


# --- the old implementation: weight-sized masks -----------------------------------------------------
def full_param_masks(model, groupsets, masks):
    params = dict(model.named_parameters())
    out = {}
    for gs in groupsets:
        if bool(masks[gs.name].all()):
            continue
        for sl in gs.slices:
            p = params[sl.param]
            em = gs.element_mask(masks[gs.name], sl).to(p.dtype)
            shape = [1] * p.dim()
            shape[sl.dim] = -1
            out[sl.param] = out.get(sl.param, torch.ones_like(p)) * em.view(shape)
    return out


class Impl:
    """One way of masking: ``hard(grads)``/``hard(weights)`` and ``penalty(step)``."""

    def __init__(self, kind, model, groupsets, keep, penalized, total_steps):
        self.kind = kind
        params = dict(model.named_parameters())
        spared = {k: ~v for k, v in penalized.items()}
        if kind == "full":
            hard = full_param_masks(model, groupsets, keep)
            pen = {k: 1 - m for k, m in full_param_masks(model, groupsets, spared).items()}
            self.masked = MaskedParams(model, hard)  # MaskedParams takes weight-sized masks as before
            self.pen = RSSTPenalty(model, pen, RSST, total_steps)
        else:
            self.masked = MaskedParams(model, param_masks(model, groupsets, keep))
            self.pen = RSSTPenalty.for_groups(model, groupsets, penalized, RSST, total_steps)
        self.params = self.masked.params
        if kind == "group_view":  # (param, view shape, per-group mask viewed to broadcast)
            self.views = []
            for gs in groupsets:
                if bool(keep[gs.name].all()):
                    continue
                for sl in gs.slices:
                    p = params[sl.param]
                    shape = [*p.shape[: sl.dim], sl.tile, gs.size, sl.width, *p.shape[sl.dim + 1 :]]
                    mshape = [1] * len(shape)
                    mshape[sl.dim + 1] = gs.size
                    self.views.append((p, shape, keep[gs.name].to(p.device, p.dtype).view(mshape)))
        if kind == "index_fill":  # (param, dim, masked indices along dim)
            self.fills = []
            for gs in groupsets:
                if bool(keep[gs.name].all()):
                    continue
                for sl in gs.slices:
                    dead = (~gs.element_mask(keep[gs.name], sl)).nonzero().flatten()
                    self.fills.append((params[sl.param], sl.dim, dead.to(params[sl.param].device)))

    def mask_bytes(self) -> int:
        masks = [*self.masked.masks, *self.pen.masks]
        if self.kind == "group_view":
            masks = [m for _, _, m in self.views] + list(self.pen.masks)
        if self.kind == "index_fill":
            masks = [i for _, _, i in self.fills] + list(self.pen.masks)
        return sum(m.numel() * m.element_size() for m in masks)

    @torch.no_grad()
    def hard(self, grads: bool) -> None:
        if self.kind in ("full", "broadcast"):
            (self.masked.mask_grads if grads else self.masked.mask_weights)()
        elif self.kind == "loop":
            for p, m in zip(self.params, self.masked.masks):
                (p.grad if grads else p).mul_(m)
        elif self.kind == "group_view":
            for p, shape, m in self.views:
                (p.grad if grads else p).view(shape).mul_(m)
        else:
            for p, dim, idx in self.fills:
                (p.grad if grads else p).index_fill_(dim, idx, 0.0)

    def ops(self, step: int) -> None:
        self.hard(grads=True)
        self.pen.apply(step)
        self.hard(grads=False)


def setup(name: str, device: str = "cpu", seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(model_spec(MODELS[name], 10)).to(device)
    groupsets = groupsets_of(model, ["heads", "neurons"])
    g = torch.Generator().manual_seed(seed)
    keep, penalized = {}, {}
    for gs in groupsets:
        order = torch.randperm(gs.size, generator=g)
        keep[gs.name] = torch.ones(gs.size, dtype=torch.bool)
        keep[gs.name][order[: gs.size // 2]] = False
        penalized[gs.name] = torch.zeros(gs.size, dtype=torch.bool)
        penalized[gs.name][order[gs.size // 2 : gs.size // 2 + max(1, round(0.15 * gs.size))]] = True
    return model, groupsets, keep, penalized


def check_equal(name: str, device: str) -> None:
    """The broadcast masks and penalty give bit for bit the old ones' gradients and weights."""
    results = []
    for kind in ("full", "broadcast", "group_view", "index_fill", "loop"):
        model, groupsets, keep, penalized = setup(name, device)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())).to(device)
        Impl(kind, model, groupsets, keep, penalized, 10).ops(5)
        results.append([t for p in model.parameters() for t in (p.detach(), p.grad)])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other)), "an implementation differs"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def clock(device: str) -> float:
    """The process's CPU time on the CPU (time spent descheduled on a shared machine does not count;
    run with --threads 1), wall time on CUDA."""
    return time.perf_counter() if device.startswith("cuda") else time.process_time()


def time_ops(impls: dict, reps: int, device: str) -> dict[str, float]:
    out = {}
    for kind, impl in impls.items():
        sync(device)
        start = clock(device)
        for i in range(reps):
            impl.ops(i % 10)
        sync(device)
        out[kind] = (clock(device) - start) / reps
    return out


def train_step(model, opt, impl, x, y, step):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if impl is not None:
        impl.hard(grads=True)
        impl.pen.apply(step)
    opt.step()
    if impl is not None:
        impl.hard(grads=False)


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    check_equal(args.model, args.device)
    model, groupsets, keep, penalized = setup(args.model, args.device)
    n_params = sum(p.numel() for p in model.parameters())
    spec = MODELS[args.model]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, spec["img_size"], spec["img_size"], generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    x, y = x.to(args.device), y.to(args.device)

    # mask work alone, on one model with gradients in place
    ops_model = copy.deepcopy(model)
    for p in ops_model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    impls = {k: Impl(k, ops_model, groupsets, keep, penalized, 10) for k in OPS}
    memory = {k: impl.mask_bytes() for k, impl in impls.items()}
    masked_params = sum(p.numel() * p.element_size() for p in impls["full"].params)

    # whole steps, each variant on its own copy of the model and optimizer
    runs = {}
    for kind in STEPS:
        m = copy.deepcopy(model)
        impl = None if kind == "unmasked" else Impl(kind, m, groupsets, keep, penalized, 1000)
        if impl is not None:
            impl.hard(grads=False)
        runs[kind] = (m, make_optimizer(m, SGD), impl)
        train_step(m, runs[kind][1], impl, x, y, 0)  # warm-up

    ops_rounds, step_rounds = [], []
    for r in range(args.rounds):
        order = OPS[r % len(OPS) :] + OPS[: r % len(OPS)]
        ops_rounds.append(time_ops({k: impls[k] for k in order}, args.op_reps, args.device))
        steps = {}
        for kind in STEPS[r % len(STEPS) :] + STEPS[: r % len(STEPS)]:
            m, opt, impl = runs[kind]
            sync(args.device)
            start = clock(args.device)
            for s in range(args.steps):
                train_step(m, opt, impl, x, y, s)
            sync(args.device)
            steps[kind] = (clock(args.device) - start) / args.steps
        step_rounds.append(steps)
        print(f"round {r + 1}/{args.rounds}: ops {json.dumps({k: round(v * 1e6) for k, v in ops_rounds[-1].items()})} us; "
              f"steps {json.dumps({k: round(v * 1e3, 1) for k, v in steps.items()})} ms", flush=True)  # fmt: skip

    def med(rows, key):
        return statistics.median(row[key] for row in rows)

    def ratio(rows, a, b):
        return statistics.median(row[a] / row[b] for row in rows)

    unmasked_step = med(step_rounds, "unmasked")
    return {
        "model": args.model,
        "model_cfg": spec,
        "params": n_params,
        "batch": args.batch,
        "threads": args.threads,
        "device": args.device,
        "clock": "wall" if args.device.startswith("cuda") else "process CPU time",
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "op_reps": args.op_reps,
        "masked_fraction_of_groups": 0.5,
        "penalised_fraction_of_groups": 0.15,
        "torch": torch.__version__,
        "machine": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor() or platform.machine(),
        "ops_seconds_median": {k: med(ops_rounds, k) for k in OPS},
        "ops_ratio_to_full": {k: ratio(ops_rounds, k, "full") for k in OPS},
        "ops_share_of_unmasked_step": {k: med(ops_rounds, k) / unmasked_step for k in OPS},
        "step_seconds_median": {k: med(step_rounds, k) for k in STEPS},
        "step_ratio_to_unmasked": {k: ratio(step_rounds, k, "unmasked") for k in STEPS},
        "step_broadcast_over_full": ratio(step_rounds, "broadcast", "full"),
        "mask_bytes": memory,
        "masked_param_bytes": masked_params,
        "ops_rounds": ops_rounds,
        "step_rounds": step_rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="demo_vit")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fp32 either way)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="training steps per variant and round")
    parser.add_argument(
        "--op-reps", type=int, default=20, help="repetitions of the mask work per implementation and round"
    )
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        atomic_write_json(args.json, result)
    ops, steps = result["ops_ratio_to_full"], result["step_ratio_to_unmasked"]
    print(f"{args.model} batch {args.batch}: mask work vs full: " + ", ".join(f"{k} {v:.2f}x" for k, v in ops.items()))
    print(f"steps vs unmasked: full {steps['full']:.3f}, broadcast {steps['broadcast']:.3f}; "
          f"broadcast/full {result['step_broadcast_over_full']:.3f}")  # fmt: skip
    print("mask memory (bytes): " + ", ".join(f"{k} {v:,}" for k, v in result["mask_bytes"].items()))


if __name__ == "__main__":
    main()
