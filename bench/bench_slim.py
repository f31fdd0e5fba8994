"""Slim against masked training steps (issue 23): one step at 1.0, 0.67, 0.45 and 0.3 of the dense MACs.

    PYTHONPATH=src python bench/bench_slim.py --json bench/results/slim_cpu.json

For each model and MACs density, the same pruned network is trained two ways, one step of
forward + backward + optimizer (foreach SGD with momentum 0.9 and weight decay, as
``make_optimizer`` builds it on the CPU; random fp32 images, cross-entropy):

- ``masked``: the dense-shaped model under hard masks, as ``train/loop.py`` steps it today
  (gradients masked after backward, weights masked after the step);
- ``slim``: the compact model of the alive groups (``prunebench.export.slim.slim_model``), no masks.

The masks are the workflow's own choice for a MACs budget (``choose_masks``: ``budget: macs``,
``ranking: layerwise``, L1 on the random initial weights, so every layer keeps about the same
fraction: heads and MLP neurons for the ViTs, the blocks' inner channels for ResNet-56), and the
slim model's MACs are counted (``models/cost.py``), so the table gives the real MACs ratio beside
the time ratio. Density 1.0 is the control: nothing is masked and the two models are the same.

Timing: ``torch.utils.benchmark.Timer.blocked_autorange`` per step (its block-size estimate runs one
untimed step first), in paired rounds: every round times masked and slim at every density, the
order within each pair alternating from round to round; the speedup is the median over rounds of
the per-round ratio masked / slim, with its range (``export.throughput.speedup_spread``). The same
rounds also give CPU seconds per step (the process's, all threads), whose ratio is steadier where
other jobs deschedule this one. On a CPU shared with other jobs the seconds drift; the paired
ratios are what to read.

OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it): on a
CPU shared with other jobs, spinning threads turn a 1 s ResNet-56 step at 2 threads into 4-8 s
(measured here, load ~5 on 2 cores), which would time the contention rather than the models.
"""

from __future__ import annotations

import argparse
import copy
import gc
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP threads

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from prunebench.export.slim import slim_model  # noqa: E402
from prunebench.export.throughput import speedup_spread, speedup_text  # noqa: E402
from prunebench.io import atomic_write_json  # noqa: E402
from prunebench.models import build_model, model_spec  # noqa: E402
from prunebench.models.cost import count_macs, input_shape  # noqa: E402
from prunebench.provenance import versions  # noqa: E402
from prunebench.pruning.budget import choose_masks  # noqa: E402
from prunebench.pruning.groups import MaskedParams, full_masks, groupsets_of, kept_counts, param_masks  # noqa: E402

MODELS = {
    "vit_s4_32": {"arch": "vit_small_patch16_224", "img_size": 32, "patch_size": 4},
    "vit_s16_224": {"arch": "vit_small_patch16_224", "img_size": 224, "patch_size": 16},
    "resnet56": {"arch": "resnet56"},
}
BATCH = {"vit_s4_32": 16, "vit_s16_224": 4, "resnet56": 64}
DENSITIES = (1.0, 0.67, 0.45, 0.3)
SGD = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}


def pruned_masks(model, groupsets, density: float, img_size: int):
    """The workflow's masks keeping ``density`` of the dense MACs (layerwise: each layer about alike)."""
    if density >= 1.0:
        return full_masks(groupsets)
    cfg = {"states": 2, "target_sparsity": 1.0 - density, "schedule": "geometric", "importance": "l1",
           "ranking": "layerwise", "budget": "macs", "round_to": 1}  # fmt: skip
    _, keep = choose_masks(model, groupsets, full_masks(groupsets), cfg, state=1, img_size=img_size)
    return keep


class Step:
    """One training step of a model, masked (``hard``) or not, with its own foreach SGD; it counts its
    calls and the process's CPU seconds they took (all threads: with passive waits, the work)."""

    def __init__(self, model, hard: MaskedParams | None, x, y):
        self.model, self.hard, self.x, self.y = model.train(), hard, x, y
        self.opt = torch.optim.SGD(model.parameters(), **SGD, foreach=True)
        self.calls, self.cpu = 0, 0.0

    def __call__(self) -> None:
        start = time.process_time()
        self._step()
        self.cpu += time.process_time() - start
        self.calls += 1

    def _step(self) -> None:
        loss = F.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.hard:
            self.hard.mask_grads()
        self.opt.step()
        if self.hard:
            self.hard.mask_weights()


def timer(fn):
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import benchmark

    return benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())


