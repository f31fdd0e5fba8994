"""Time one REPrune pruning event (BN threshold, clustering, coverage) on CIFAR ResNets.

    PYTHONPATH=src python bench/reprune_event.py [--archs resnet56 resnet18] [--threads 1]

The weights are random (kaiming init, BN gammas jittered), so the timings, not the masks, are the
point: an event is CPU work between two training epochs, whatever device trains the model.
"""

from __future__ import annotations

import argparse
import time

import torch

from prunebench.models import build_model, model_spec
from prunebench.pruning.groups import full_masks, groupsets_of
from prunebench.pruning.representatives import LINKAGES, REPruneRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet56", "resnet18"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("| model | linkage | budget | event seconds | channels kept | mean coverage |")
    print("|---|---|---|---|---|---|")
    for arch in args.archs:
        model = build_model(model_spec({"arch": arch}, 10))
        with torch.no_grad():
            for _, bn, _ in model.channel_chain():
                model.get_submodule(bn).weight.uniform_(0.2, 1.0)
        groupsets = groupsets_of(model, ["channels"])
        for linkage in LINKAGES:
            experiment = {
                "name": arch, "model": {"arch": arch},
                "train": {"epochs": 10, "state0_epochs": None},
                "prune": {"states": 1, "target_sparsity": 0.6038, "groups": ["channels"], "budget": "macs"},
                "reprune": {"interval_epochs": 1, "prune_until": 1.0, "linkage": linkage,
                            "ramp": "linear", "min_layer_density": 0.0, "regrowth": 0.0},
            }  # fmt: skip
            run = REPruneRun(experiment, groupsets)
            start = time.perf_counter()
            masks, stats = run.prune(model, full_masks(groupsets), run.event_starts[-1], 32)
            seconds = time.perf_counter() - start
            kept = sum(int(m.sum()) for m in masks.values())
            total = sum(m.numel() for m in masks.values())
            print(f"| {arch} | {linkage} | 60.38 % MACs | {seconds:.2f} | {kept}/{total} | {stats['coverage']:.3f} |")


if __name__ == "__main__":
    main()
