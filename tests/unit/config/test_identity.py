"""The training hash (the training rules' rerun trigger): what changes it, and what must not."""

import copy

import pytest

from prunebench import config as C
from prunebench.config import (
    NEUTRAL_MARK,
    NOT_TRAINING,
    NOT_TRAINING_MARK,
    job_experiment,
    load_schema,
    neutral_defaults,
    output_paths,
    resolve_config,
    training_hash,
)
from prunebench.errors import ConfigError

# Every setting the training hash covers. A new schema key lands here or carries `x-neutral-default`:
# a key whose default reproduces the behaviour from before it existed is marked (the hash skips it at
# its default, so upgrading retrains nothing); any other key changes the hash of every finished state.
# A key that changes how a state runs but not what it computes carries `x-not-training` (NOT_HASHED).
# A method's section (`x-method`: rsst, reprune) is hashed for that method's experiments only.
HASHED = {
    "data.split_seed", "data.train_limit", "data.val_size",
    "model.arch", "model.img_size", "model.kwargs", "model.patch_size", "model.pretrained",
    "prune.budget", "prune.groups", "prune.ranking", "prune.rewind", "prune.schedule", "prune.states",
    "prune.target_sparsity",
    "reprune.interval_epochs", "reprune.linkage", "reprune.min_layer_density", "reprune.prune_until",
    "reprune.ramp", "reprune.regrowth",
    "rsst.exponents", "rsst.lambda_schedule", "rsst.reg_granularity_prune",
    "train.amp", "train.augment", "train.batch_size", "train.crop_padding", "train.epochs", "train.grad_clip",
    "train.label_smoothing", "train.lr", "train.lr_schedule", "train.min_lr", "train.momentum", "train.nesterov", "train.optimizer", "train.state0_epochs", "train.warmup_epochs", "train.weight_decay",
}  # fmt: skip
# How a state runs, never what it trains (SPEC §4): docs/recovery.md's "What reruns what" says where one
# still changes the numbers (the GPUs: BatchNorm statistics per GPU).
NOT_HASHED = {
    "measure",
    "train.compile", "train.compile_mode", "train.compile_backend", "train.compile_cache_dir",
    "train.background_checkpoints", "train.divergence_loss", "train.eval_batch_size", "train.eval_test",
    "train.gpus", "train.nodes", "train.slim",
}  # fmt: skip


def _marked(mark: str) -> set[str]:
    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            if sub.get(mark):
                yield ".".join((*path, key))
            yield from walk(sub, (*path, key))

    schema = load_schema()
    return set(walk(schema["$defs"]["settings"], ())) | set(walk(schema["$defs"]["model"], ("model",)))


def _hashed_keys() -> set[str]:
    def walk(node, path):
        props = node.get("properties", {})
        if not props:
            yield ".".join(path)
            return
        for key, sub in props.items():
            skipped = sub.get(NEUTRAL_MARK) or sub.get(NOT_TRAINING_MARK)
            if not (len(path) == 0 and key in NOT_TRAINING) and not skipped:
                yield from walk(sub, (*path, key))

    schema = load_schema()
    return set(walk(schema["$defs"]["settings"], ())) | set(walk(schema["$defs"]["model"], ("model",)))


def test_every_new_setting_is_hashed_or_marked_neutral():
    keys = _hashed_keys()
    assert keys - HASHED == set(), (
        "new settings change every finished state's training hash (a full retrain after upgrading): "
        f"mark them `{NEUTRAL_MARK}: true` in the schema if their default reproduces the old behaviour, "
        "else add them to HASHED"
    )
    assert HASHED - keys == set()
    assert _marked(NOT_TRAINING_MARK) == NOT_HASHED, "a key marked x-not-training never retrains a state: list it here"


# The hashes of tiny_config's experiment and its shared state 0: those before train.compile was marked
# x-not-training (commit 88c209a, where the resolved experiment had train.compile: false), but for
# train.eval_batch_size, which tiny_config sets to 256 and which the hash has seen as its default 1024
# since it was marked x-not-training too (fd67dc54... and a36231ae... before).
OLD_HASHES = {
    "t-synthetic-tiny_vit-refill-s0": "94be4a987e3ac936bc716d3c49783ffebbf4b2bf7342b5c81f929210a7fd3ca8",
    "shared/t-synthetic-tiny_vit-s0": "cc14456f047cecad5cda06c677847a418511277fb7a7096f8114ea44e1c1518a",
}


