"""Config validation and the experiment matrix."""

import copy

import pytest
import yaml

from prunebench.config import load_config_file, resolve_config
from prunebench.errors import ConfigError
from prunebench.prepare import resolve_checked
from tests.conftest import REPO


def reference():
    return load_config_file(REPO / "config.yaml")


def test_reference_matrix_is_vit_small_on_cifar_refill_vs_rsst():
    resolved = resolve_config(reference())
    exps = {k: e for k, e in resolved.experiments.items() if e["group"] == "vit"}
    assert len(exps) == 30  # with the dense control chain (dense_control), over three seeds
    assert {(e["dataset"], e["method"], e["seed"]) for e in exps.values()} == {
        (d, m, s) for d in ("cifar10", "cifar100") for m in ("refill", "rsst", "random", "oneshot", "dense")
        for s in (0, 1, 2)
    }  # fmt: skip
    for e in exps.values():
        assert e["model"]["arch"] == "vit_small_patch16_224" and e["model"]["pretrained"] is True
        assert (e["prune"]["states"], e["train"]["epochs"], e["prune"]["target_sparsity"]) == (16, 60, 0.7)
        assert (e["prune"]["ranking"], e["prune"]["schedule"]) == ("global", "geometric")
        t = e["train"]
        assert (t["optimizer"], t["lr"], t["momentum"], t["weight_decay"], t["batch_size"]) == (
            "sgd",
            0.01,
            0.9,
            1e-4,
            128,
        )
        assert t["augment"] == ["crop", "flip"]
        assert set(e["prune"]["groups"]) == {"heads", "neurons"}


def test_reference_cnn_methods_all_end_at_the_papers_macs_cut():
    resolved = resolve_config(reference())
    cnn = [e for e in resolved.experiments.values() if e["model_key"] == "resnet56"]
    assert {e["method"] for e in cnn} == {"dense", "refill", "rsst", "reprune", "random", "oneshot"}
    assert {(e["prune"]["budget"], e["prune"]["target_sparsity"]) for e in cnn} == {("macs", 0.6038)}


def test_defaults_are_filled_from_the_schema(tiny_config):
    exp = next(iter(resolve_config(tiny_config).experiments.values()))
    assert exp["rsst"]["lambda_schedule"] == "exp_custom_exponents"
    assert exp["rsst"]["exponents"] == 4 and exp["rsst"]["reg_granularity_prune"] == 1.0
    assert exp["prune"]["rewind"] == "none" and exp["train"]["label_smoothing"] == 0.0


def test_group_overrides_apply_only_to_their_group(tiny_config):
    tiny_config["experiments"]["slow"] = {
        "datasets": ["digits"], "models": ["tiny_vit"], "methods": ["rsst"], "seeds": [1, 2], "dense_control": False,
        "overrides": {"train": {"lr": 0.5}, "rsst": {"lambda_schedule": "x^2"}},
    }  # fmt: skip
    exps = resolve_config(tiny_config).experiments
    assert sorted(exps) == [
        "slow-digits-tiny_vit-rsst-s1",
        "slow-digits-tiny_vit-rsst-s2",
        "t-synthetic-tiny_vit-refill-s0",
    ]
    assert exps["slow-digits-tiny_vit-rsst-s1"]["train"]["lr"] == 0.5
    assert exps["slow-digits-tiny_vit-rsst-s1"]["train"]["epochs"] == 1  # from defaults
    assert exps["t-synthetic-tiny_vit-refill-s0"]["train"]["lr"] == 0.002


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["experiments"]["vit"]["methods"].append("RSSTX"),
         "experiments.vit.methods[4] = 'RSSTX': must be one of dense, refill, rsst"),
        (lambda c: c["defaults"]["prune"].update(target_sparsity=1.5),
         "defaults.prune.target_sparsity = 1.5: must be < 1"),
        (lambda c: c["defaults"]["prune"].update(states=0), "defaults.prune.states = 0: must be >= 1"),
        (lambda c: c["defaults"]["train"].update(epoch=3), "defaults.train: unknown key 'epoch'; allowed keys: amp,"),
        (lambda c: c.update(reslts="x"), "(top level): unknown key 'reslts'; allowed keys: data_dir,"),
        (lambda c: c["experiments"].update({"bad/name": c["experiments"]["vit"]}),
         "the name 'bad/name' is not allowed; rename it. Letters, digits and underscores only"),
        (lambda c: c["defaults"]["train"].update(compile="maybe"),  # YAML's spelling of the booleans
         "defaults.train.compile = 'maybe': must be one of auto, true, false"),
    ],
)  # fmt: skip
def test_invalid_config_gives_one_message_naming_key_value_and_allowed(edit, expected):
    cfg = reference()
    edit(cfg)
    with pytest.raises(ConfigError) as info:
        resolve_config(cfg, source="config.yaml")
    message = str(info.value)
    assert message.startswith("invalid config.yaml:")
    assert expected in message


def test_undefined_model_key_and_unknown_arch_are_named():
    cfg = reference()
    cfg["experiments"]["vit"]["models"] = ["vit_smal"]
    with pytest.raises(
        ConfigError, match=r"models\[0\] = 'vit_smal': not defined under `models`; defined: resnet56, vit_small"
    ):
        resolve_checked(cfg)
    cfg = reference()
    cfg["models"]["vit_small"]["arch"] = "vit_smal_patch16_224"
    with pytest.raises(ConfigError, match="unknown model 'vit_smal_patch16_224'.*did you mean vit_small_patch16_224"):
        resolve_checked(cfg)


