"""Validation catches, before any job starts, what the model or the groups make impossible."""

import time

import pytest
import yaml

from prunebench.config import load_config_file, resolve_config
from prunebench.errors import ConfigError
from prunebench.prepare import resolve_checked


def error_of(config) -> str:
    with pytest.raises(ConfigError) as info:
        resolve_checked(config)  # the checks that build the models too
    message = str(info.value)
    assert message.startswith("invalid config:\n  ") and message.count("\n") == 1  # ONE problem, one line
    return message


def with_cnn(config, arch="resnet20", **model):
    config["models"]["cnn"] = {"arch": arch, **model}
    config["experiments"]["t"]["models"] = ["cnn"]
    config["defaults"]["prune"]["groups"] = ["channels"]
    return config


def test_heads_that_do_not_divide_the_embedding_are_named(tiny_config):
    tiny_config["models"]["tiny_vit"]["kwargs"].update(embed_dim=96, num_heads=5)
    message = error_of(tiny_config)
    assert "models.tiny_vit.kwargs = {" in message and "'num_heads': 5" in message
    assert "not a multiple of num_heads; choose num_heads that divides embed_dim" in message


@pytest.mark.parametrize("model", ["tiny_vit", "cnn"])
def test_an_unknown_model_argument_is_named(tiny_config, model):
    if model == "cnn":
        with_cnn(tiny_config, kwargs={"widht": [8, 8, 8]})
    else:
        tiny_config["models"]["tiny_vit"]["kwargs"]["drop_rat"] = 0.1
    key = "widht" if model == "cnn" else "drop_rat"
    assert f"models.{model}.kwargs.{key}: " in error_of(tiny_config)
    assert f"takes no argument {key!r}; remove it" in error_of(tiny_config)


def test_a_patch_larger_than_the_image_is_refused(tiny_config):
    tiny_config["models"]["tiny_vit"]["patch_size"] = 64
    message = error_of(tiny_config)
    assert "models.tiny_vit.patch_size = 64: larger than the 32 px images" in message
    assert "use a patch_size that divides 32" in message


def test_a_vit_built_for_another_image_size_than_the_data_is_refused(tiny_config):
    del tiny_config["models"]["tiny_vit"]["img_size"]  # timm's 224 px, fed 32 px CIFAR-size images
    message = error_of(tiny_config)
    assert "models.tiny_vit: vit_tiny_patch16_224 is built for 224 px images but is given 32 px" in message
    assert "set models.tiny_vit.img_size" in message


def test_channels_on_a_vit_would_prune_nothing(tiny_config):
    tiny_config["defaults"]["prune"]["groups"] = ["channels"]
    message = error_of(tiny_config)
    assert "prune.groups = ['channels'] matches no group of model 'tiny_vit'" in message
    assert "which has heads, neurons; set prune.groups to ['heads', 'neurons']" in message


def test_heads_on_a_cnn_would_prune_nothing(tiny_config):
    with_cnn(tiny_config)["defaults"]["prune"]["groups"] = ["heads", "neurons"]
    assert "matches no group of model 'cnn' (resnet20), which has channels" in error_of(tiny_config)


def test_dense_alone_needs_no_prunable_group(tiny_config):
    tiny_config["defaults"]["prune"]["groups"] = ["channels"]
    tiny_config["experiments"]["t"]["methods"] = ["dense"]
    resolve_config(tiny_config)


def test_a_round_to_wider_than_every_layer_is_refused(tiny_config):
    tiny_config["defaults"]["prune"]["round_to"] = 512  # the tiny ViT's layers are 96 neurons, 3 x 16 head dims
    message = error_of(tiny_config)
    assert "prune.round_to = 512: no layer of model 'tiny_vit'" in message and "widest pruned layer has 96" in message
    tiny_config["defaults"]["prune"]["round_to"] = 16  # one head, or 16 neurons: fine
    resolve_checked(tiny_config)


