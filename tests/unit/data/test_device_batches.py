"""DeviceData serves every training image once per epoch, reproducibly, in the layout asked for."""

import torch
import torch.nn.functional as F

from prunebench.data import DeviceData, load_dataset


def splits():
    return load_dataset("synthetic", train_limit=100)


def labels_seen(data, seed, batch=16):
    return [y for _, y in data.train_batches(batch, torch.Generator().manual_seed(seed))]


def test_an_epoch_draws_each_image_at_most_once_and_drops_only_the_last_partial_batch():
    s = splits()
    data = DeviceData(s, "cpu", augment=())
    batches = list(data.train_batches(16, torch.Generator().manual_seed(0)))
    assert len(batches) == data.steps_per_epoch(16) == 6  # 100 images: 6 full batches of 16
    xs = torch.cat([x for x, _ in batches])
    # Without augmentation every served image is a distinct training image.
    ref = data._prepare(data.x["train"])
    matches = [(ref == x).flatten(1).all(1).nonzero().flatten().tolist() for x in xs]
    assert all(len(m) == 1 for m in matches) and len({m[0] for m in matches}) == 96


def test_seed_fixes_the_order_and_the_augmentation_and_another_seed_changes_them():
    data = DeviceData(splits(), "cpu")
    a = list(data.train_batches(32, torch.Generator().manual_seed(1)))
    b = list(data.train_batches(32, torch.Generator().manual_seed(1)))
    c = list(data.train_batches(32, torch.Generator().manual_seed(2)))
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_resize_to_224_happens_after_the_crop_on_the_normalised_batch():
    s = splits()
    data = DeviceData(s, "cpu", img_size=224, augment=())
    x, _ = next(data.eval_batches("test", 4))
    assert x.shape == (4, 3, 224, 224)
    small = DeviceData(s, "cpu", augment=())._prepare(s.test_x[:4])
    expect = F.interpolate(small, size=(224, 224), mode="bilinear", align_corners=False)
    assert torch.allclose(x, expect, atol=1e-5)


def test_channels_last_batches_give_the_same_values_in_nhwc_layout():
    s = splits()
    plain = next(DeviceData(s, "cpu").eval_batches("val", 8))[0]
    nhwc = next(DeviceData(s, "cpu", channels_last=True).eval_batches("val", 8))[0]
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and not plain.is_contiguous(
        memory_format=torch.channels_last
    )
    assert torch.equal(plain, nhwc)