def test_compile_settings_change_no_hash_and_finished_states_keep_theirs(tiny_config):
    assert _hashes(tiny_config) == OLD_HASHES  # the new defaults (compile: auto, eval_every: 1) retrain nothing
    for key, value in (("compile", True), ("compile", False), ("compile", "auto"), ("compile_mode", "max-autotune"),
                       ("compile_mode", "reduce-overhead"), ("compile_cache_dir", "/scratch/cache"),
                       ("background_checkpoints", False), ("eval_test", "every")):  # fmt: skip
        changed = copy.deepcopy(tiny_config)
        changed["defaults"]["train"][key] = value
        assert _hashes(changed) == OLD_HASHES, key
    exp = next(iter(resolve_config(tiny_config).experiments.values()))
    old = copy.deepcopy(exp)
    old["train"]["compile"] = False  # a config stored in a checkpoint before these keys existed
    for key in ("compile_mode", "compile_cache_dir", "eval_every", "background_checkpoints"):
        del old["train"][key]
    assert training_hash(old) == training_hash(exp)


def test_eval_every_is_hashed_away_from_its_default(tiny_config):
    tiny_config["defaults"]["train"]["eval_every"] = 3  # another best epoch can be chosen: another best.pt
    assert set(_hashes(tiny_config).values()).isdisjoint(OLD_HASHES.values())


def test_compile_accepts_command_line_words(tiny_config):
    tiny_config["defaults"]["train"]["compile"] = "true"
    assert next(iter(resolve_config(tiny_config).experiments.values()))["train"]["compile"] is True
    tiny_config["defaults"]["train"]["compile"] = "sometimes"
    with pytest.raises(ConfigError, match="compile"):
        resolve_config(tiny_config)


def _hashes(config: dict) -> dict[str, str]:
    resolved = resolve_config(config)
    runs = {name: training_hash(exp) for name, exp in resolved.state0_runs.items()}
    return {**runs, **{name: training_hash(exp) for name, exp in resolved.experiments.items()}}


def test_runtime_measure_and_output_settings_change_no_hash(tiny_config):
    tiny_config["experiments"]["t"]["methods"] = ["refill", "rsst"]
    before = _hashes(tiny_config)
    changed = copy.deepcopy(tiny_config)
    changed.update(device="auto", data_dir="/elsewhere/data", download=True, output_dir="runs/other")
    changed["defaults"]["measure"] = {
        "enabled": True,
        "batch_sizes": [1, 2],
        "warmup": 5,
        "repeats": 50,
        "states": "all",
    }
    assert _hashes(changed) == before


def test_training_settings_change_the_hash_of_their_group_only(tiny_config):
    tiny_config["experiments"]["u"] = copy.deepcopy(tiny_config["experiments"]["t"])
    before = _hashes(tiny_config)
    tiny_config["experiments"]["u"]["overrides"] = {"train": {"lr": 0.001}}
    after = _hashes(tiny_config)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"shared/u-synthetic-tiny_vit-s0", "u-synthetic-tiny_vit-refill-s0"}


@pytest.fixture
def schema_with(replace_schema):
    """Replace the schema by a copy with one more `train` setting, as a later prunebench would add."""

    def add(key: str, spec: dict):
        schema = copy.deepcopy(load_schema())
        schema["$defs"]["settings"]["properties"]["train"]["properties"][key] = spec
        replace_schema(schema)

    return add


def test_a_new_setting_with_a_neutral_default_leaves_the_hash_unchanged(tiny_config, schema_with):
    old = _hashes(tiny_config)
    schema_with("ema_decay", {"type": "number", "default": 0.0, NEUTRAL_MARK: True, "description": "EMA."})
    assert next(iter(resolve_config(tiny_config).experiments.values()))["train"]["ema_decay"] == 0.0
    assert _hashes(tiny_config) == old  # a finished matrix is not retrained after the upgrade
    tiny_config["defaults"]["train"]["ema_decay"] = 0.999
    assert set(_hashes(tiny_config).values()).isdisjoint(old.values())  # set to another value: it trains anew


def test_a_new_setting_without_the_mark_changes_the_hash(tiny_config, schema_with):
    old = _hashes(tiny_config)
    schema_with("ema_decay", {"type": "number", "default": 0.0, "description": "EMA."})
    assert set(_hashes(tiny_config).values()).isdisjoint(old.values())


def test_marked_settings_are_skipped_only_at_their_default(tiny_config):
    assert neutral_defaults()[("rsst", "peak_at")] == 1
    tiny_config["experiments"]["t"]["methods"] = ["rsst"]  # its own section: what an RSST experiment trains
    base = _hashes(tiny_config)
    tiny_config["defaults"]["rsst"] = {"peak_at": 1.0}  # explicitly the default: the same training
    assert _hashes(tiny_config) == base
    tiny_config["defaults"]["rsst"] = {"peak_at": 0.5}
    changed = _hashes(tiny_config)
    assert all(changed[name] != base[name] for name in resolve_config(tiny_config).experiments)


