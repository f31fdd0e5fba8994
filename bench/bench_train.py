"""Training throughput: prunebench's step against a loop written the way the old scripts were.

One run measures, side by side and on the same model, batch and synthetic CIFAR-sized images:

- ``reference``: torchvision DataLoader over PIL images with RandomCrop(32, padding=4) +
  RandomHorizontalFlip + ToTensor + Normalize (+ Resize for 224 px models), fp32, plain
  ``torch.optim.SGD``, and ``loss.item()`` / accuracy ``.item()`` every step, as the old scripts did;
- ``dense``: prunebench's ``train_one_epoch`` (uint8 data on the device, crop/flip/resize there,
  bf16 autocast on CUDA, fused/foreach SGD, metrics summed on the device);
- ``refill``: the same step with Refill's hard masks (gradients and weights masked every step);
- ``rsst``: hard masks plus RSST's penalty on the groups being pruned.

Each round runs one epoch of every variant, in an order that rotates between rounds, so that a
noisy shared machine slows all variants alike; medians over rounds are reported. Run with
``--help`` for the options; the figures and the exact commands live in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from prunebench.config import resolve_config
from prunebench.data import DeviceData, Splits
from prunebench.models import build_model, model_spec
from prunebench.pruning.groups import MaskedParams, groupsets_of, param_masks
from prunebench.pruning.methods import RSSTPenalty
from prunebench.train.loop import configure_device, make_optimizer, prepare_model, train_one_epoch, uses_channels_last

MODELS = {
    "vit_small": {"arch": "vit_small_patch16_224", "img_size": 32, "patch_size": 4},
    # 32 px images resized to 224 on the device, as config.yaml's reference setup does
    "vit_small_224": {"arch": "vit_small_patch16_224", "img_size": 224, "patch_size": 16},
    "demo_vit": {
        "arch": "vit_tiny_patch16_224",
        "img_size": 32,
        "patch_size": 4,
        "kwargs": {"embed_dim": 96, "depth": 4, "num_heads": 3},
    },
    "small_cnn": {"arch": "small_cnn"},
}
VARIANTS = ("reference", "dense", "refill", "rsst")
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
# The reference experiment: 16 states x 60 epochs over CIFAR's 45k training images.
EXPERIMENT_IMAGES = 16 * 60 * 45_000


def synthetic_splits(n_train: int, seed: int = 0) -> Splits:
    """CIFAR-sized random uint8 images (the throughput does not depend on the pixels)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n_train + 64, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n_train + 64,), generator=g)
    return Splits(
        "synthetic", 10, x[:n_train], y[:n_train], x[-64:-32], y[-64:-32], x[-32:], y[-32:], CIFAR_MEAN, CIFAR_STD
    )


def experiment_for(model_key: str, batch: int, compile_: bool) -> dict:
    """A resolved prunebench experiment (schema defaults: SGD lr 0.01, momentum 0.9, bf16 on GPU)."""
    config = {
        "defaults": {"train": {"batch_size": batch, "compile": compile_, "warmup_epochs": 0}},
        "models": {model_key: MODELS[model_key]},
        "experiments": {"bench": {"datasets": ["synthetic"], "models": [model_key], "methods": ["rsst"]}},
    }
    return next(iter(resolve_config(config, "bench").experiments.values()))


# --- the old scripts' way -------------------------------------------------------------------------


class PILImages(torch.utils.data.Dataset):
    """Like torchvision's CIFAR10: an HWC uint8 array, one PIL image made per sample, then transforms."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.data = x.permute(0, 2, 3, 1).contiguous().numpy()
        self.targets = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def reference_loader(splits: Splits, img_size: int, batch: int, workers: int, pin: bool):
    from torchvision import transforms as T

    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    if img_size != 32:
        steps.append(T.Resize(img_size))
    steps += [T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    ds = PILImages(splits.train_x, splits.train_y, T.Compose(steps))
    return torch.utils.data.DataLoader(
        ds, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=pin, drop_last=True
    )


def reference_epoch(model, loader, optimizer, device) -> tuple[int, float]:
    """One epoch as the old scripts ran it: fp32, host-side metrics every step."""
    model.train()
    seen, loss_sum, correct = 0, 0.0, 0
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss = F.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.item()
        correct += out.argmax(1).eq(y).sum().item()
        seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen, time.perf_counter() - start


# --- prunebench's way -----------------------------------------------------------------------------


def random_masks(groupsets, keep: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Keep about ``keep`` of each layer's groups (at least one), as a pruned state would."""
    out = {}
    for gs in groupsets:
        m = torch.rand(gs.size, generator=generator) < keep
        m[torch.randint(gs.size, (1,), generator=generator)] = True
        out[gs.name] = m
    return out


