"""Image folders streamed by torchvision workers: layout checks, shapes, seeded augmentation, shards."""

import pytest
import torch

from prunebench.data import FolderData, choose_loader, make_data, open_dataset, scan_folder
from prunebench.data.batches import PAD_LABEL
from prunebench.data.folder import CROP_RATIO, crop_box
from prunebench.errors import DataError
from tests.conftest import write_image_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imgs"), classes=3, train=4, val=2)


def _data(folder, **kw):
    return FolderData(scan_folder("tiny", folder), torch.device("cpu"), img_size=24, workers=0, **kw)


def test_scan_finds_classes_and_uses_val_as_test_without_a_test_split(folder):
    splits = scan_folder("tiny", folder)
    assert splits.classes == ["class_0", "class_1", "class_2"] and splits.num_classes == 3
    assert splits.sizes() == {"train": 12, "val": 6, "test": 6}
    assert splits.samples["test"] == splits.samples["val"]
    assert sorted({label for _, label in splits.samples["train"]}) == [0, 1, 2]


def test_val_size_holds_out_training_images_and_tests_on_val(folder):
    splits = scan_folder("tiny", folder, val_size=3, train_limit=5, split_seed=1)
    assert splits.sizes() == {"train": 5, "val": 3, "test": 6}
    assert not set(splits.samples["val"]) & set(splits.samples["train"])
    assert scan_folder("tiny", folder, val_size=3, train_limit=5, split_seed=1).samples == splits.samples


def test_training_batches_have_the_model_shape_and_are_reproducible(folder):
    data = _data(folder)
    assert len(data) == 12 and data.steps_per_epoch(4) == 3
    a = list(data.train_batches(4, torch.Generator().manual_seed(7)))
    b = list(data.train_batches(4, torch.Generator().manual_seed(7)))
    c = list(data.train_batches(4, torch.Generator().manual_seed(8)))
    assert [x.shape for x, _ in a] == [(4, 3, 24, 24)] * 3 and a[0][0].dtype == torch.float32
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    assert sorted(torch.cat([y for _, y in a]).tolist()) == [0] * 4 + [1] * 4 + [2] * 4  # each image once


def test_worker_processes_give_the_same_batches_as_the_main_process(folder):
    one = list(_data(folder).train_batches(6, torch.Generator().manual_seed(3)))
    pooled = FolderData(scan_folder("tiny", folder), torch.device("cpu"), img_size=24, workers=2)
    for _ in range(2):  # the workers are kept between epochs
        two = list(pooled.train_batches(6, torch.Generator().manual_seed(3)))
        assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(one, two))
    first = next(pooled.eval_batches("train", 4))  # a pass left unfinished (as the importance batches do)...
    again = list(pooled.eval_batches("train", 4))  # ...and the next one starts from the beginning
    assert len(again) == 3 and torch.equal(again[0].x, first.x)


def test_shards_are_slices_of_the_global_batch(folder):
    whole = list(_data(folder).train_batches(6, torch.Generator().manual_seed(5)))
    for rank in range(2):
        part = list(_data(folder, shard=(rank, 2)).train_batches(6, torch.Generator().manual_seed(5)))
        for (xw, yw), (xp, yp) in zip(whole, part, strict=True):
            assert torch.equal(xp, xw[rank * 3 : (rank + 1) * 3]) and torch.equal(yp, yw[rank * 3 : (rank + 1) * 3])
    with pytest.raises(ValueError, match="equal shards"):
        next(_data(folder, shard=(0, 4)).train_batches(6, torch.Generator().manual_seed(5)))


def test_evaluation_is_center_cropped_padded_and_sharded(folder):
    data = _data(folder)
    batches = list(data.eval_batches(("val", "test"), 4))
    # test is val (no test/ split): each batch is decoded once and served for both
    assert [b.split for b in batches] == ["val", "test", "val", "test"]
    assert all(b.x.shape == (4, 3, 24, 24) for b in batches)
    assert (batches[2].y == PAD_LABEL).sum() == 2
    assert torch.equal(batches[0].x, batches[1].x) and torch.equal(batches[2].y, batches[3].y)
    val = list(data.eval_batches("val", 4))
    assert all(torch.equal(a.x, b.x) for a, b in zip(val, batches[::2], strict=True))  # no augmentation
    shares = [list(data.eval_batches("val", 4, shard=(r, 2), pad=False)) for r in range(2)]
    labels = torch.cat([b.y for share in shares for b in share])
    assert torch.equal(labels, torch.cat([b.y for b in val])[:6])


def test_without_crop_in_augment_training_images_are_center_crops(folder):
    data = _data(folder, augment=("flip",))
    (x, y), *_ = data.train_batches(12, torch.Generator().manual_seed(0))
    evals = torch.cat([b.x for b in data.eval_batches("train", 12, pad=False)])
    for img in x:  # every training image is an eval image, flipped or not
        assert any(torch.equal(img, e) or torch.equal(img.flip(-1), e) for e in evals)


