"""Kernel launches per training step outside the compiled model: dense, Refill and RSST.

torch.compile turns ``model(x)`` and its backward into graphs (replayed as CUDA graphs in
reduce-overhead mode); everything else in a step of prunebench's ``train_one_epoch`` runs eagerly,
one or more kernel launches per op: the batch's augmentation, the loss, the hard masks on the
gradients, RSST's penalty, the optimizer step, the hard masks on the weights and the metric sums.
This counts those launches with :class:`prunebench.accel.launches.LaunchCounter` (a dispatch mode
and a model of CUDA's launches, on any device) around the real ``train_one_epoch``, whose
``compiled_region`` (``model(x)`` and ``loss.backward()``) is left out, for

- ``dense``: no masks;
- ``refill``: hard masks on ~50 % of every layer's heads and MLP neurons (gradients and weights
  masked every step);
- ``rsst``: the same hard masks plus RSST's penalty on a further ~15 % of the groups.

The optimizer is the one CUDA training uses (fused SGD with momentum), built on whatever device
runs the count. A step's launches are the difference between an epoch of ``2 * steps`` steps and
one of ``steps`` steps, divided by ``steps`` (an epoch's own work, e.g. the final read-back of its
sums, cancels out), after a warm-up epoch (the optimizer's first step makes its state).

    PYTHONPATH=src python bench/bench_launches.py --label after --json bench/results/launches_vit_small.json

``--label`` files the figures under that key of the JSON (other labels already there are kept), so
that one file holds the counts before and after a change.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections import Counter
from pathlib import Path

import torch
from bench_train import mid_chain  # bench/, the script's folder, is on sys.path

from prunebench.accel.launches import LaunchCounter
from prunebench.data import DeviceData, Splits
from prunebench.io import atomic_write_json
from prunebench.models import build_model, model_spec
from prunebench.pruning.groups import groupsets_of
from prunebench.train.loop import make_optimizer, train_one_epoch

MODELS = {
    "vit_small": {"arch": "vit_small_patch16_224", "img_size": 32, "patch_size": 4},
    "tiny_vit": {
        "arch": "vit_tiny_patch16_224",
        "img_size": 32,
        "patch_size": 8,
        "kwargs": {"embed_dim": 24, "depth": 4, "num_heads": 3, "mlp_ratio": 2.0},
    },  # fmt: skip
}
VARIANTS = ("dense", "refill", "rsst")
TRAIN = {
    "optimizer": "sgd", "lr": 0.05, "min_lr": 0.0, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4,
    "lr_schedule": "cosine", "label_smoothing": 0.0, "grad_clip": None, "amp": True,
}  # fmt: skip
RSST = {"lambda_schedule": "x", "reg_granularity_prune": 1.0, "exponents": 4}
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def synthetic_data(n: int, device: torch.device, seed: int = 0) -> DeviceData:
    """``n`` random CIFAR-sized training images (and one of each eval split) on ``device``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n + 2, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n + 2,), generator=g)
    splits = Splits(
        "synthetic", 10, x[:n], y[:n], x[n : n + 1], y[n : n + 1], x[n + 1 :], y[n + 1 :], CIFAR_MEAN, CIFAR_STD
    )
    return DeviceData(splits, device)


class Variant:
    """A model of ``model_cfg``, its fused SGD and the masks (and penalty) of one variant."""

    def __init__(self, variant: str, model_cfg: dict, device: torch.device, seed: int = 0):
        torch.manual_seed(seed)
        self.model = build_model(model_spec(model_cfg, 10)).to(device)
        self.optimizer = make_optimizer(self.model, TRAIN, fused=True)
        groupsets = groupsets_of(self.model, ["heads", "neurons"])
        self.hard, self.penalty = mid_chain(self.model, groupsets, variant, RSST, seed=seed + 1)
        self.step = 0

    def epoch(self, data: DeviceData, batch: int, counter: LaunchCounter | None = None) -> None:
        cfg = {**TRAIN, "batch_size": batch}
        stats = train_one_epoch(
            self.model, data, self.optimizer, cfg, step0=self.step, total_steps=10**6, warmup_steps=0,
            generator=torch.Generator(device=data.device).manual_seed(self.step), hard=self.hard,
            gradient_hook=self.penalty, compiled_region=None if counter is None else counter.paused,
        )  # fmt: skip
        self.step += stats["steps"]


def count_variant(variant: str, model_cfg: dict, batch: int, steps: int, device: torch.device) -> dict:
    """Launches per step outside ``model(x)`` / ``loss.backward()``: the total and per op."""
    run = Variant(variant, model_cfg, device)
    run.epoch(synthetic_data(batch, device), batch)  # warm-up: the optimizer's state is made
    counts = []
    for n in (steps, 2 * steps):
        with LaunchCounter() as counter:
            run.epoch(synthetic_data(n * batch, device), batch, counter)
        counts.append(Counter(counter.by_op()))
    per_op = {op: (counts[1][op] - counts[0][op]) / steps for op in counts[1] | counts[0]}
    per_op = {op: v for op, v in sorted(per_op.items(), key=lambda kv: -kv[1]) if v}
    return {"per_step": sum(per_op.values()), "per_op": per_op}


def count_launches(model: str, batch: int = 2, steps: int = 2, device: str = "cpu") -> dict:
    """Launches per step of every variant, and Refill's and RSST's excess over dense."""
    dev = torch.device(device)
    variants = {v: count_variant(v, MODELS[model], batch, steps, dev) for v in VARIANTS}
    dense = variants["dense"]["per_step"]
    return {
        "variants": variants,
        "excess_over_dense": {v: variants[v]["per_step"] - dense for v in VARIANTS if v != "dense"},
    }


def commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="vit_small")
    parser.add_argument("--batch", type=int, default=2, help="images per step (launch counts do not depend on it)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--label", default="after", help="the key the figures are filed under in --json")
    parser.add_argument("--json", type=Path, help="write (or add to) this JSON file")
    args = parser.parse_args()
    result = count_launches(args.model, args.batch, args.steps, args.device)
    result.update(
        model=args.model, model_cfg=MODELS[args.model], batch=args.batch, steps=args.steps, device=args.device,
        torch=torch.__version__, commit=commit(),
    )  # fmt: skip
    if args.json:
        existing = json.loads(args.json.read_text()) if args.json.exists() else {}
        atomic_write_json(args.json, {**existing, args.label: result})
    for v, row in result["variants"].items():
        top = ", ".join(f"{op} {n:g}" for op, n in list(row["per_op"].items())[:4])
        print(f"{args.label} {args.model} {v}: {row['per_step']:g} launches/step ({top})")
    print("excess over dense: " + ", ".join(f"{v} {n:+g}" for v, n in result["excess_over_dense"].items()))


if __name__ == "__main__":
    main()
