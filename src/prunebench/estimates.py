"""What a training job asks the scheduler for: memory and time per state (no torch: Snakemake reads it).

A state's runtime is its epochs x the model's minutes per epoch x its slim share x
``resources.safety_factor``, plus ``resources.overhead_minutes``; a multi-GPU state divides the minutes
per epoch by its GPUs (at :data:`MULTI_GPU_EFFICIENCY`). The slim share (:func:`slim_share`) is the
part of a dense epoch's time that a pruned state trained slim (``train.slim: auto``) still takes. Minutes per epoch come from ``resources.models.<key>`` when the
config gives them, else from built-in estimates for one CIFAR epoch (45,000 training images, then
15,000 evaluated) on a V100-class GPU: 1.5 minutes for ViT-S/16 at 224 px, 0.5 for ResNet-56.
"""

from __future__ import annotations

import math

from prunebench.archs import family_of
from prunebench.config import finetune_epochs, state_epochs
from prunebench.pruning.hooks import slim_refusal
from prunebench.pruning.registry import method_class
from prunebench.pruning.schedule import density_at

# One CIFAR epoch (training + evaluation), in minutes, for prunebench's CNNs. ResNet-34/50 run at 224 px:
# their figure is 45,000 images at 224 px with AMP (about 1,500 and 1,100 training images/s on a V100,
# plus evaluation), estimates from published V100 throughputs, not measured here.
CNN_MINUTES = {
    "small_cnn": 0.1, "resnet20": 0.2, "resnet32": 0.3, "resnet56": 0.5, "resnet110": 1.0, "resnet18": 1.0,
    "resnet34": 0.6, "resnet50": 0.8,
}  # fmt: skip
# timm ViT sizes, relative to ViT-S (compute per token grows with width^2 x depth)
VIT_SIZE = {"tiny": 0.3, "small": 1.0, "base": 3.5, "large": 12.0, "huge": 30.0, "giant": 60.0}
VIT_SMALL_224_MINUTES = 1.5  # ViT-S/16 at 224 px: 196 tokens
CNN_MEM_MB, VIT_MEM_MB, VIT_224_MEM_MB = 8000, 8000, 12000
FOLDER_WORKER_MEM_MB = 1000  # host memory of one decoding worker process of an image folder
# The share of a GPU's speed that each GPU of a multi-GPU state keeps (gradient all-reduce, stragglers)
MULTI_GPU_EFFICIENCY = 0.9
# training images per epoch of each dataset (CIFAR: 50,000 less the 5,000 held out for validation)
DATASET_IMAGES = {"cifar10": 45000, "cifar100": 45000, "digits": 1617, "synthetic": 900}
CIFAR_IMAGES = 45000
# The share of a dense epoch's time that does not shrink with the model when a pruned state trains slim
# (data on the device, the optimizer's fixed costs, kernel launches, the unpruned stem and head): a
# state that keeps a fraction d of the dense model takes FIXED + (1 - FIXED) * d of a dense epoch.
# Fitted to bench/bench_slim.py on the CPU (bench/results/slim_cpu.json; bench/RESULTS.md, "Slim
# training"): ViT-S/4@32 at 30 % of the MACs trains 2.87x faster (0.348 = 0.07 + 0.93 * 0.3), ResNet-56
# 1.36x (0.735 = 0.62 + 0.38 * 0.3); not yet measured on a GPU, where narrow CNN layers may gain less.
SLIM_FIXED_SHARE = {"vit": 0.07, "cnn": 0.62}