def test_pruning_settings_keep_the_shared_dense_state0():
    """A sweep of the final target retrains states 1 and later, not the dense state 0 they share."""
    from tests.conftest import TINY_CONFIG

    config = {**TINY_CONFIG, "experiments": {"t": {**TINY_CONFIG["experiments"]["t"], "methods": ["refill", "rsst"]}}}
    base = _hashes(config)
    config["defaults"] = {**config["defaults"], "prune": {**config["defaults"]["prune"], "target_sparsity": 0.6}}
    config["defaults"]["rsst"] = {"peak_at": 0.5}
    swept = _hashes(config)
    runs = resolve_config(config).state0_runs
    shared = [name for name in runs if name.startswith("shared/")]
    assert shared and all(swept[name] == base[name] for name in shared)
    assert all(swept[name] != base[name] for name in resolve_config(config).experiments)
    config["defaults"]["prune"]["groups"] = ["heads"]  # the groups its masks name: state 0 itself changes
    assert all(_hashes(config)[name] != base[name] for name in shared)


def test_an_old_checkpoint_config_without_a_new_key_hashes_as_before(tiny_config):
    exp = next(iter(resolve_config(tiny_config).experiments.values()))
    old = copy.deepcopy(exp)
    del old["rsst"]["peak_at"], old["prune"]["importance"]  # written before these settings existed
    assert training_hash(old) == training_hash(exp)


def test_command_line_strings_are_read_as_the_schema_types(tiny_config):
    # `snakemake --config download=false` passes the word "false"; YAML 1.1 reads 1e-3 as a string
    tiny_config.update(download="false", device="cpu")
    tiny_config["defaults"]["train"]["lr"] = "1e-3"
    tiny_config["defaults"]["measure"] = {"enabled": "False"}
    resolved = resolve_config(tiny_config)
    assert resolved.runtime["download"] is False
    exp = next(iter(resolved.experiments.values()))
    assert exp["train"]["lr"] == 0.001 and exp["measure"]["enabled"] is False
    assert C.runtime_settings({"download": "no"})["download"] is False
    tiny_config["download"] = "maybe"
    with pytest.raises(ConfigError, match="download = 'maybe': must be of type boolean"):
        resolve_config(tiny_config)


def test_output_paths_keep_each_config_apart():
    assert output_paths({}) == C.OutputPaths("results", "logs", "benchmarks")
    assert output_paths({"output_dir": "demo"}) == C.OutputPaths("demo/results", "demo/logs", "demo/benchmarks")


def test_a_job_resolves_its_experiment_and_refuses_a_changed_config(tiny_config):
    resolved = resolve_config(tiny_config)
    name = next(iter(resolved.experiments))
    want = training_hash(resolved.experiments[name])
    experiment, _ = job_experiment(tiny_config, name, want)
    assert experiment == resolved.experiments[name]
    run = resolved.state0_of[name]
    assert job_experiment(tiny_config, run, training_hash(resolved.state0_runs[run]))[0]["method"] == "dense"
    tiny_config["defaults"]["train"]["lr"] = 0.1
    with pytest.raises(ConfigError, match="the config changed while the workflow ran"):
        job_experiment(tiny_config, name, want)
    with pytest.raises(ConfigError, match="has no experiment 'nope'"):
        job_experiment(tiny_config, "nope")


def test_how_a_state_runs_changes_no_hash():
    """Issue 20: 8 GPUs falling back to 4 on a busy cluster redid every finished state."""
    from pathlib import Path

    config = C.load_config_file(Path(__file__).resolve().parents[3] / "config" / "imagenet.yaml")
    before = {n: training_hash(e) for n, e in resolve_config(config).experiments.items()}
    changes = {
        "train": {"gpus": 4, "nodes": 2, "compile": False, "compile_mode": "max-autotune", "eval_batch_size": 256,
                  "divergence_loss": 50.0, "background_checkpoints": False, "compile_cache_dir": "/scratch/c"},
        "measure": {"enabled": False, "repeats": 3},
    }  # fmt: skip
    for section, values in changes.items():
        for key, value in values.items():
            changed = copy.deepcopy(config)
            changed["defaults"][section][key] = value
            changed["datasets"]["imagenet"].update(workers=2, loader="torchvision", root="/elsewhere/imagenet")
            resolved = resolve_config(changed)
            assert {n: training_hash(e) for n, e in resolved.experiments.items()} == before, key


def test_a_killed_state_resumes_under_another_number_of_gpus(tiny_config):
    from prunebench.train.resume import config_fits

    exp = next(iter(resolve_config(tiny_config).experiments.values()))
    stored = copy.deepcopy(exp)  # the resolved experiment a resume.pt holds
    stored["train"].update(gpus=8, nodes=2, eval_batch_size=64, compile=True)
    assert config_fits(stored, exp)
    stored["train"]["lr"] = 0.1
    assert not config_fits(stored, exp)
