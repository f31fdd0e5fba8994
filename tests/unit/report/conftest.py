"""A results tree of metrics.jsonl and summary.json files with known defects, written by code.

cifar10 x vit_s, 4 planned states (state 0: 12 epochs, pruned states: 6):
- main-...-dense-s0: complete; its state 3 training loss diverges at the last epoch.
- main-...-refill-s0: complete, with `cost` and `throughput` in every summary; state 2 is an
  anomaly (its final accuracy is ~30 points below its neighbours).
- seeds-...-refill-s1: complete, a second seed of refill.
- main-...-rsst-s0: state 3 is missing (still running: 2 epochs in its recovery folder); epoch 3
  of state 1 has a NaN validation loss (null in the file, as prunebench writes NaN).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

DATASET, MODEL = "cifar10", "vit_s"
STATES, EPOCHS, STATE0_EPOCHS = 4, 6, 12
DENSITY = [1.0, 0.7, 0.5, 0.35]
HEADS, NEURONS = 6, 192  # 2 blocks of 3 heads and 96 neurons
PARAMS_DENSE = 100_000

FIXTURE_CONFIG = {
    "download": False,
    "device": "cpu",
    "defaults": {
        "train": {"epochs": EPOCHS, "state0_epochs": STATE0_EPOCHS},
        "prune": {"states": STATES, "target_sparsity": 0.65},
    },
    "models": {
        MODEL: {
            "arch": "vit_tiny_patch16_224",
            "pretrained": False,
            "img_size": 32,
            "patch_size": 8,
            "kwargs": {"embed_dim": 48, "depth": 2, "num_heads": 3, "mlp_ratio": 2.0},
        }
    },
    "experiments": {
        "main": {"datasets": [DATASET], "models": [MODEL], "methods": ["dense", "refill", "rsst"], "seeds": [0]},
        "seeds": {"datasets": [DATASET], "models": [MODEL], "methods": ["refill"], "seeds": [1]},
    },
}

RUNS = [("main", "dense", 0), ("main", "refill", 0), ("seeds", "refill", 1), ("main", "rsst", 0)]
ANOMALY = ("main-cifar10-vit_s-refill-s0", 2)
NAN_EPOCH = ("main-cifar10-vit_s-rsst-s0", 1, 3)
DIVERGING = ("main-cifar10-vit_s-dense-s0", 3)
MISSING = ("main-cifar10-vit_s-rsst-s0", 3)
RUNNING_EPOCHS = 2


def name(group: str, method: str, seed: int) -> str:
    return f"{group}-{DATASET}-{MODEL}-{method}-s{seed}"


def _curve(method: str, seed: int, state: int, epoch: int, n: int) -> dict:
    """Deterministic, slightly wiggly metrics: accuracy climbs from the post-pruning level."""
    level = {"dense": 90.0, "refill": 88.0, "rsst": 87.0}[method] - 1.5 * state * (method != "dense")
    level += 0.7 * seed + 0.3 * math.sin(3 * state + epoch)
    after = level - (0 if state == 0 or method == "dense" else 8.0 + 2 * state)
    if state == 0:
        after = 10.0
    acc = level - (level - after) * math.exp(-epoch / 2.0)
    row = {
        "test_acc": acc,
        "val_acc": acc + 0.5 * math.cos(epoch + seed),
        "val_loss": 0.3 + 0.01 * epoch,
        "train_loss": None if epoch == 0 else 1.5 * math.exp(-epoch / 3.0) + 0.1,
        "train_acc": None if epoch == 0 else acc + 3.0 + 0.1 * epoch,
        "lr": 0.0 if epoch == 0 else 0.01,
        "reg_lambda": 0.0,
        "epoch_seconds": 0.0 if epoch == 0 else 10.0 + state + 0.5 * seed,
        "images_per_second": None if epoch == 0 else 4500.0 - 100 * state + 10 * epoch,
    }
    exp = name("main" if seed == 0 else "seeds", method, seed)
    if (exp, state) == ANOMALY:
        row["test_acc"] -= 30.0 * (epoch > 0)
        row["val_acc"] -= 30.0 * (epoch > 0)
    if (exp, state, epoch) == NAN_EPOCH:
        row["val_loss"] = None
    if (exp, state) == DIVERGING and epoch == n:
        row["train_loss"] = 5.0
    return row


def _cost(density: float) -> dict:
    def part(d):
        return {"params": int(PARAMS_DENSE * d), "params_attention": int(30_000 * d), "params_mlp": int(60_000 * d),
                "params_other": 10_000 - 0, "macs": int(2_000_000 * d)}  # fmt: skip

    compact = part(density)
    compact["params_other"] = 10_000
    compact["params"] = compact["params_attention"] + compact["params_mlp"] + compact["params_other"]
    dense = part(1.0)
    dense["params"] = 100_000
    return {"dense": dense, "compact": compact}


def write_results(root: Path, running: bool = True) -> Path:
    """Write the fixture tree under ``root/results``; returns that folder."""
    results = root / "results"
    for group, method, seed in RUNS:
        exp = name(group, method, seed)
        for state in range(STATES):
            n = STATE0_EPOCHS if state == 0 else EPOCHS
            density = 1.0 if method == "dense" else DENSITY[state]
            ids = {"experiment": exp, "method": method, "dataset": DATASET, "model": MODEL, "seed": seed,
                   "state": state}  # fmt: skip
            rows = []
            for epoch in range(n + 1):
                rows.append({**ids, "epoch": epoch, **_curve(method, seed, state, epoch, n), "density": density,
                             "params_alive": int(PARAMS_DENSE * density)})  # fmt: skip
            if (exp, state) == MISSING:
                if running:
                    rec = results / exp / "recovery" / f"state{state}"
                    rec.mkdir(parents=True)
                    text = "".join(json.dumps(r) + "\n" for r in rows[: RUNNING_EPOCHS + 1])
                    (rec / "metrics.jsonl").write_text(text)
                continue
            trained = rows[1:]
            best = max(trained, key=lambda r: r["val_acc"])
            summary = {
                **ids,
                "epoch": n,
                "epochs": n,
                "density": density,
                "best_epoch": best["epoch"],
                "best_val_acc": best["val_acc"],
                "best_test_acc": best["test_acc"],
                "final_val_acc": trained[-1]["val_acc"],
                "final_test_acc": trained[-1]["test_acc"],
                "max_test_acc": max(r["test_acc"] for r in trained),
                "acc_after_pruning": rows[0]["test_acc"],
                "params_dense": PARAMS_DENSE,
                "params_alive": int(PARAMS_DENSE * density),
                "kept": {
                    f"blocks.{b}": {"head": max(1, round(3 * density)), "neuron": round(96 * density)} for b in range(2)
                },  # fmt: skip
                "group_sizes": {f"blocks.{b}": {"head": 3, "neuron": 96} for b in range(2)},
                "model_spec": {"family": "vit"},
                "wall_seconds": 12.5 * n + state,
                "train_seconds": 10.0 * n,
                "images_per_second": sum(r["images_per_second"] for r in trained) / n,
                "device": "cuda:0" if method != "rsst" else "cpu",
                "device_name": "fixture",
                "threads": 4,
                "versions": {},
            }
            if state == 0 and method in ("dense", "refill"):  # trained once for both (share_state0)
                summary["shared_state0"] = f"results/shared/{group}-{DATASET}-{MODEL}-s{seed}/state0"
            if method == "refill" and seed == 0:
                summary["cost"] = _cost(density)
                summary["throughput"] = {
                    "device": "cuda:0",
                    "dense": {"1": 100.0, "32": 3000.0},
                    "compact": {"1": 100.0 / density**0.5, "32": 3000.0 / density},
                }
            out = results / exp / f"state{state}"
            out.mkdir(parents=True)
            (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return results


@pytest.fixture
def results_dir(tmp_path) -> Path:
    """The fixture results tree (with the running rsst state 3)."""
    return write_results(tmp_path)


@pytest.fixture
def fixture_plan():
    from prunebench.config import resolve_config
    from prunebench.report.load import plan_from_experiments

    return plan_from_experiments(resolve_config(copy.deepcopy(FIXTURE_CONFIG)).experiments)