class PrunebenchRun:
    """One model trained by prunebench's epoch loop, with the masks/penalty of one variant."""

    def __init__(self, variant, experiment, splits, device, init_state, compile_):
        self.spec = model_spec(experiment["model"], 10)
        self.model = build_model(self.spec)
        self.model.load_state_dict(init_state)
        self.cfg = experiment["train"]
        self.net = prepare_model(self.model, self.spec["family"], device, compile=compile_)
        self.data = DeviceData(
            splits, device, self.spec["img_size"], ("crop", "flip"), 4,
            channels_last=uses_channels_last(self.spec["family"], device),
        )  # fmt: skip
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.steps = self.data.steps_per_epoch(self.cfg["batch_size"])
        self.generator = torch.Generator(device=device).manual_seed(0)
        self.hard = self.penalty = None
        self.step = 0
        kinds = experiment["prune"]["groups"]
        groupsets = groupsets_of(self.model, kinds)
        g = torch.Generator().manual_seed(1)
        if variant in ("refill", "rsst"):
            # Mid-chain masks: about half of every layer's groups already pruned.
            prev = random_masks(groupsets, 0.5, g)
            self.hard = MaskedParams(self.model, param_masks(self.model, groupsets, prev))
            self.hard.mask_weights()
        if variant == "rsst":
            # R_k: a further ~15 % of the live groups pushed towards zero during the state.
            more = random_masks(groupsets, 0.85, g)
            penalized = {k: prev[k] & ~more[k] for k in prev}
            self.penalty = RSSTPenalty.for_groups(self.model, groupsets, penalized, experiment["rsst"], 10**6)

    def epoch(self) -> tuple[int, float]:
        stats = train_one_epoch(
            self.net, self.data, self.optimizer, self.cfg, step0=self.step, total_steps=10**6,
            warmup_steps=0, generator=self.generator, hard=self.hard, penalty=self.penalty,
        )  # fmt: skip
        self.step += stats["steps"]
        return stats["images"], stats["seconds"]

    def extra_ops_seconds(self, reps: int = 20) -> float:
        """Seconds per step of the variant's own work (masking, penalty), timed alone on the last step's grads."""
        sync = torch.cuda.synchronize if self.data.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        for _ in range(reps):
            if self.hard:
                self.hard.mask_grads()
            if self.penalty is not None:
                self.penalty.apply(self.step)
            if self.hard:
                self.hard.mask_weights()
        sync()
        return (time.perf_counter() - start) / reps


def count_cuda_syncs(run: PrunebenchRun) -> int | None:
    """Host synchronisations CUDA reports during one prunebench epoch (None off CUDA)."""
    if run.data.device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run.epoch()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="vit_small")
    ap.add_argument("--batch", type=int, default=128, help="training batch size (default: the reference setup's 128)")
    ap.add_argument("--steps", type=int, default=20, help="training steps per timed epoch")
    ap.add_argument("--rounds", type=int, default=5, help="timed epochs of every variant (alternated)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="reference DataLoader workers")
    ap.add_argument("--compile", action="store_true", help="prunebench variants through torch.compile")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    configure_device(device)
    experiment = experiment_for(args.model, args.batch, args.compile)
    splits = synthetic_splits(args.batch * args.steps)
    torch.manual_seed(0)
    init_state = copy.deepcopy(build_model(model_spec(experiment["model"], 10)).state_dict())

    runners = {}
    for v in args.variants:
        if v == "reference":
            model = build_model(model_spec(experiment["model"], 10))
            model.load_state_dict(init_state)
            model.to(device)
            tc = experiment["train"]
            opt = torch.optim.SGD(
                model.parameters(), lr=tc["lr"], momentum=tc["momentum"], weight_decay=tc["weight_decay"]
            )
            img = model_spec(experiment["model"], 10)["img_size"] or 32  # CNNs take CIFAR's 32 px
            loader = reference_loader(splits, img, args.batch, args.workers, device.type == "cuda")
            runners[v] = lambda m=model, ld=loader, o=opt: reference_epoch(m, ld, o, device)
        else:
            runners[v] = PrunebenchRun(v, experiment, splits, device, init_state, args.compile).epoch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"# {args.model}, batch {args.batch}, {args.steps} steps/epoch, {args.rounds} rounds, {name}", file=sys.stderr
    )
    for v, fn in runners.items():  # warm-up: allocator, cuDNN autotune, compilation, worker start-up paths
        fn()
        print(f"  warm-up {v} done", file=sys.stderr)
    ips: dict[str, list[float]] = {v: [] for v in runners}
    order = list(runners)
    for r in range(args.rounds):
        for v in order[r % len(order) :] + order[: r % len(order)]:
            images, seconds = runners[v]()
            ips[v].append(images / seconds)
        print("  round", r + 1, {v: round(x[-1], 1) for v, x in ips.items()}, file=sys.stderr)

    result = {
        "model": args.model,
        "model_spec": model_spec(experiment["model"], 10),
        "batch": args.batch,
        "steps": args.steps,
        "rounds": args.rounds,
        "device": name,
        "compile": args.compile,
        "workers": args.workers,
        "images_per_second": {v: statistics.median(x) for v, x in ips.items()},
        "images_per_second_all": ips,
    }
    ratios = {}

    def ratio(a, b):  # median over rounds of the per-round ratio: robust to a slow round
        return statistics.median(x / y for x, y in zip(ips[a], ips[b]))

    if "dense" in ips and "reference" in ips:
        ratios["dense_vs_reference"] = ratio("dense", "reference")
    for v in ("refill", "rsst"):
        if v in ips and "dense" in ips:
            ratios[f"{v}_overhead_percent"] = 100.0 * (ratio("dense", v) - 1.0)  # extra time per step
            # The same overhead from the masking/penalty ops timed alone: far less noisy than the
            # difference of two epoch timings on a shared machine.
            step_seconds = args.batch / result["images_per_second"]["dense"]
            extra = statistics.median(runners[v].__self__.extra_ops_seconds() for _ in range(5))
            ratios[f"{v}_ops_percent_of_dense_step"] = 100.0 * extra / step_seconds
    result["ratios"] = ratios
    if "dense" in ips:
        result["experiment_gpu_hours_training"] = EXPERIMENT_IMAGES / result["images_per_second"]["dense"] / 3600
        result["host_syncs_per_epoch"] = count_cuda_syncs(runners["dense"].__self__)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