def test_min_lr_above_lr_is_refused(tiny_config):
    tiny_config["experiments"]["t"]["overrides"] = {"train": {"min_lr": 0.01}}
    message = error_of(tiny_config)
    assert "experiments.t: train.min_lr = 0.01 is above train.lr = 0.002" in message
    assert "set min_lr <= lr" in message


def test_numbers_in_exponent_form_are_numbers(tiny_config, tmp_path):
    tiny_config["defaults"]["train"].update(lr="1e-3", weight_decay="5E-4")  # how Snakemake's YAML 1.1 reads them
    tiny_config["defaults"]["train"]["epochs"] = "two"  # no number: refused as a string
    assert "defaults.train.epochs = 'two': must be of type integer" in error_of(tiny_config)
    tiny_config["defaults"]["train"]["epochs"] = 2
    train = next(iter(resolve_config(tiny_config).experiments.values()))["train"]
    assert (train["lr"], train["weight_decay"]) == (1e-3, 5e-4)
    path = tmp_path / "c.yaml"
    path.write_text("models: {}\nlr: 1e-3\nwd: -2.5e+2\nname: 1e3x\n")
    data = load_config_file(path)
    assert (data["lr"], data["wd"], data["name"]) == (1e-3, -250.0, "1e3x")


def test_nested_config_strings_are_read_as_the_schema_types(tiny_config):
    # `snakemake --config 'defaults={train: {epochs: 2}}'` reads nested values with YAML's BaseLoader:
    # every leaf is a string
    tiny_config["defaults"]["train"].update(epochs="2", lr="0.01", warmup_epochs="0", compile="false")
    tiny_config["defaults"]["prune"].update(states="3", target_sparsity=".5")
    tiny_config["download"] = "False"
    resolved = resolve_config(tiny_config)
    exp = next(iter(resolved.experiments.values()))
    assert (exp["train"]["epochs"], exp["train"]["lr"], exp["train"]["warmup_epochs"]) == (2, 0.01, 0)
    assert exp["train"]["compile"] is False
    assert (exp["prune"]["states"], exp["prune"]["target_sparsity"]) == (3, 0.5)
    assert resolved.runtime["download"] is False
    tiny_config["defaults"]["train"]["epochs"] = "2.5"  # not a whole number: refused, naming what was given
    assert "defaults.train.epochs = '2.5': must be of type integer" in error_of(tiny_config)


def test_a_string_the_schema_takes_stays_a_string(tiny_config):
    tiny_config["experiments"]["t"]["seeds"] = ["1"]  # a seed is an integer: read as one
    tiny_config["defaults"]["train"]["optimizer"] = "123"  # a string setting: kept, then refused by its enum
    assert "defaults.train.optimizer = '123': must be one of" in error_of(tiny_config)
    tiny_config["defaults"]["train"]["optimizer"] = "sgd"
    assert next(iter(resolve_config(tiny_config).experiments.values()))["seed"] == 1


def test_a_duplicate_key_is_an_error_not_a_silent_override(tiny_config, tmp_path):
    text = yaml.safe_dump(tiny_config, sort_keys=False)
    text = text.replace("  train:\n    epochs: 1\n", "  train:\n    epochs: 1\n    epochs: 60\n")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"config.yaml: duplicate key 'epochs' at line \d+ \(first at line \d+\)"):
        load_config_file(path)


def test_yaml_merge_keys_still_work(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {lr: 0.1, epochs: 3}\nmine: {<<: *b, lr: 0.2}\n")
    assert load_config_file(path)["mine"] == {"lr": 0.2, "epochs": 3}


def test_validation_stays_fast(tiny_config):
    tiny_config["models"]["vit_s"] = {"arch": "vit_small_patch16_224", "img_size": 224, "patch_size": 16}
    tiny_config["experiments"]["t"]["models"] = ["tiny_vit", "vit_s"]
    resolve_config(tiny_config)  # imports paid once
    tiny_config["experiments"]["u"] = {**tiny_config["experiments"]["t"], "seeds": [1, 2, 3]}
    start = time.perf_counter()
    resolve_config(tiny_config)
    assert time.perf_counter() - start < 2.0  # each model spec is built once on `meta`, then cached


def test_config_module_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, prunebench.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
