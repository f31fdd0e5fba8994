"""Batches served from device tensors: crop, flip, resize, normalise."""

import torch

from prunebench.data import DeviceData, load_dataset
from prunebench.data.loader import random_crop, random_flip


def test_crop_is_a_shift_within_the_padding():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_flip_mirrors_about_half_the_images():
    x = torch.rand(400, 3, 4, 4)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert (flipped | kept).all() and 150 < int(flipped.sum()) < 250


def test_batches_are_normalised_resized_and_seeded():
    splits = load_dataset("synthetic", train_limit=100)
    data = DeviceData(splits, "cpu", img_size=48)
    a = list(data.train_batches(32, torch.Generator().manual_seed(3)))
    b = list(data.train_batches(32, torch.Generator().manual_seed(3)))
    assert len(a) == 3 and all(x.shape == (32, 3, 48, 48) and x.dtype == torch.float32 for x, _ in a)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    x, _, _ = next(data.eval_batches("train", 1000, pad=False))
    assert abs(float(x.mean())) < 0.2 and 0.7 < float(x.std()) < 1.3