def test_crop_box_stays_inside_the_image_within_the_ratio_range():
    g = torch.Generator().manual_seed(0)
    for h, w in [(30, 40), (375, 500), (10, 400)]:
        for _ in range(50):
            top, left, ch, cw = crop_box(h, w, g)
            assert top >= 0 and left >= 0 and top + ch <= h and left + cw <= w and ch > 0 and cw > 0
    assert crop_box(10, 400, torch.Generator().manual_seed(0))[2:] == (10, round(10 * CROP_RATIO[1]))


def test_a_test_split_of_its_own_is_decoded_on_its_own(tmp_path):
    root = write_image_folder(tmp_path / "three", classes=3, train=2, val=1, test=2)
    data = FolderData(scan_folder("three", root), torch.device("cpu"), img_size=16, workers=0)
    assert data.splits.sizes() == {"train": 6, "val": 3, "test": 6}
    batches = list(data.eval_batches(("val", "test"), 4, pad=False))
    assert [(b.split, len(b.y)) for b in batches] == [("val", 3), ("test", 4), ("test", 2)]


def test_a_missing_root_or_split_or_empty_class_is_one_error_naming_the_path(folder, tmp_path):
    with pytest.raises(DataError, match=r"root .*nowhere does not exist.*datasets\.tiny\.root"):
        scan_folder("tiny", tmp_path / "nowhere")
    (tmp_path / "only_train" / "train" / "a").mkdir(parents=True)
    (tmp_path / "only_train" / "train" / "a" / "x.jpg").write_bytes((folder / "train/class_0/img_0.jpg").read_bytes())
    with pytest.raises(DataError, match=r"no val/ split .*valprep"):
        scan_folder("tiny", tmp_path / "only_train")
    (tmp_path / "only_train" / "val" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=r"class folder .*val/a holds no images"):
        scan_folder("tiny", tmp_path / "only_train")
    (tmp_path / "only_train" / "val" / "b").mkdir(parents=True)
    with pytest.raises(DataError, match=r"class folders that train/ lacks \(b\)"):
        scan_folder("tiny", tmp_path / "only_train")


def test_an_unreadable_image_names_its_file(tmp_path):
    root = write_image_folder(tmp_path / "bad", classes=2, train=2, val=1)
    broken = root / "train" / "class_1" / "img_1.jpg"
    broken.write_bytes(b"not a jpeg")
    for workers in (0, 1):
        data = FolderData(scan_folder("bad", root), torch.device("cpu"), img_size=16, workers=workers)
        with pytest.raises(DataError, match=rf"cannot read image {broken}.*replace or delete") as info:
            list(data.train_batches(4, torch.Generator().manual_seed(0)))
        assert "Traceback" not in str(info.value)


def test_make_data_serves_a_folder_experiment(folder):
    experiment = {
        "dataset": "tiny",
        "data": {"val_size": None, "train_limit": None, "split_seed": 0},
        "train": {"augment": ["crop", "flip"], "crop_padding": 4},
        "dataset_source": {"kind": "imagefolder", "root": str(folder), "loader": "auto", "workers": 0},
    }
    dataset = open_dataset(experiment)
    data = make_data(dataset, experiment, torch.device("cpu"), 16)
    assert isinstance(data, FolderData) and data.img_size == 16 and len(data) == 12


def test_loader_choice_falls_back_to_torchvision_and_refuses_dali_where_it_cannot_run():
    assert choose_loader("imagenet", "auto", torch.device("cpu")) == "torchvision"
    assert choose_loader("imagenet", "torchvision", torch.device("cuda")) == "torchvision"
    with pytest.raises(DataError, match="decodes on a GPU.*set loader: auto or torchvision"):
        choose_loader("imagenet", "dali", torch.device("cpu"))
    with pytest.raises(DataError, match=r"DALI is not installed.*prunebench\[dali\]"):
        choose_loader("imagenet", "dali", torch.device("cuda"))  # DALI is not installed here
    assert choose_loader("imagenet", "auto", torch.device("cuda")) == "torchvision"


def test_the_dali_source_refuses_the_cpu_and_a_missing_dali_with_the_fix(folder):
    from prunebench.data.dali import DaliData, dali_available

    splits = scan_folder("tiny", folder)
    with pytest.raises(DataError, match="decodes on a GPU.*set loader: torchvision"):
        DaliData(splits, torch.device("cpu"))
    assert not dali_available()  # DALI is not installed here: its pipelines are not exercised by these tests
    with pytest.raises(DataError, match=r"datasets\.tiny\.loader chooses DALI, which is not installed.*\[dali\]"):
        DaliData(splits, torch.device("cuda"))
