"""Datasets: CIFAR through the real torchvision loader, digits, synthetic, and clear errors."""

import urllib.error

import pytest
import torch
from torchvision import datasets

from prunebench.data import load_dataset
from prunebench.errors import DataError
from tests.unit.data.cifar_files import write_cifar


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    """CIFAR-10 files the test wrote; torchvision's checksums are pointed at them."""
    cls, md5, files = write_cifar(tmp_path / "data")
    monkeypatch.setattr(cls, "train_list", [[f, md5[f]] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, md5[f]] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5[cls.meta["filename"]]})
    return tmp_path / "data", files


def test_cifar_is_read_through_torchvision_into_uint8_splits(fake_cifar):
    root, files = fake_cifar
    splits = load_dataset("cifar10", str(root), download=False, val_size=20)
    assert splits.sizes() == {"train": 180, "val": 20, "test": 50}
    assert splits.train_x.dtype == torch.uint8 and splits.train_x.shape[1:] == (3, 32, 32)
    # the test images are the rows we wrote, decoded as 3x32x32 in channel-first order
    first = files["test_batch"]["data"][0].reshape(3, 32, 32)
    assert torch.equal(splits.test_x[0], torch.from_numpy(first))
    assert splits.test_y.tolist() == files["test_batch"]["labels"]
    assert splits.num_classes == 10


def test_train_val_split_is_fixed_by_split_seed(fake_cifar):
    root, _ = fake_cifar
    a = load_dataset("cifar10", str(root), download=False, val_size=20, split_seed=0)
    b = load_dataset("cifar10", str(root), download=False, val_size=20, split_seed=0)
    c = load_dataset("cifar10", str(root), download=False, val_size=20, split_seed=1)
    assert torch.equal(a.val_x, b.val_x) and not torch.equal(a.val_x, c.val_x)


def test_missing_cifar_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("cifar100", str(tmp_path / "nowhere"), download=False)
    msg = str(info.value)
    assert "CIFAR-100 not found" in msg and "nowhere/cifar-100-python" in msg
    assert "download: true" in msg and "https://www.cs.toronto.edu/~kriz/cifar.html" in msg
    assert not (tmp_path / "nowhere").exists()  # data_dir is only created to download into


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    def offline(self):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(datasets.CIFAR10, "download", offline)
    with pytest.raises(DataError, match="could not be downloaded .*network unreachable") as info:
        load_dataset("cifar10", str(tmp_path), download=True)
    # offline, with download already true and no folder yet: nothing to delete, no download: true to set
    assert "Delete" not in str(info.value) and "download: true" not in str(info.value)
    assert "prunebench prepare --config CONFIG" in str(info.value) and "internet" in str(info.value)


def test_corrupt_cifar_is_named(fake_cifar):
    root, _ = fake_cifar
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="is incomplete or corrupted") as info:
        load_dataset("cifar10", str(root), download=False, val_size=20)
    assert f"Delete {root / 'cifar-10-batches-py'}/" in str(info.value)
    assert "again with download: true" in str(info.value)


def test_corrupt_cifar_with_download_already_true_asks_only_to_delete_it(fake_cifar, monkeypatch):
    root, _ = fake_cifar
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")

    def offline(self):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(datasets.CIFAR10, "download", offline)
    with pytest.raises(DataError, match="is incomplete or corrupted") as info:
        load_dataset("cifar10", str(root), download=True, val_size=20)
    assert f"Delete {root / 'cifar-10-batches-py'}/" in str(info.value)
    assert "download is already true" in str(info.value) and "with download: true" not in str(info.value)


def test_digits_are_upscaled_rgb_and_split_70_10_20():
    splits = load_dataset("digits")
    sizes = splits.sizes()
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 359 and sizes["val"] == 180
    assert splits.train_x.shape[1:] == (3, 32, 32) and splits.train_x.dtype == torch.uint8
    assert torch.equal(splits.train_x[:, 0], splits.train_x[:, 2])  # grey replicated to RGB
    assert splits.train_x.max() > 200 and splits.num_classes == 10


def test_synthetic_and_unknown_dataset():
    splits = load_dataset("synthetic", train_limit=64)
    assert splits.sizes()["train"] == 64 and splits.num_classes == 10
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
