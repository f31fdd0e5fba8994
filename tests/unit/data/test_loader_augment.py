"""On-device augmentation does what torchvision's RandomCrop(padding) + RandomHorizontalFlip do."""

import torch
import torch.nn.functional as F
from torchvision.transforms import functional as TF

from prunebench.data.loader import random_crop, random_flip


def offsets_of(out: torch.Tensor, x: torch.Tensor, padding: int) -> list[tuple[int, int]]:
    """The (top, left) offset into the zero-padded image that each output image was cut from."""
    size = x.shape[-1]
    padded = F.pad(x, (padding,) * 4)
    found = []
    for o, p in zip(out, padded):
        hits = [
            (dy, dx)
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
            if torch.equal(o, p[:, dy : dy + size, dx : dx + size])
        ]
        assert hits, "a crop is not a window of the padded image"
        found.append(hits[0])
    return found


def test_crops_match_torchvision_and_cover_every_offset_within_the_padding():
    # Distinct pixel values so that each window is unique and its offset identifiable.
    x = torch.randperm(256, generator=torch.Generator().manual_seed(0))[: 3 * 6 * 6].to(torch.uint8)
    x = x.view(1, 3, 6, 6).expand(300, -1, -1, -1).contiguous()
    out = random_crop(x, 2, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    offs = offsets_of(out, x, 2)
    assert set(offs) == {(dy, dx) for dy in range(5) for dx in range(5)}  # all 25, none outside
    for o, img, (dy, dx) in zip(out[:10], x[:10], offs[:10]):
        ref = TF.crop(TF.pad(img, 2), dy, dx, 6, 6)  # torchvision's RandomCrop at that offset
        assert torch.equal(o, ref)


def test_each_image_of_a_batch_gets_its_own_offset_and_no_padding_means_no_crop():
    x = torch.randint(1, 255, (64, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    offs = offsets_of(random_crop(x, 4, torch.Generator().manual_seed(3)), x, 4)
    assert len(set(offs)) > 20
    assert torch.equal(random_crop(x, 0, torch.Generator()), x)


def test_flip_is_per_image_and_keeps_channels_together():
    x = torch.randint(0, 255, (200, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    out = random_flip(x, torch.Generator().manual_seed(5))
    flipped = torch.tensor([torch.equal(o, TF.hflip(i)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert (flipped ^ kept).all()  # every image is exactly one of the two, all 3 channels alike
    assert 60 < int(flipped.sum()) < 140


def test_same_generator_seed_same_augmentation():
    x = torch.randint(0, 255, (32, 3, 8, 8), dtype=torch.uint8)
    a = random_flip(random_crop(x, 4, g := torch.Generator().manual_seed(9)), g)
    b = random_flip(random_crop(x, 4, h := torch.Generator().manual_seed(9)), h)
    assert torch.equal(a, b)
