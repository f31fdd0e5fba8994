"""Training throughput: prunebench's step against the old scripts' loop in its best honest version.

One run measures, side by side and on the same model, batch and synthetic CIFAR-sized images:

- ``reference``: the old scripts' loop made as fast as its design allows: torchvision DataLoader
  over PIL images with RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize
  (+ Resize for 224 px models), **persistent** workers sized to the machine, pinned memory and
  non-blocking copies on CUDA, fp32, plain ``torch.optim.SGD``, and ``loss.item()`` / accuracy
  ``.item()`` every step as the old scripts did;
- ``reference_w0``: the same loop with ``num_workers=0`` (decoding in the training process: on a
  machine with few cores this can beat worker processes that compete with the compute threads);
- ``reference_bf16`` (CUDA only): ``reference`` with bf16 autocast, so that the table shows the
  precision gain (reference_bf16 / reference) apart from the data-path gain (dense / reference_bf16);
- ``dense``: prunebench's ``train_one_epoch`` (uint8 data on the device, crop/flip/resize there,
  bf16 autocast on CUDA, fused/foreach SGD, metrics summed on the device);
- ``refill``: the same step with Refill's hard masks (gradients and weights masked every step);
- ``rsst``: hard masks plus RSST's penalty on the groups being pruned.

Every variant first runs one untimed warm-up epoch (worker start-up, allocator, cuDNN autotune,
compilation). Then each round runs ``--epochs`` consecutive epochs of ``--steps`` steps of every
variant, in an order that rotates between rounds, so that a noisy shared machine slows all variants
alike; a round's figure is the images of its epochs over their summed time (epoch boundaries, and
so the loader's per-epoch restart, included; one-time start-up excluded). Medians over rounds and
the median, min and max of the per-round ratios are reported. Run with ``--help`` for the options;
the figures and the exact commands live in bench/RESULTS.md.
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

from prunebench.accel.settings import autocast, configure_device, prepare_model, uses_channels_last
from prunebench.config import resolve_config
from prunebench.data import DeviceData, Splits
from prunebench.io import atomic_write_text
from prunebench.models import build_model, model_spec
from prunebench.pruning.groups import MaskedParams, groupsets_of, param_masks, random_masks
from prunebench.pruning.penalty import RSSTPenalty
from prunebench.train.loop import make_optimizer, train_one_epoch

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
VARIANTS = ("reference", "reference_w0", "reference_bf16", "dense", "refill", "rsst")
REFERENCES = ("reference", "reference_w0", "reference_bf16")
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


def mid_chain(model, groupsets, variant: str, rsst_cfg: dict, seed: int):
    """The hard masks and the RSST penalty of a state in the middle of a chain, applied to ``model``:
    ``refill`` and ``rsst`` with about half of every layer's groups already pruned, ``rsst`` with a
    further ~15 % of the live groups penalised; (None, None) for ``dense``."""
    hard = penalty = None
    g = torch.Generator().manual_seed(seed)
    if variant in ("refill", "rsst"):
        prev = random_masks(groupsets, 0.5, g)
        hard = MaskedParams(model, param_masks(model, groupsets, prev))
        hard.mask_weights()
    if variant == "rsst":
        more = random_masks(groupsets, 0.85, g)
        penalized = {k: prev[k] & ~more[k] for k in prev}
        penalty = RSSTPenalty.for_groups(model, groupsets, penalized, rsst_cfg, 10**6)
    return hard, penalty


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


def default_workers() -> int:
    """DataLoader workers sized to the machine: all usable cores but one (for the training
    process), at least 1 and at most 8 (enough to feed one GPU at CIFAR sizes)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores - 1))


