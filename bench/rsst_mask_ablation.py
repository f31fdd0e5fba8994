"""RSST's mask damage against where lambda peaks (``rsst.peak_at``) and the optimizer.

On the demo's ViT (config/demo.yaml, digits), state 0 trains once (dense, the demo's settings);
then state 1 of RSST runs once per peak_at x optimizer from that same state 0: AdamW as in the
demo, and SGD as in the reference config.yaml (its lr, momentum, weight decay). Each run reports
the accuracy of the unmasked model just before the hard mask, of the masked model just after, and
the state's final and best accuracy. Raw figures go to a JSON file, a Markdown table to stdout.

    PYTHONPATH=src python bench/rsst_mask_ablation.py [--peaks 1.0 0.75 0.5] [--optimizers adamw sgd] \
        [--threads 1] [--out bench/results/rsst_mask_ablation.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
import time
from pathlib import Path

import torch

from prunebench.config import load_config_file, resolve_config
from prunebench.io import atomic_write_json
from prunebench.results.layout import StatePaths
from prunebench.train.job import train_state

REPO = Path(__file__).resolve().parents[1]
OPTIMIZER_KEYS = ("optimizer", "lr", "momentum", "nesterov", "weight_decay")


def variant(experiment: dict, optimizer: str, peak_at: float, reference_train: dict) -> dict:
    """The experiment with state 1 trained by ``optimizer`` (adamw: the demo's; sgd: the reference's) at ``peak_at``."""
    exp = copy.deepcopy(experiment)
    if optimizer == "sgd":
        exp["train"].update({k: reference_train[k] for k in OPTIMIZER_KEYS if k in reference_train})
    exp["train"]["optimizer"] = optimizer
    exp["rsst"]["peak_at"] = peak_at
    return exp


def trained(experiment: dict, state: int, paths: StatePaths, args) -> dict:
    """The state's summary: trained now, or read back from a finished run in the same --workdir."""
    done = paths.out_dir / "summary.json"
    if args.workdir and done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    return train_state(
        experiment, state, paths, data_dir=args.data_dir, download=False, device="cpu", threads=args.threads
    )


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    config = load_config_file(args.config)
    config["defaults"].setdefault("measure", {})["enabled"] = False  # timings are not the point here
    resolved = resolve_config(config)
    experiment = next(e for e in resolved.experiments.values() if e["group"] == args.group and e["method"] == "rsst")
    reference_train = {**load_config_file(REPO / "config.yaml")["defaults"]["train"], "nesterov": False}
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rsst_ablation_"))
    state0 = StatePaths(work / "state0", work / "recovery0")
    start = time.time()
    s0 = trained(experiment, 0, state0, args)
    runs = []
    for optimizer in args.optimizers:
        for peak in args.peaks:
            exp = variant(experiment, optimizer, peak, reference_train)
            folder = work / f"{optimizer}-peak{peak}"
            paths = StatePaths(folder / "state1", folder / "recovery1", state0.out_dir / "last.pt")
            s1 = trained(exp, 1, paths, args)
            r = s1["rsst"]
            runs.append({
                "optimizer": optimizer, "peak_at": peak, "train": {k: exp["train"][k] for k in OPTIMIZER_KEYS},
                "mask_epoch": r["mask_epoch"], "epochs": s1["epochs"],
                "unmasked": r["unmasked"], "masked": r["masked"],
                "damage_test": r["unmasked"]["test_acc"] - r["masked"]["test_acc"],
                "damage_val": r["unmasked"]["val_acc"] - r["masked"]["val_acc"],
                "penalized_norm_ratio": r["penalized_norm_ratio"],
                "final_test_acc": s1["final_test_acc"], "best_test_acc": s1["best_test_acc"],
                "best_epoch": s1["best_epoch"], "density": s1["density"], "seconds": s1["wall_seconds"],
            })  # fmt: skip
    return {
        "experiment": experiment["name"],
        "config": str(args.config),
        "state0": {"final_test_acc": s0["final_test_acc"], "epochs": s0["epochs"], "optimizer": "demo's"},
        "state1_epochs": experiment["train"]["epochs"],
        "threads": args.threads,
        "seconds": time.time() - start,
        "versions": s0["versions"],
        "runs": runs,
    }


def table(result: dict) -> str:
    lines = [
        "| optimizer | peak_at | mask epoch | unmasked test | masked test | damage (test pts) | "
        "penalised norm at mask | final test | best test |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['optimizer']} | {r['peak_at']:g} | {r['mask_epoch']}/{r['epochs']} | {r['unmasked']['test_acc']:.2f} "
            f"| {r['masked']['test_acc']:.2f} | {r['damage_test']:.2f} | {r['penalized_norm_ratio']:.3f} "
            f"| {r['final_test_acc']:.2f} | {r['best_test_acc']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "config/demo.yaml")
    parser.add_argument("--group", default="demo", help="the config's experiment group with rsst")
    parser.add_argument("--peaks", nargs="+", type=float, default=[1.0, 0.75, 0.5])
    parser.add_argument("--optimizers", nargs="+", choices=["adamw", "sgd"], default=["adamw", "sgd"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument(
        "--workdir", help="where the states are trained (default: a temporary folder); finished states there are reused"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/rsst_mask_ablation.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    atomic_write_json(args.out, result)
    print(f"{result['experiment']}: state 0 final test {result['state0']['final_test_acc']:.2f}; "
          f"state 1 of {result['state1_epochs']} epochs per run; {result['seconds']:.0f} s on {args.threads} thread(s)")  # fmt: skip
    print(table(result))


if __name__ == "__main__":
    main()