def test_non_vit_timm_model_is_refused():
    cfg = reference()
    cfg["models"]["vit_small"]["arch"] = "convnext_tiny"
    with pytest.raises(ConfigError, match="convnext_tiny.*not a timm Vision Transformer"):
        resolve_config(cfg)


def test_missing_pretrained_file_is_named(tmp_path):
    cfg = reference()
    cfg["models"]["vit_small"]["pretrained"] = str(tmp_path / "nope.pth")
    with pytest.raises(ConfigError, match="nope.pth'?: no such file"):
        resolve_config(cfg)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(bad)


def test_demo_config_is_valid():
    exps = resolve_config(yaml.safe_load((REPO / "config/demo.yaml").read_text())).experiments
    assert {e["method"] for e in exps.values()} >= {"dense", "refill", "rsst"}
    assert {e["group"] for e in exps.values() if e["method"] == "random"} == {"demo", "demo_cnn"}  # the floor
    assert all(e["dataset"] == "digits" for e in exps.values() if e["model"]["arch"].startswith("vit"))


def test_resolved_experiment_is_plain_data(tiny_config):
    exp = next(iter(resolve_config(copy.deepcopy(tiny_config)).experiments.values()))
    assert yaml.safe_load(yaml.safe_dump(exp)) == exp


@pytest.mark.parametrize("section", ["experiments", "models"])
@pytest.mark.parametrize("name", ["../escape", "a;rm -rf ~", "x y", "$(id)", "_hidden"])
def test_names_that_become_paths_or_shell_words_are_refused(section, name):
    cfg = reference()
    first = next(iter(cfg[section]))
    cfg[section][name] = cfg[section].pop(first)
    with pytest.raises(ConfigError) as info:
        resolve_config(cfg)
    assert f"{section}: the name {name!r} is not allowed; rename it. Letters, digits and underscores only" in str(
        info.value
    )


def test_state0_is_shared_per_group_dataset_model_and_seed_except_by_reprune(tiny_config):
    tiny_config["models"]["cnn"] = {"arch": "small_cnn"}
    tiny_config["experiments"]["t"].update(methods=["dense", "refill", "rsst"], seeds=[0, 1])
    tiny_config["experiments"]["c"] = {
        "datasets": ["synthetic"], "models": ["cnn"], "methods": ["refill", "reprune"],
        "overrides": {"prune": {"groups": ["channels"]}, "reprune": {"interval_epochs": 1}},
    }  # fmt: skip
    resolved = resolve_config(tiny_config)
    of = resolved.state0_of
    assert {of[f"t-synthetic-tiny_vit-{m}-s1"] for m in ("dense", "refill", "rsst")} == {
        "shared/t-synthetic-tiny_vit-s1"
    }
    assert of["t-synthetic-tiny_vit-rsst-s0"] == "shared/t-synthetic-tiny_vit-s0"
    assert of["c-synthetic-cnn-refill-s0"] == "shared/c-synthetic-cnn-s0"
    assert of["c-synthetic-cnn-reprune-s0"] == "c-synthetic-cnn-reprune-s0"  # prunes from epoch 1: its own
    trained = resolved.state0_runs["shared/t-synthetic-tiny_vit-s0"]
    rsst = resolved.experiments["t-synthetic-tiny_vit-rsst-s0"]
    # the group's settings that state 0 reads: everything but the pruning schedule and the methods' own
    expected = {k: v for k, v in rsst.items() if k not in ("rsst", "reprune")}
    expected.update(name="t-synthetic-tiny_vit-s0", method="dense", prune={"groups": rsst["prune"]["groups"]})
    assert trained == expected
    # adding a method changes nothing for the others: no reruns
    tiny_config["experiments"]["t"]["methods"] = ["refill"]
    assert resolve_config(tiny_config).state0_runs["shared/t-synthetic-tiny_vit-s0"] == trained

    tiny_config["share_state0"] = False
    assert all(run == name for name, run in resolve_config(tiny_config).state0_of.items())


def test_without_building_models_the_arch_is_checked_by_name_and_prepare_checks_the_rest(tiny_config):
    """The Snakemake process (resolve_config alone) imports no timm: a ViT name timm does not know is
    caught by `prunebench validate --models` and the prepare rule, a CNN typo at once."""
    from prunebench.archs import CNN_ARCH_NAMES
    from prunebench.models.cnn import CNN_ARCHS

    assert set(CNN_ARCH_NAMES) == set(CNN_ARCHS)
    tiny_config["models"]["tiny_vit"]["arch"] = "vit_tiny_patch17_224"
    resolve_config(tiny_config)
    with pytest.raises(ConfigError, match="unknown model 'vit_tiny_patch17_224'"):
        resolve_checked(tiny_config, models={"tiny_vit"})
    tiny_config["models"]["tiny_vit"]["arch"] = "resnet57"
    with pytest.raises(ConfigError, match="unknown model 'resnet57'.*did you mean resnet56"):
        resolve_config(tiny_config)


def test_bad_model_kwargs_are_caught_only_when_models_are_built(tiny_config):
    tiny_config["models"]["tiny_vit"]["kwargs"]["num_heads"] = 5  # 48 is not a multiple of 5
    resolve_config(tiny_config)
    resolve_checked(tiny_config, models={"another_model"})
    with pytest.raises(ConfigError, match="not a multiple of\\s+num_heads"):
        resolve_checked(tiny_config)