def reference_loader(splits: Splits, img_size: int, batch: int, workers: int, pin: bool):
    from torchvision import transforms as T

    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    if img_size != 32:
        steps.append(T.Resize(img_size))
    steps += [T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    ds = PILImages(splits.train_x, splits.train_y, T.Compose(steps))
    # persistent workers: started once, not re-forked at every epoch (the old benchmark's flaw)
    return torch.utils.data.DataLoader(
        ds, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=pin, drop_last=True,
        persistent_workers=workers > 0,
    )  # fmt: skip


def reference_epoch(model, loader, optimizer, device, amp: bool = False) -> tuple[int, float]:
    """One epoch as the old scripts ran it: host-side metrics every step; fp32, or bf16 autocast with ``amp``."""
    model.train()
    seen, loss_sum, correct = 0, 0.0, 0
    non_blocking = loader.pin_memory and device.type == "cuda"
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking)
        with autocast(device, amp):
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
        self.hard, self.penalty = mid_chain(self.model, groupsets, variant, experiment["rsst"], seed=1)

    def epoch(self) -> tuple[int, float]:
        stats = train_one_epoch(
            self.net, self.data, self.optimizer, self.cfg, step0=self.step, total_steps=10**6,
            warmup_steps=0, generator=self.generator, hard=self.hard, gradient_hook=self.penalty,
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


def machine_load() -> list[float] | None:
    """1, 5 and 15 minute load averages (other processes sharing the cores), None where unknown."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="vit_small")
    ap.add_argument("--batch", type=int, default=128, help="training batch size (default: the reference setup's 128)")
    ap.add_argument("--steps", type=int, default=20, help="training steps per epoch")
    ap.add_argument("--epochs", type=int, default=3, help="consecutive timed epochs per variant and round")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (variants alternated in rotating order)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument(
        "--workers", type=int, default=default_workers(),
        help="DataLoader workers of the reference loop (default: usable cores - 1, 1 to 8: %(default)s here)",
    )  # fmt: skip
    ap.add_argument("--compile", action="store_true", help="prunebench variants through torch.compile")
    ap.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=None,
        help="default: all (reference_bf16 only on CUDA)",
    )  # fmt: skip
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if min(args.batch, args.steps, args.epochs, args.rounds) < 1 or args.workers < 0:
        ap.error("--batch, --steps, --epochs and --rounds must be >= 1 and --workers >= 0")

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    variants = args.variants or [v for v in VARIANTS if v != "reference_bf16" or device.type == "cuda"]
    if "reference_bf16" in variants and device.type != "cuda":
        ap.error("reference_bf16 needs a CUDA device (bf16 autocast is what prunebench uses on GPUs only)")
    configure_device(device)
    experiment = experiment_for(args.model, args.batch, args.compile)
    splits = synthetic_splits(args.batch * args.steps)
    torch.manual_seed(0)
    init_state = copy.deepcopy(build_model(model_spec(experiment["model"], 10)).state_dict())
    pin = device.type == "cuda"

    runners = {}
    for v in variants:
        if v in REFERENCES:
            model = build_model(model_spec(experiment["model"], 10))
            model.load_state_dict(init_state)
            model.to(device)
            tc = experiment["train"]
            opt = torch.optim.SGD(
                model.parameters(), lr=tc["lr"], momentum=tc["momentum"], weight_decay=tc["weight_decay"]
            )
            img = model_spec(experiment["model"], 10)["img_size"] or 32  # CNNs take CIFAR's 32 px
            workers = 0 if v == "reference_w0" else args.workers
            loader = reference_loader(splits, img, args.batch, workers, pin)
            amp = v == "reference_bf16"
            runners[v] = lambda m=model, ld=loader, o=opt, a=amp: reference_epoch(m, ld, o, device, a)
        else:
            runners[v] = PrunebenchRun(v, experiment, splits, device, init_state, args.compile).epoch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    load_before = machine_load()
    print(
        f"# {args.model}, batch {args.batch}, {args.steps} steps x {args.epochs} epochs per round, {args.rounds} "
        f"rounds, {name}, reference workers {args.workers}, load {load_before}",
        file=sys.stderr,
    )
    for v, fn in runners.items():  # warm-up: workers, allocator, cuDNN autotune, compilation
        fn()
        print(f"  warm-up {v} done", file=sys.stderr)
    ips: dict[str, list[float]] = {v: [] for v in runners}
    # images per CPU-second of the training process (all its threads; not the loader's workers): on a
    # shared machine a steadier measure of the work per image than the wall clock, comparable
    # between the variants that decode in the training process (reference_w0, dense, refill, rsst)
    cpu_ips: dict[str, list[float]] = {v: [] for v in runners}
    order = list(runners)
    for r in range(args.rounds):
        for v in order[r % len(order) :] + order[: r % len(order)]:
            images = seconds = 0.0
            cpu = time.process_time()
            for _ in range(args.epochs):
                n, s = runners[v]()
                images, seconds = images + n, seconds + s
            cpu_ips[v].append(images / max(time.process_time() - cpu, 1e-9))
            ips[v].append(images / seconds)
        print("  round", r + 1, {v: round(x[-1], 1) for v, x in ips.items()}, file=sys.stderr)

    result = {
        "model": args.model,
        "model_spec": model_spec(experiment["model"], 10),
        "batch": args.batch,
        "steps": args.steps,
        "epochs_per_round": args.epochs,
        "rounds": args.rounds,
        "device": name,
        "torch": torch.__version__,
        "compile": args.compile,
        "workers": args.workers,
        "pin_memory": pin,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_before_after": [load_before, machine_load()],
        "images_per_second": {v: statistics.median(x) for v, x in ips.items()},
        "images_per_second_range": {v: [min(x), max(x)] for v, x in ips.items()},
        "images_per_second_all": ips,
        "images_per_cpu_second": {v: statistics.median(x) for v, x in cpu_ips.items()},
        "images_per_cpu_second_all": cpu_ips,
    }
    ratios, ranges = {}, {}

    def ratio(a, b):  # per-round ratios: robust to a slow round, and their spread
        per_round = [x / y for x, y in zip(ips[a], ips[b])]
        ranges[f"{a}_vs_{b}"] = spread(per_round)
        return statistics.median(per_round)

    for a, b in (
        ("dense", "reference"),  # prunebench vs the best reference (fp32 vs fp32 on CPU; bf16 vs fp32 on CUDA)
        ("dense", "reference_w0"),
        ("reference", "reference_w0"),  # what the workers buy the reference
        ("reference_bf16", "reference"),  # the precision gain alone
        ("dense", "reference_bf16"),  # the data-path gain alone at equal precision (CUDA)
    ):
        if a in ips and b in ips:
            ratios[f"{a}_vs_{b}"] = ratio(a, b)
    if "dense" in ips and "reference_w0" in ips:  # the work per image, both decoding in this process
        per_round = [x / y for x, y in zip(cpu_ips["dense"], cpu_ips["reference_w0"])]
        ranges["dense_vs_reference_w0_cpu_time"] = spread(per_round)
        ratios["dense_vs_reference_w0_cpu_time"] = statistics.median(per_round)
    for v in ("refill", "rsst"):
        if v in ips and "dense" in ips:
            ratios[f"{v}_overhead_percent"] = 100.0 * (ratio("dense", v) - 1.0)  # extra time per step
            # The same overhead from the masking/penalty ops timed alone: far less noisy than the
            # difference of two epoch timings on a shared machine.
            step_seconds = args.batch / result["images_per_second"]["dense"]
            extra = statistics.median(runners[v].__self__.extra_ops_seconds() for _ in range(5))
            ratios[f"{v}_ops_percent_of_dense_step"] = 100.0 * extra / step_seconds
    result["ratios"] = ratios
    result["ratio_ranges"] = ranges
    if "dense" in ips:
        result["experiment_gpu_hours_training"] = EXPERIMENT_IMAGES / result["images_per_second"]["dense"] / 3600
        result["host_syncs_per_epoch"] = count_cuda_syncs(runners["dense"].__self__)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
