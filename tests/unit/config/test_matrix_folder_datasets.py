"""The config's `datasets` section: image folders by name, validated without torch, outside the training hash."""

import copy

import pytest

from prunebench.config import BUILTIN_DATASETS, resolve_config, training_hash
from prunebench.data import DATASETS
from prunebench.errors import ConfigError


@pytest.fixture
def folder_config(tiny_config):
    tiny_config["datasets"] = {"imagenet": {"kind": "imagefolder", "root": "/data/imagenet"}}
    tiny_config["experiments"]["t"]["datasets"] = ["imagenet", "synthetic"]
    return tiny_config


def test_builtin_names_match_the_loader():
    assert tuple(BUILTIN_DATASETS) == tuple(DATASETS)


def test_a_folder_dataset_reaches_its_experiments_with_defaults(folder_config):
    resolved = resolve_config(folder_config)
    exp = resolved.experiments["t-imagenet-tiny_vit-refill-s0"]
    assert exp["dataset"] == "imagenet"
    assert exp["dataset_source"] == {
        "kind": "imagefolder", "root": "/data/imagenet", "loader": "auto", "workers": 8, "train_images": 1281167,
    }  # fmt: skip
    assert "dataset_source" not in resolved.experiments["t-synthetic-tiny_vit-refill-s0"]
    assert "dataset_source" in resolved.state0_runs["shared/t-imagenet-tiny_vit-s0"]


def test_where_and_how_a_folder_is_read_changes_no_training_hash(folder_config):
    before = training_hash(resolve_config(folder_config).experiments["t-imagenet-tiny_vit-refill-s0"])
    moved = copy.deepcopy(folder_config)
    moved["datasets"]["imagenet"].update(root="/scratch/imagenet", loader="dali", workers=16)
    after = training_hash(resolve_config(moved).experiments["t-imagenet-tiny_vit-refill-s0"])
    assert after == before


def test_webdataset_shards_are_a_kind_of_folder_dataset(folder_config):
    folder_config["datasets"]["imagenet"]["kind"] = "webdataset"
    exp = resolve_config(folder_config).experiments["t-imagenet-tiny_vit-refill-s0"]
    assert exp["dataset_source"]["kind"] == "webdataset"
    folder_config["datasets"]["imagenet"]["kind"] = "lmdb"
    with pytest.raises(ConfigError, match="kind = 'lmdb': must be one of imagefolder, webdataset"):
        resolve_config(folder_config)


def test_an_undefined_dataset_names_the_known_ones(folder_config):
    folder_config["experiments"]["t"]["datasets"] = ["imagenet1k"]
    with pytest.raises(ConfigError, match=r"datasets\[0\] = 'imagenet1k'.*cifar10.*\(imagenet\); define it there"):
        resolve_config(folder_config)


def test_a_folder_may_not_take_a_builtin_name_and_needs_a_root(folder_config):
    folder_config["datasets"]["cifar10"] = {"kind": "imagefolder", "root": "x"}
    with pytest.raises(ConfigError, match="datasets.cifar10: the name of a built-in dataset"):
        resolve_config(folder_config)
    del folder_config["datasets"]["cifar10"]
    folder_config["datasets"]["imagenet"] = {"kind": "imagefolder", "loader": "fast"}
    with pytest.raises(ConfigError) as info:
        resolve_config(folder_config)
    assert "missing required key 'root'" in str(info.value) and "loader = 'fast'" in str(info.value)
