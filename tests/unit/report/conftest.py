"""A results tree of metrics.jsonl and summary.json files with known defects, written by code.

cifar10 x vit_s, 4 planned states (state 0: 12 epochs, pruned states: 6):
- main-...-dense-s0: complete; its state 3 training loss diverges at the last epoch.
- main-...-refill-s0: complete, with `cost` and `throughput` in every summary; state 2 is an
  anomaly (its final accuracy is ~30 points below its neighbours).
- seeds-...-refill-s1: complete, a second seed of refill.
- main-...-rsst-s0: state 3 is missing (still running: 2 epochs in its recovery folder); epoch 3
  of state 1 has a NaN validation loss (null in the file, as prunebench writes NaN); its pruned
  states carry the `rsst` mask-damage field.
- shared/main-...-s0 and shared/seeds-...-s1: the dense references (the shared state 0 runs), with
  accuracies of their own (DENSE_REFERENCE), unlike the fixture's state 0 copies, so a report that
  took a state 0 of a method as reference would show.
Every summary has `test_size` (TEST_SIZE, seed 1 through `data_sizes`) and `cost`; refill's have a
`budget` (in MACs) and its seed 0 `throughput` with the per-pass figures.

write_cnn_results: a CNN comparison whose group has Refill and REPrune; REPrune's state 0 is pruned
(density 0.5) and carries `event_epochs`; the dense reference is the shared run.
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
TEST_SIZE = 359
DENSE_REFERENCE = {0: (91.5, 91.2), 1: (90.4, 90.9)}  # seed: (best, final) of the shared dense state 0
RSST_UNMASKED = 86.0  # test accuracy before RSST's hard mask; after it: the state's epoch-0-free final

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
        "seeds": {
            "datasets": [DATASET],
            "models": [MODEL],
            "methods": ["refill"],
            "seeds": [1],
            "dense_control": False,
        },
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
            summary["cost"] = _cost(density)
            if seed == 0:
                summary["test_size"] = TEST_SIZE
            else:
                summary["data_sizes"] = {"train": 1000, "val": 100, "test": TEST_SIZE}
            if method == "refill":
                summary["budget"] = {"kind": "macs", "target": DENSITY[state] - 0.01 * state}
            if method == "rsst" and state >= 1:
                summary["rsst"] = {"mask_epoch": n, "unmasked": {"val_acc": RSST_UNMASKED + 1, "test_acc": RSST_UNMASKED},
                                   "masked": {"val_acc": trained[-1]["val_acc"], "test_acc": trained[-1]["test_acc"]},
                                   "penalized_norm_ratio": 0.1 / state}  # fmt: skip
            if method == "refill" and seed == 0:
                summary["throughput"] = {
                    "device": "cuda:0",
                    "dense": {"1": 100.0, "32": 3000.0},
                    "compact": {"1": 100.0 / density**0.5, "32": 3000.0 / density},
                    "passes": {
                        "dense": {"1": [100.0, 90.0, 95.0], "32": [3000.0, 2900.0, 2950.0]},
                        "compact": {"1": [100.0 / density**0.5, 80.0, 99.0], "32": [3000.0 / density, 2000.0, 2500.0]},
                    },
                }
                if state >= 2:  # measure.compile timed these states compiled as well
                    summary["throughput"]["compiled"] = {
                        "mode": "compiled",
                        "dense": {"1": 400.0, "32": 9000.0},
                        "compact": {"1": 700.0, "32": 9000.0 / density**0.9},
                        "passes": {
                            "dense": {"1": [400.0, 390.0], "32": [9000.0, 8000.0]},
                            "compact": {"1": [700.0, 500.0], "32": [9000.0 / density**0.9, 7000.0]},
                        },
                    }
            out = results / exp / f"state{state}"
            out.mkdir(parents=True)
            (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for group, seed in (("main", 0), ("seeds", 1)):
        run = f"{group}-{DATASET}-{MODEL}-s{seed}"
        best, final = DENSE_REFERENCE[seed]
        _write_reference(results, run, DATASET, MODEL, seed, best, final, _cost(1.0))
    return results


def _write_reference(results: Path, run: str, dataset: str, model: str, seed: int, best: float, final: float,
                     cost: dict) -> None:  # fmt: skip
    """The summary of a shared dense state 0 (results/shared/{run}/state0), as train-state writes it."""
    out = results / "shared" / run / "state0"
    out.mkdir(parents=True)
    summary = {"experiment": run, "method": "dense", "dataset": dataset, "model": model, "seed": seed, "state": 0,
               "epochs": STATE0_EPOCHS, "density": 1.0, "best_test_acc": best, "final_test_acc": final,
               "test_size": TEST_SIZE, "cost": cost, "params_dense": cost["dense"]["params"],
               "device": "cpu", "wall_seconds": 1.0}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "metrics.jsonl").write_text("")


CNN = ("cifar10", "resnet_t")
CNN_REFERENCE = (93.0, 92.5)  # best, final of the shared dense state 0 of group cnn
CNN_MACS = 1_000_000
# method: per state (final acc, MACs kept fraction, event epochs)
CNN_RUNS = {
    "refill": [(92.0, 1.0, []), (91.0, 0.6, []), (89.0, 0.4, [])],
    "reprune": [(63.0, 0.5, [1, 3]), (90.0, 0.45, [2]), (88.0, 0.35, [])],
}


def write_cnn_results(root: Path) -> Path:
    """A CNN comparison: Refill (its state 0 a copy of the dense reference... with its own numbers,
    to tell them apart) and REPrune (pruned already in state 0), and the shared dense reference."""
    results = root / "results"
    dataset, model = CNN
    for method, states in CNN_RUNS.items():
        exp = f"cnn-{dataset}-{model}-{method}-s0"
        for state, (final, kept, events) in enumerate(states):
            ids = {"experiment": exp, "method": method, "dataset": dataset, "model": model, "seed": 0, "state": state}
            out = results / exp / f"state{state}"
            out.mkdir(parents=True)
            rows = [{**ids, "epoch": e, "test_acc": final - 2 + e, "val_acc": final - 2 + e, "val_loss": 0.5,
                     "train_loss": None if e == 0 else 0.5, "train_acc": None if e == 0 else final,
                     "density": kept} for e in range(3)]  # fmt: skip
            (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            cost = {"dense": {"macs": CNN_MACS, "params": 10_000},
                    "compact": {"macs": int(CNN_MACS * kept), "params": int(10_000 * kept)}}  # fmt: skip
            summary = {**ids, "epochs": 2, "best_epoch": 2, "best_test_acc": final, "final_test_acc": final,
                       "density": kept, "test_size": TEST_SIZE, "cost": cost, "event_epochs": events,
                       "kept": {"layer1": {"channel": round(16 * kept)}}, "group_sizes": {"layer1": {"channel": 16}},
                       "params_dense": 10_000, "params_alive": int(10_000 * kept), "device": "cpu",
                       "wall_seconds": 1.0}  # fmt: skip
            if state == 0 and method != "reprune":
                summary["shared_state0"] = f"results/shared/cnn-{dataset}-{model}-s0/state0"
            (out / "summary.json").write_text(json.dumps(summary))
    cost = {"dense": {"macs": CNN_MACS, "params": 10_000}, "compact": {"macs": CNN_MACS, "params": 10_000}}
    _write_reference(results, f"cnn-{dataset}-{model}-s0", dataset, model, 0, *CNN_REFERENCE, cost)
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