def _vit_minutes(model: dict) -> float:
    arch, kwargs = model["arch"], model.get("kwargs") or {}
    size = next(
        (f for name, f in VIT_SIZE.items() if f"_{name}_" in f"_{arch}_" or arch.startswith(f"deit_{name}")), 1.0
    )
    if "embed_dim" in kwargs or "depth" in kwargs:  # a resized ViT: from ViT-S's 384 x 12
        size = (kwargs.get("embed_dim", 384) / 384) ** 2 * kwargs.get("depth", 12) / 12
    digits = [int(part.removeprefix("patch")) for part in arch.split("_") if part.removeprefix("patch").isdigit()]
    patch = model.get("patch_size") or (digits[0] if digits else 16)
    img = model.get("img_size") or (digits[1] if len(digits) > 1 else 224)
    tokens = (img // patch) ** 2 + 1
    return VIT_SMALL_224_MINUTES * size * tokens / 197


def minutes_per_epoch(
    model_key: str, model: dict, dataset: str, train_limit: int | None, settings: dict, train_images: int | None = None
) -> float:
    """Estimated minutes of one epoch of ``model`` on ``dataset`` on one GPU (the config's figure if it gives
    one); ``train_images``: the training images of an image folder (its `datasets` entry says how many)."""
    given = (settings.get("models") or {}).get(model_key, {}).get("minutes_per_epoch")
    if given is not None:
        return float(given)
    if family_of(model["arch"]) == "cnn":
        per_cifar_epoch = CNN_MINUTES.get(model["arch"], 1.0)
    else:
        per_cifar_epoch = _vit_minutes(model)
    images = train_images or DATASET_IMAGES.get(dataset, CIFAR_IMAGES)
    if train_limit:
        images = min(images, train_limit)
    return per_cifar_epoch * images / CIFAR_IMAGES


def mem_mb(model_key: str, model: dict, settings: dict, folder_workers: int = 0) -> int:
    """Host memory of a training process of ``model``, in MB (the config's figure if it gives one), with
    ``folder_workers`` processes decoding an image folder for it."""
    given = (settings.get("models") or {}).get(model_key, {}).get("mem_mb")
    if given is not None:
        return int(given)
    if family_of(model["arch"]) == "cnn":
        return CNN_MEM_MB + FOLDER_WORKER_MEM_MB * folder_workers
    base = VIT_224_MEM_MB if (model.get("img_size") or 224) >= 224 else VIT_MEM_MB
    return base + FOLDER_WORKER_MEM_MB * folder_workers


def slim_share(experiment: dict, state: int) -> float:
    """The share of a dense epoch's time one epoch of ``state`` is estimated to take: 1 for state 0, a
    method that prunes nothing or trains masked, and ``train.slim: off``; otherwise
    :data:`SLIM_FIXED_SHARE` plus the rest scaled by the density the state starts from (the previous
    state's target: a state trains at that density or below, so the estimate errs long)."""
    cls = method_class(experiment["method"])
    if state == 0 or experiment["train"].get("slim", "auto") == "off" or not cls.prunes or slim_refusal(cls):
        return 1.0
    prune = experiment["prune"]
    density = density_at(state - 1, prune["states"], prune["target_sparsity"], prune.get("schedule", "geometric"))
    fixed = SLIM_FIXED_SHARE[family_of(experiment["model"]["arch"])]
    return fixed + (1.0 - fixed) * density


def state_minutes(experiment: dict, state: int, settings: dict) -> float:
    """Estimated minutes of training ``state`` on its GPUs, before the safety factor and the overhead:
    its epochs x minutes per epoch x :func:`slim_share`, shared out over its GPUs."""
    key, model = experiment["model_key"], experiment["model"]
    epochs = state_epochs(experiment, state) + finetune_epochs(experiment, state)
    folder = experiment.get("dataset_source") or {}
    per_epoch = minutes_per_epoch(
        key, model, experiment["dataset"], experiment["data"]["train_limit"], settings, folder.get("train_images")
    ) * slim_share(experiment, state)
    world = experiment["train"].get("gpus", 1) * experiment["train"].get("nodes", 1)
    if world > 1:  # the global batch is shared out: each GPU does 1/world of the work
        per_epoch /= world * MULTI_GPU_EFFICIENCY
    return epochs * per_epoch


def state_resources(experiment: dict, state: int, settings: dict) -> dict[str, int]:
    """``mem_mb`` and ``runtime`` (minutes) of one training state; ``settings`` is the config's `resources`."""
    key, model = experiment["model_key"], experiment["model"]
    folder = experiment.get("dataset_source") or {}
    minutes = state_minutes(experiment, state, settings) * settings.get("safety_factor", 1.5)
    minutes += settings.get("overhead_minutes", 10)
    # the training loader's workers and the evaluation loader's (half as many), all kept for the whole state
    workers = folder.get("workers", 0) if folder.get("loader", "auto") != "dali" else 0
    workers += workers // 2
    return {"mem_mb": mem_mb(key, model, settings, workers), "runtime": math.ceil(minutes)}


def planned_states(resolved) -> list[tuple[str, int, dict]]:
    """(run, state, experiment) of every training state a resolved config plans: each experiment's
    pruned states, and every state 0 once (a shared dense state 0 once for all the experiments it serves)."""
    states = [(run, 0, exp) for run, exp in sorted(resolved.state0_runs.items())]
    for name, exp in sorted(resolved.experiments.items()):
        states += [(name, k, exp) for k in range(1, exp["prune"]["states"])]
    return states


def planned_gpu_hours(resolved) -> dict[str, dict[str, float]]:
    """Per model key: its training states and their estimated GPU-hours (:func:`state_minutes` x the
    state's GPUs, before the safety factor and the overhead), ``as_configured`` and ``dense_shaped``
    (every state at a dense epoch's time: what masked training costs)."""
    out: dict[str, dict[str, float]] = {}
    for _, state, exp in planned_states(resolved):
        masked = {**exp, "train": {**exp["train"], "slim": "off"}}
        world = exp["train"].get("gpus", 1) * exp["train"].get("nodes", 1)
        row = out.setdefault(exp["model_key"], {"states": 0, "as_configured": 0.0, "dense_shaped": 0.0})
        row["states"] += 1
        row["as_configured"] += state_minutes(exp, state, resolved.resources) * world / 60
        row["dense_shaped"] += state_minutes(masked, state, resolved.resources) * world / 60
    return out
