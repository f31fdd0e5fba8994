"""WebDataset-style tar shards: the same images, batches and errors as the class folders they were made from."""

import io
import tarfile
from pathlib import Path

import pytest
import torch

from prunebench.data import FolderData, scan_folder
from prunebench.errors import DataError
from tests.conftest import write_image_folder


def write_shards(folder, out, per_shard=5):
    """The class folders of ``folder`` as tar shards in ``out`` (samples <split>/<n>.jpg + <n>.cls)."""
    splits = scan_folder("src", folder)
    for split in ("train", "val"):
        (out / split).mkdir(parents=True)
        samples = splits.samples[split]
        for s in range(0, len(samples), per_shard):
            with tarfile.open(out / split / f"shard-{s // per_shard:06d}.tar", "w") as tf:
                for i, (path, label) in enumerate(samples[s : s + per_shard], start=s):
                    for name, data in ((f"s{i:05d}.jpg", Path(path).read_bytes()), (f"s{i:05d}.cls", b"%d" % label)):
                        info = tarfile.TarInfo(name)
                        info.size = len(data)
                        tf.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    base = tmp_path_factory.mktemp("shards")
    folder = write_image_folder(base / "folder", classes=3, train=4, val=2)
    return folder, write_shards(folder, base / "shards")


def test_shards_give_the_batches_of_the_folder_they_were_made_from(both):
    folder, shards = both
    a = scan_folder("tiny", folder)
    b = scan_folder("tiny", shards, kind="webdataset")
    assert b.num_classes == 3 and b.sizes() == a.sizes() == {"train": 12, "val": 6, "test": 6}
    da = FolderData(a, torch.device("cpu"), img_size=24, workers=0)
    db = FolderData(b, torch.device("cpu"), img_size=24, workers=1)
    for (xa, ya), (xb, yb) in zip(da.train_batches(4, torch.Generator().manual_seed(1)),
                                  db.train_batches(4, torch.Generator().manual_seed(1)), strict=True):  # fmt: skip
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    for ea, eb in zip(da.eval_batches(("val", "test"), 4), db.eval_batches(("val", "test"), 4), strict=True):
        assert ea.split == eb.split and torch.equal(ea.x, eb.x) and torch.equal(ea.y, eb.y)


def test_open_dataset_reads_shards_for_a_webdataset_source(both):
    from prunebench.data import make_data, open_dataset

    _, shards = both
    experiment = {
        "dataset": "tiny",
        "data": {"val_size": None, "train_limit": None, "split_seed": 0},
        "train": {"augment": ["crop", "flip"], "crop_padding": 4},
        "dataset_source": {"kind": "webdataset", "root": str(shards), "loader": "torchvision", "workers": 0},
    }
    data = make_data(open_dataset(experiment), experiment, torch.device("cpu"), 16)
    assert len(data) == 12 and data.splits.num_classes == 3


def test_bad_shards_are_one_error_naming_the_shard_and_the_fix(both, tmp_path):
    _, shards = both
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "train" / "a.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"holds no \.tar shards \(compressed shards such as a\.tar\.gz"):
        scan_folder("w", tmp_path / "empty", kind="webdataset")
    with tarfile.open(tmp_path / "x.tar", "w") as tf:
        info = tarfile.TarInfo("k1.jpg")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    (tmp_path / "nolabel" / "train").mkdir(parents=True)
    (tmp_path / "x.tar").rename(tmp_path / "nolabel" / "train" / "x.tar")
    with pytest.raises(DataError, match=r"sample 'k1' of .*x\.tar has an image but no \.cls member.*k1\.cls"):
        scan_folder("w", tmp_path / "nolabel", kind="webdataset")
    (tmp_path / "broken" / "train").mkdir(parents=True)
    (tmp_path / "broken" / "train" / "b.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(DataError, match=r"cannot read shard .*b\.tar"):
        scan_folder("w", tmp_path / "broken", kind="webdataset")
