"""DeviceData serves every training image once per epoch, reproducibly, in the layout asked for."""

import pytest
import torch
import torch.nn.functional as F

from prunebench.data import DeviceData, load_dataset
from prunebench.data.batches import PAD_LABEL


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
    x, _, _ = next(data.eval_batches("test", 4))
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


def test_eval_batches_have_one_shape_and_shards_cover_each_split_once():
    s = splits()
    data = DeviceData(s, "cpu", augment=())
    n_val, n_test = len(s.val_y), len(s.test_y)
    batches = list(data.eval_batches(("val", "test"), 7))
    assert {b.x.shape[0] for b in batches} == {7}  # the leftover of each split is padded
    for split, n in (("val", n_val), ("test", n_test)):
        labels = torch.cat([b.y for b in batches if b.split == split])
        assert int((labels != PAD_LABEL).sum()) == n
        assert torch.equal(labels[labels != PAD_LABEL], getattr(s, f"{split}_y"))
    # two ranks: each image of a split in exactly one rank's share, in order
    shares = [torch.cat([b.y for b in data.eval_batches("val", 5, shard=(r, 2))]) for r in range(2)]
    joined = torch.cat([sh[sh != PAD_LABEL] for sh in shares])
    assert torch.equal(joined, s.val_y)


def test_evaluate_counts_no_padding_and_sums_over_shards():
    from prunebench.train.loop import evaluate

    s = splits()
    data = DeviceData(s, "cpu", augment=())
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    whole = evaluate(model, data, ("val", "test"), batch_size=len(s.val_y) + len(s.test_y), amp=False)
    odd = evaluate(model, data, ("val", "test"), batch_size=7, amp=False)
    total = torch.zeros(2, 3, dtype=torch.float64)

    def keep(sums):  # what an all-reduce over two ranks would give: the sum of both shares
        total.add_(sums)

    for r in range(2):
        evaluate(model, data, ("val", "test"), batch_size=5, amp=False, shard=(r, 2), reduce=keep)
    for split, i in (("val", 0), ("test", 1)):
        assert odd[split] == pytest.approx(whole[split])
        assert 100.0 * float(total[i, 1] / total[i, 2]) == pytest.approx(whole[split][1])
        assert float(total[i, 0] / total[i, 2]) == pytest.approx(whole[split][0], rel=1e-5)
