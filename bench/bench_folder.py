"""Image-folder decoding: training images per second that torchvision workers deliver (no model).

Writes ``--images`` JPEGs of ImageNet's typical size (500 x 375, quality 90, smooth content plus noise, so
that files weigh about what ImageNet's do)
into a temporary folder of 10 classes, then times ``FolderData.train_batches`` (decode, RandomResizedCrop
to 224, flip, uint8 batches; normalisation on the CPU here) for each ``--workers`` count, ``--rounds``
epochs each after one warm-up epoch, interleaved. The clock is wall time: on a shared machine, run it
when the machine is quiet. Per-core figures come from ``--workers 0`` (decoding in the main process).

    PYTHONPATH=src python bench/bench_folder.py --images 256 --workers 0 2 --rounds 3 \
        --json bench/results/folder_cpu.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from prunebench.data.folder import FolderData, scan_folder
from prunebench.io import atomic_write_json


def write_images(root: Path, n: int, classes: int = 10) -> None:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for i in range(n):
        folder = root / "train" / f"c{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = torch.rand(1, 3, 12, 16, generator=g)
        img = F.interpolate(coarse, size=(375, 500), mode="bicubic", align_corners=False)[0]
        img = (img + 0.12 * torch.randn(img.shape, generator=g)).clamp(0, 1).mul(255).byte()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i}.jpg", quality=90)
    for c in range(classes):  # a val/ split, as the layout requires
        (root / "val" / f"c{c}").mkdir(parents=True, exist_ok=True)
        (root / "val" / f"c{c}" / "0.jpg").write_bytes(next((root / "train" / f"c{c}").iterdir()).read_bytes())


def epoch_rate(data: FolderData, batch: int, seed: int) -> float:
    started = time.perf_counter()
    n = sum(len(y) for _, y in data.train_batches(batch, torch.Generator().manual_seed(seed)))
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_images(root, args.images)
        splits = scan_folder("bench", root)
        kb = statistics.mean(os.path.getsize(p) for p, _ in splits.samples["train"]) / 1024
        sources = {w: FolderData(splits, torch.device("cpu"), 224, workers=w) for w in args.workers}
        for data in sources.values():
            epoch_rate(data, args.batch, 0)  # warm-up: worker start, file cache
        rates: dict[int, list[float]] = {w: [] for w in args.workers}
        for r in range(args.rounds):
            order = args.workers[r % len(args.workers) :] + args.workers[: r % len(args.workers)]
            for w in order:
                rates[w].append(epoch_rate(sources[w], args.batch, r + 1))
    result = {
        "images": args.images, "batch": args.batch, "image_size": [375, 500], "crop": 224, "mean_kb": round(kb, 1),
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "images_per_second": {str(w): statistics.median(v) for w, v in rates.items()},
        "rounds": {str(w): v for w, v in rates.items()},
    }  # fmt: skip
    print(f"{args.images} JPEGs of 500 x 375, {kb:.0f} KB on average (ImageNet's: about 110 KB)")
    for w, v in rates.items():
        print(f"workers {w}: {statistics.median(v):.0f} images/s (median of {len(v)} epochs of {args.images})")
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