def bench_model(key: str, batch: int, densities, rounds: int, min_run_time: float) -> dict:
    torch.manual_seed(0)
    spec = model_spec(MODELS[key], 10)
    dense = build_model(spec)
    shape = input_shape(dense, spec)
    groupsets = groupsets_of(dense)
    dense_macs = count_macs(dense, shape)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(batch, *shape, generator=g), torch.randint(0, 10, (batch,), generator=g)
    cases = []
    for d in densities:
        masks = pruned_masks(dense, groupsets, d, shape[-1])
        model = copy.deepcopy(dense)
        hard = MaskedParams(model, param_masks(model, groupsets, masks))
        hard.mask_weights()
        slim, _ = slim_model(model, masks)
        macs = count_macs(slim, shape)
        cases.append({
            "density": d, "macs": macs, "macs_ratio": dense_macs / macs, "kept": kept_counts(groupsets, masks),
            "steps": {"masked": Step(model, hard, x, y), "slim": Step(slim, None, x, y)},
            "seconds": {"masked": [], "slim": []}, "cpu_seconds": {"masked": [], "slim": []},
        })  # fmt: skip
    for case in cases:
        case["timers"] = {name: timer(step) for name, step in case["steps"].items()}
    start = time.perf_counter()
    for case in cases:  # warm-up: allocator, first-call paths (one step each)
        for step in case["steps"].values():
            step()
    print(f"  {key}: built and warmed up ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    for r in range(rounds):
        for case in cases:
            for name in ("masked", "slim") if r % 2 == 0 else ("slim", "masked"):
                step = case["steps"][name]
                calls, cpu = step.calls, step.cpu
                m = case["timers"][name].blocked_autorange(min_run_time=min_run_time)
                case["seconds"][name].append(m.median)
                case["cpu_seconds"][name].append((step.cpu - cpu) / (step.calls - calls))
        print(f"  {key} round {r + 1}/{rounds} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    out = {"model": key, "model_spec": spec, "batch": batch, "input_shape": list(shape), "dense_macs": dense_macs,
           "cases": []}  # fmt: skip
    for case in cases:
        sec, cpu = case["seconds"], case["cpu_seconds"]
        out["cases"].append({
            "density": case["density"], "macs": case["macs"], "macs_ratio": case["macs_ratio"],
            "kept": case["kept"], "seconds_per_step": sec,
            "median_seconds": {k: statistics.median(v) for k, v in sec.items()},
            "speedup": speedup_spread(sec["masked"], sec["slim"]),
            # CPU seconds per step of the same rounds (every step the timer ran, its estimate's included)
            "cpu_seconds_per_step": cpu,
            "cpu_speedup": speedup_spread(cpu["masked"], cpu["slim"]),
        })  # fmt: skip
    del cases, dense
    gc.collect()
    return out


def load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--densities", type=float, nargs="+", default=list(DENSITIES))
    ap.add_argument(
        "--batch", type=str, nargs="*", default=[], help=f"per model, e.g. vit_s4_32=64 (defaults: {BATCH})"
    )
    ap.add_argument("--rounds", type=int, default=3, help="paired rounds (masked and slim at every density)")
    ap.add_argument("--min-run-time", type=float, default=0.2, help="blocked_autorange's least seconds per figure")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    batch = {**BATCH, **{k: int(v) for k, v in (item.split("=") for item in args.batch)}}
    before, start = load(), time.perf_counter()
    results = [bench_model(k, batch[k], args.densities, args.rounds, args.min_run_time) for k in args.models]
    result = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "dtype": "float32",
        "versions": versions(),
        "timer": "torch.utils.benchmark.Timer.blocked_autorange per step, masked/slim paired rounds, order alternating",
        "load_average_before_after": [before, load()],
        "seconds": time.perf_counter() - start,
        "results": results,
    }
    print(f"\n{result['device']}, torch {torch.__version__}, load {before} -> {load()}, {result['seconds']:.0f} s")
    print(
        "| model (batch) | MACs density | MACs ratio | masked s/step | slim s/step | slim speedup, wall (range) "
        "| speedup / MACs ratio | slim speedup, CPU time (range) |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---|")
    for res in results:
        for c in res["cases"]:
            s = c["speedup"]
            print(
                f"| {res['model']} ({res['batch']}) | {c['macs'] / res['dense_macs']:.3f} | {c['macs_ratio']:.2f}x | "
                f"{c['median_seconds']['masked']:.3f} | {c['median_seconds']['slim']:.3f} | {speedup_text(s)} | "
                f"{s['median'] / c['macs_ratio']:.2f} | {speedup_text(c['cpu_speedup'])} |"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
