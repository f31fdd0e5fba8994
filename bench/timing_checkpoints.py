"""Two state checkpoints of a demo-size ViT to time with `prunebench export --throughput`.

The ViT of config/demo.yaml (vit_digits: embed 96, depth 4, 3 heads, 32 px, patch 4), untrained:
``OUT/state3/last.pt`` with one head of three and half of the MLP neurons of every block masked,
``OUT/state0/last.pt`` with nothing masked (a dense state 0: its compact model is its dense model).

    PYTHONPATH=src python bench/timing_checkpoints.py /tmp/timing
    prunebench export /tmp/timing/state3/last.pt /tmp/timing/out/model.pt --throughput
"""

import argparse
from pathlib import Path

import torch

from prunebench.models import build_model, model_spec
from prunebench.pruning.groups import groupsets_of
from prunebench.train.checkpoint import make_checkpoint, save_checkpoint

VIT = {
    "arch": "vit_tiny_patch16_224",
    "img_size": 32,
    "patch_size": 4,
    "kwargs": {"embed_dim": 96, "depth": 4, "num_heads": 3},
}


def main(out: Path) -> None:
    torch.manual_seed(0)
    spec = model_spec(VIT, 10)
    model = build_model(spec)
    half = {gs.name: torch.arange(gs.size) < (gs.size // 2 if gs.kind == "neuron" else 2) for gs in groupsets_of(model)}
    for state, masks, method in ((0, {}, "dense"), (3, half, "refill")):
        ckpt = make_checkpoint(experiment={"name": "vit-demo-size", "method": method}, model_spec=spec, model=model,
                               masks=masks, state=state, epoch=5, metrics={})  # fmt: skip
        save_checkpoint(out / f"state{state}" / "last.pt", ckpt)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    main(p.parse_args().out)
