"""Cost budgets: how close each state of a chain gets to its target, and how long choosing takes.

    PYTHONPATH=src python bench/bench_budget.py                       # the three setups below
    PYTHONPATH=src python bench/bench_budget.py --setups resnet56 --states 10 --sparsity 0.6038

Random-init weights (the widths are what cost counts). Every state's reached cost is counted on the
physically slimmed model (export.compact + models.cost), the way a state's summary.json counts it.
"""

from __future__ import annotations

import argparse
import time

import torch

from prunebench.export.compact import compact_model
from prunebench.models import build_model, model_spec
from prunebench.models.cost import model_cost
from prunebench.pruning.budget import choose_masks
from prunebench.pruning.groups import full_masks, groupsets_of

SETUPS = {
    "demo_cnn": ({"arch": "small_cnn", "kwargs": {"widths": [16, 32, 64]}}, ["channels"]),
    "resnet56": ({"arch": "resnet56"}, ["channels"]),
    "vit_small_224": ({"arch": "vit_small_patch16_224", "img_size": 224, "patch_size": 16}, ["heads", "neurons"]),
}


def run(key: str, states: int, sparsity: float, budget: str, ranking: str, count_every: bool) -> None:
    cfg, kinds = SETUPS[key]
    torch.manual_seed(0)
    spec = model_spec(cfg, 10)
    model = build_model(spec).eval()
    groupsets = groupsets_of(model, kinds)
    prune = {"states": states, "target_sparsity": sparsity, "schedule": "geometric", "importance": "l1"}
    prune.update(budget=budget, ranking=ranking)
    dense = model_cost(model, spec)
    masks = full_masks(groupsets)
    print(f"\n{key}: budget {budget}, ranking {ranking}, {states} states, target sparsity {sparsity}")
    print("| state | target kept | reached kept | reached - target | choose_masks s |")
    print("|---|---|---|---|---|")
    for k in range(1, states):
        start = time.perf_counter()
        target, masks = choose_masks(model, groupsets, masks, prune, k)
        seconds = time.perf_counter() - start
        if count_every or k == states - 1:
            if budget == "groups":
                reached = sum(int(m.sum()) for m in masks.values()) / sum(gs.size for gs in groupsets)
            else:
                reached = model_cost(compact_model(model, spec, masks)[0], spec)[budget] / dense[budget]
            print(f"| {k} | {target:.4%} | {reached:.4%} | {reached - target:+.4%} | {seconds:.2f} |", flush=True)
        else:
            print(f"| {k} | {target:.4%} | (not counted) | | {seconds:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--states", type=int, default=10)
    parser.add_argument("--sparsity", type=float, default=0.6038)
    parser.add_argument("--budget", default="macs", choices=["groups", "params", "macs"])
    parser.add_argument("--ranking", default="global", choices=["layerwise", "global", "mixed"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for key in args.setups:
        run(key, args.states, args.sparsity, args.budget, args.ranking, count_every=not key.startswith("vit"))


if __name__ == "__main__":
    main()
