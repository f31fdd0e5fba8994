"""Every bad input is one clear error before any job: a table of config values, config files, damaged
result files and command-line arguments, each with the words its one message must hold.

A config case resolves the config as the Snakemake parse and `prunebench validate` do and expects one
ConfigError of one problem line naming the key; a results case loads the results as `prunebench report`
does and expects one ResultsError naming the file (and the line) and the fix; a command-line case runs
`python -m prunebench.cli` and expects exit status 2, one message on stderr and no traceback.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunebench.config import load_config_file, resolve_config
from prunebench.errors import ConfigError, ResultsError
from prunebench.report.load import load_results
from prunebench.report.status import progress
from prunebench.results.layout import find_summaries
from tests.conftest import REPO, TINY_CONFIG, run_snakemake

NAN, INF = math.nan, math.inf
EXP = "t-synthetic-tiny_vit-refill-s0"


# --- config values ------------------------------------------------------------------------------


def _set(path: str, value):
    """A mutation of the tiny config: ``path`` (dotted, from the top) set to ``value``."""

    def mutate(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return mutate


def _folder_dataset(**settings):
    def mutate(config: dict) -> None:
        config["datasets"] = {"imagenet": {"kind": "imagefolder", "root": "/data/imagenet", **settings}}

    return mutate


def _overrides(**train):
    def mutate(config: dict) -> None:
        config["experiments"]["t"]["overrides"] = {"train": train}

    return mutate


# (description, mutation of the tiny config, words the message must hold: the key first)
CONFIG_CASES = [
    ("lr NaN", _set("defaults.train.lr", NAN), ["defaults.train.lr = .nan", "must be a finite number", "<= 10"]),
    ("lr infinite", _set("defaults.train.lr", INF), ["defaults.train.lr = .inf", "finite"]),
    ("lr minus infinity", _set("defaults.train.lr", -INF), ["defaults.train.lr = -.inf", "finite"]),
    ("lr 1e30", _set("defaults.train.lr", 1e30), ["defaults.train.lr = 1e+30", "must be <= 10"]),
    ("lr zero", _set("defaults.train.lr", 0), ["defaults.train.lr = 0", "must be > 0"]),
    ("lr negative", _set("defaults.train.lr", -0.1), ["defaults.train.lr = -0.1", "must be > 0"]),
    ("lr a word", _set("defaults.train.lr", "fast"), ["defaults.train.lr = 'fast'", "must be of type number"]),
    ("lr a boolean", _set("defaults.train.lr", True), ["defaults.train.lr = True", "must be of type number"]),
    ("lr 1e400 as --config gives it", _set("defaults.train.lr", "1e400"), ["defaults.train.lr = .inf", "finite"]),
    ("min_lr NaN", _set("defaults.train.min_lr", NAN), ["defaults.train.min_lr = .nan", "finite"]),
    ("min_lr 100", _set("defaults.train.min_lr", 100), ["defaults.train.min_lr = 100", "must be <= 10"]),
    (
        "min_lr above lr",
        _set("defaults.train.min_lr", 0.5),
        ["train.min_lr = 0.5 is above train.lr", "set min_lr <= lr"],
    ),
    ("epochs 1e12", _set("defaults.train.epochs", 1e12), ["defaults.train.epochs", "must be <= 10000"]),
    ("epochs 1e12 as --config gives it", _set("defaults.train.epochs", "1e12"), ["defaults.train.epochs", "<= 10000"]),
    ("epochs 0", _set("defaults.train.epochs", 0), ["defaults.train.epochs = 0", "must be >= 1"]),
    ("epochs fractional", _set("defaults.train.epochs", 2.5), ["defaults.train.epochs = 2.5", "type integer"]),
    ("epochs NaN", _set("defaults.train.epochs", NAN), ["defaults.train.epochs = .nan", "finite", ">= 1 and <= 10000"]),
    ("epochs infinite", _set("defaults.train.epochs", INF), ["defaults.train.epochs = .inf", "finite"]),
    ("epochs a string", _set("defaults.train.epochs", "ten"), ["defaults.train.epochs = 'ten'", "type integer"]),
    ("state0_epochs 1e5", _set("defaults.train.state0_epochs", 100000), ["defaults.train.state0_epochs", "<= 10000"]),
    ("batch_size 1e9", _set("defaults.train.batch_size", 10**9), ["defaults.train.batch_size", "must be <= 65536"]),
    ("batch_size 0", _set("defaults.train.batch_size", 0), ["defaults.train.batch_size = 0", "must be >= 1"]),
    ("batch_size negative", _set("defaults.train.batch_size", -5), ["defaults.train.batch_size = -5", ">= 1"]),
    ("eval_batch_size 1e6", _set("defaults.train.eval_batch_size", 10**6), ["train.eval_batch_size", "<= 65536"]),
    ("momentum 1.5", _set("defaults.train.momentum", 1.5), ["defaults.train.momentum = 1.5", "must be <= 1"]),
    ("momentum NaN", _set("defaults.train.momentum", NAN), ["defaults.train.momentum = .nan", ">= 0 and <= 1"]),
    ("weight_decay infinite", _set("defaults.train.weight_decay", INF), ["defaults.train.weight_decay = .inf"]),
    ("weight_decay negative", _set("defaults.train.weight_decay", -0.1), ["train.weight_decay = -0.1", ">= 0"]),
    ("weight_decay 5", _set("defaults.train.weight_decay", 5), ["defaults.train.weight_decay = 5", "must be <= 1"]),
    ("warmup_epochs 1e9", _set("defaults.train.warmup_epochs", 1e9), ["train.warmup_epochs", "must be <= 10000"]),
    ("warmup_epochs negative", _set("defaults.train.warmup_epochs", -1), ["train.warmup_epochs = -1", ">= 0"]),
    ("label_smoothing 2", _set("defaults.train.label_smoothing", 2), ["train.label_smoothing = 2", "must be <= 1"]),
    ("crop_padding 5000", _set("defaults.train.crop_padding", 5000), ["train.crop_padding = 5000", "<= 1024"]),
    ("grad_clip 0", _set("defaults.train.grad_clip", 0), ["defaults.train.grad_clip = 0", "must be > 0"]),
    ("grad_clip infinite", _set("defaults.train.grad_clip", INF), ["defaults.train.grad_clip = .inf", "finite"]),
    ("eval_every 0", _set("defaults.train.eval_every", 0), ["defaults.train.eval_every = 0", "must be >= 1"]),
    ("divergence_loss NaN", _set("defaults.train.divergence_loss", NAN), ["train.divergence_loss = .nan"]),
    ("gpus 0", _set("defaults.train.gpus", 0), ["defaults.train.gpus = 0", "must be >= 1"]),
    ("gpus 1000", _set("defaults.train.gpus", 1000), ["defaults.train.gpus = 1000", "must be <= 64"]),
    ("nodes 1e6", _set("defaults.train.nodes", 10**6), ["defaults.train.nodes = 1000000", "must be <= 1024"]),
    ("batch not split by gpus", _set("defaults.train.gpus", 3), ["batch_size = 64 does not split into 3", "multiple"]),
    ("states 0", _set("defaults.prune.states", 0), ["defaults.prune.states = 0", "must be >= 1"]),
    ("states 1e6", _set("defaults.prune.states", 10**6), ["defaults.prune.states = 1000000", "must be <= 1000"]),
    ("sparsity 1.5", _set("defaults.prune.target_sparsity", 1.5), ["prune.target_sparsity = 1.5", "must be < 1"]),
    ("sparsity 1", _set("defaults.prune.target_sparsity", 1), ["prune.target_sparsity = 1", "must be < 1"]),
    ("sparsity NaN", _set("defaults.prune.target_sparsity", NAN), ["prune.target_sparsity = .nan", ">= 0 and < 1"]),
    ("sparsity negative", _set("defaults.prune.target_sparsity", -0.2), ["target_sparsity = -0.2", ">= 0"]),
    ("taylor_batches 0", _set("defaults.prune.taylor_batches", 0), ["prune.taylor_batches = 0", "must be >= 1"]),
    ("round_to 1e6", _set("defaults.prune.round_to", 10**6), ["prune.round_to = 1000000", "must be <= 4096"]),
    ("rsst g infinite", _set("defaults.rsst.reg_granularity_prune", INF), ["rsst.reg_granularity_prune = .inf"]),
    ("rsst exponents 0", _set("defaults.rsst.exponents", 0), ["defaults.rsst.exponents = 0", "must be > 0"]),
    ("rsst peak_at 0", _set("defaults.rsst.peak_at", 0), ["defaults.rsst.peak_at = 0", "must be > 0"]),
    ("rsst finetune negative", _set("defaults.rsst.finetune_epochs", -1), ["rsst.finetune_epochs = -1", ">= 0"]),
    ("rsst finetune 1e9", _set("defaults.rsst.finetune_epochs", 10**9), ["rsst.finetune_epochs", "<= 10000"]),
    ("measure warmup negative", _set("defaults.measure.warmup", -1), ["defaults.measure.warmup = -1", ">= 0"]),
    ("measure repeats 0", _set("defaults.measure.repeats", 0), ["defaults.measure.repeats = 0", "must be >= 1"]),
    ("measure repeats 1e9", _set("defaults.measure.repeats", 10**9), ["measure.repeats = 1000000000", "<= 10000"]),
    ("measure batch 0", _set("defaults.measure.batch_sizes", [0]), ["measure.batch_sizes[0] = 0", ">= 1"]),
    ("measure batch 1e9", _set("defaults.measure.batch_sizes", [10**9]), ["measure.batch_sizes[0]", "<= 65536"]),
    ("measure states NaN", _set("defaults.measure.states", [1, NAN]), ["measure.states[1] = .nan", "finite"]),
    ("measure state past the last", _set("defaults.measure.states", [5]), ["measure.states lists state 5", "below 2"]),
    ("reprune interval 0", _set("defaults.reprune.interval_epochs", 0), ["reprune.interval_epochs = 0", ">= 1"]),
    ("reprune prune_until 1.5", _set("defaults.reprune.prune_until", 1.5), ["reprune.prune_until = 1.5", "<= 1"]),
    ("reprune density 1", _set("defaults.reprune.min_layer_density", 1), ["reprune.min_layer_density = 1", "< 1"]),
    ("reprune regrowth 2", _set("defaults.reprune.regrowth", 2), ["defaults.reprune.regrowth = 2", "must be <= 1"]),
    ("val_size 0", _set("defaults.data.val_size", 0), ["defaults.data.val_size = 0", "must be >= 1"]),
    ("train_limit 1e12", _set("defaults.data.train_limit", 10**12), ["data.train_limit", "<= 10000000000"]),
    ("split_seed negative", _set("defaults.data.split_seed", -1), ["defaults.data.split_seed = -1", ">= 0"]),
    ("split_seed 2**40", _set("defaults.data.split_seed", 2**40), ["data.split_seed", "<= 4294967295"]),
    ("safety_factor 0.5", _set("resources.safety_factor", 0.5), ["resources.safety_factor = 0.5", "must be >= 1"]),
    ("safety_factor infinite", _set("resources.safety_factor", INF), ["resources.safety_factor = .inf", "finite"]),
    ("overhead negative", _set("resources.overhead_minutes", -1), ["resources.overhead_minutes = -1", ">= 0"]),
    ("mem_mb 10", _set("resources.models.tiny_vit.mem_mb", 10), ["resources.models.tiny_vit.mem_mb = 10", ">= 500"]),
    ("minutes NaN", _set("resources.models.tiny_vit.minutes_per_epoch", NAN), ["minutes_per_epoch = .nan", "> 0"]),
    ("minutes 0", _set("resources.models.tiny_vit.minutes_per_epoch", 0), ["tiny_vit.minutes_per_epoch = 0", "> 0"]),
    ("folder workers negative", _folder_dataset(workers=-1), ["datasets.imagenet.workers = -1", "must be >= 0"]),
    ("folder workers 1e6", _folder_dataset(workers=10**6), ["datasets.imagenet.workers = 1000000", "<= 256"]),
    ("folder train_images 0", _folder_dataset(train_images=0), ["datasets.imagenet.train_images = 0", ">= 1"]),
    ("img_size 4", _set("models.tiny_vit.img_size", 4), ["models.tiny_vit.img_size = 4", "must be >= 8"]),
    ("img_size 1e5", _set("models.tiny_vit.img_size", 10**5), ["models.tiny_vit.img_size = 100000", "<= 4096"]),
    ("patch_size 0", _set("models.tiny_vit.patch_size", 0), ["models.tiny_vit.patch_size = 0", "must be >= 1"]),
    ("model kwarg NaN", _set("models.tiny_vit.kwargs.drop_rate", NAN), ["models.tiny_vit.kwargs.drop_rate = .nan"]),
    ("seed negative", _set("experiments.t.seeds", [-1]), ["experiments.t.seeds[0] = -1", "must be >= 0"]),
    ("seed 2**40", _set("experiments.t.seeds", [2**40]), ["experiments.t.seeds[0]", "<= 4294967295"]),
    ("seed NaN", _set("experiments.t.seeds", [NAN]), ["experiments.t.seeds[0] = .nan", "finite"]),
    ("override lr NaN", _overrides(lr=NAN), ["experiments.t.overrides.train.lr = .nan", "> 0 and <= 10"]),
    ("override epochs 1e12", _overrides(epochs=10**12), ["experiments.t.overrides.train.epochs", "<= 10000"]),
    ("device gpu", _set("device", "gpu"), ["device = 'gpu'", "invalid"]),
    ("output_dir empty", _set("output_dir", ""), ["output_dir", "empty"]),
    ("download maybe", _set("download", "maybe"), ["download = 'maybe'", "type boolean"]),
    ("unknown key", _set("defaults.train.learning_rate", 0.1), ["defaults.train: unknown key 'learning_rate'", "lr"]),
    ("unknown method", _set("experiments.t.methods", ["prune"]), ["experiments.t.methods[0] = 'prune'", "one of"]),
]


@pytest.mark.parametrize("mutate, words", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_a_bad_config_value_is_one_error_naming_the_key(mutate, words):
    config = copy.deepcopy(TINY_CONFIG)
    mutate(config)
    with pytest.raises(ConfigError) as info:
        resolve_config(config)  # as the Snakemake parse does, before any job
    message = str(info.value)
    assert message.startswith("invalid config:\n  ") and message.count("\n") == 1, message  # one problem, one line
    for word in words:
        assert word in message, message


def test_the_tiny_config_itself_is_valid():
    assert EXP in resolve_config(copy.deepcopy(TINY_CONFIG)).experiments


# --- config files -------------------------------------------------------------------------------


def _text(path: Path, text: str) -> None:
    path.write_text(text)


def _tiny_yaml(path: Path, lr_line: str) -> None:
    path.write_text(yaml.safe_dump(TINY_CONFIG, sort_keys=False).replace("    lr: 0.002\n", lr_line))


CONFIG_FILE_CASES = [
    ("missing", lambda p: None, ["config file", "does not exist"]),
    (
        "not UTF-8",
        lambda p: p.write_bytes(b"models:\n  x: {arch: \xff\xfe}\n"),
        ["line 2: not UTF-8", "save it as UTF-8"],
    ),
    ("not YAML", lambda p: _text(p, "models: [\n"), ["is not valid YAML"]),
    ("a list", lambda p: _text(p, "- 1\n- 2\n"), ["must hold a mapping at the top level"]),
    ("a folder", lambda p: p.mkdir(), ["is a folder; give the config's YAML file"]),
    ("duplicate key", lambda p: _tiny_yaml(p, "    lr: 0.002\n    lr: 0.5\n"), ["duplicate key 'lr' at line"]),
    ("lr .nan", lambda p: _tiny_yaml(p, "    lr: .nan\n"), ["defaults.train.lr = .nan: must be a finite number"]),
    ("lr .inf", lambda p: _tiny_yaml(p, "    lr: .inf\n"), ["defaults.train.lr = .inf: must be a finite number"]),
    ("lr 1e30", lambda p: _tiny_yaml(p, "    lr: 1e30\n"), ["defaults.train.lr = 1e+30: must be <= 10"]),
]


@pytest.mark.parametrize("write, words", [c[1:] for c in CONFIG_FILE_CASES], ids=[c[0] for c in CONFIG_FILE_CASES])
def test_a_bad_config_file_is_one_error_naming_the_file(tmp_path, write, words):
    path = tmp_path / "config.yaml"
    write(path)
    with pytest.raises(ConfigError) as info:
        resolve_config(load_config_file(path), source=str(path))
    message = str(info.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, message


# --- damaged result files -----------------------------------------------------------------------

IDS = {"experiment": EXP, "method": "refill", "dataset": "synthetic", "model": "tiny_vit", "seed": 0}


def _row(epoch: int, **values) -> dict:
    row = {**IDS, "state": 1, "epoch": epoch, "train_loss": 1.0, "train_acc": 40.0, "val_loss": 1.1,
           "val_acc": 41.0, "test_acc": 42.0, "lr": 0.01, "reg_lambda": 0.0, "density": 0.7,
           "params_alive": 900, "epoch_seconds": 2.0, "images_per_second": 100.0}  # fmt: skip
    row.update(values)
    return row


SUMMARY = {
    **IDS, "state": 1, "epoch": 2, "epochs": 2, "density": 0.7, "best_epoch": 2, "best_test_acc": 42.0,
    "final_test_acc": 42.0, "best_val_acc": 41.0, "final_val_acc": 41.0, "acc_after_pruning": 30.0,
    "params_dense": 1000, "params_alive": 900, "wall_seconds": 5.0, "images_per_second": 100.0, "test_size": 100,
    "kept": {"blocks.0": {"heads": 2}}, "group_sizes": {"blocks.0": {"heads": 3}},
    "cost": {"dense": {"params": 1000, "macs": 5000}, "compact": {"params": 900, "macs": 4000}},
    "config_hash": "abc",
}  # fmt: skip


@pytest.fixture
def results(tmp_path) -> Path:
    """A results folder with one finished state (state 1 of EXP) and one running (its state 2)."""
    root = tmp_path / "results"
    state = root / EXP / "state1"
    state.mkdir(parents=True)
    (state / "summary.json").write_text(json.dumps(SUMMARY, indent=2))
    _lines(state / "metrics.jsonl", [_row(e) for e in range(3)])
    running = root / EXP / "recovery" / "state2"
    running.mkdir(parents=True)
    _lines(running / "metrics.jsonl", [_row(e, state=2) for e in range(2)])
    return root


def _lines(path: Path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def _metrics(*rows):
    return lambda root: _lines(root / EXP / "state1" / "metrics.jsonl", list(rows))


def _metrics_text(data: bytes):
    return lambda root: (root / EXP / "state1" / "metrics.jsonl").write_bytes(data)


def _summary(**changes):
    def write(root: Path) -> None:
        summary = {**SUMMARY, **changes}
        summary = {k: v for k, v in summary.items() if v is not _DROP}
        (root / EXP / "state1" / "summary.json").write_text(json.dumps(summary))

    return write


def _summary_text(data: bytes):
    return lambda root: (root / EXP / "state1" / "summary.json").write_bytes(data)


def _progress(*rows):
    return lambda root: _lines(root / EXP / "recovery" / "state2" / "metrics.jsonl", list(rows))


_DROP = object()
_FULL = b"".join(json.dumps(_row(e)).encode() + b"\n" for e in range(3))
METRICS = f"{EXP}/state1/metrics.jsonl"
SUMMARY_FILE = f"{EXP}/state1/summary.json"
RUNNING = f"{EXP}/recovery/state2/metrics.jsonl"
FIX = "train the state again: prunebench retrain --config CONFIG"

# (description, damage done to the results, the file the message names, words it must hold)
RESULTS_CASES = [
    ("metrics truncated mid-line", _metrics_text(_FULL[:-20]), METRICS, ["line 3: not a JSON row", FIX]),
    ("metrics emptied", _metrics_text(b""), METRICS, ["empty, though the state's summary.json says it finished", FIX]),
    ("metrics blanks only", _metrics_text(b"\n\n"), METRICS, ["empty", FIX]),
    ("metrics deleted", lambda r: (r / METRICS).unlink(), METRICS, ["missing", FIX]),
    ("metrics garbled line", _metrics(_row(0), "{garbage", _row(2)), METRICS, ["line 2: not a JSON row", FIX]),
    ("metrics not UTF-8", _metrics_text(_FULL + b"\xff\xfe\n"), METRICS, ["line 4: not UTF-8 text", FIX]),
    ("metrics blank middle line", _metrics(_row(0), "", _row(2)), METRICS, ["line 2: not a JSON row", FIX]),
    (
        "metrics row a list",
        _metrics(_row(0), [1, 2]),
        METRICS,
        ["line 2: not a metrics row: an array, not a JSON object", FIX],
    ),
    ("metrics row null", _metrics(_row(0), None), METRICS, ["line 2: not a metrics row: null, not a JSON object", FIX]),
    ("metrics without epoch", _metrics({k: v for k, v in _row(0).items() if k != "epoch"}), METRICS, ["lacks epoch"]),
    ("metrics epoch a string", _metrics(_row(0), _row("1")), METRICS, ["line 2", "epoch = '1' (must be a whole"]),
    ("metrics epoch negative", _metrics(_row(-1)), METRICS, ["line 1", "epoch = -1"]),
    ("metrics seed fractional", _metrics(_row(0, seed=0.5)), METRICS, ["seed = 0.5"]),
    ("metrics experiment a number", _metrics(_row(0, experiment=7)), METRICS, ["experiment = 7 (must be a name)"]),
    ("metrics accuracy a word", _metrics(_row(0, test_acc="abc")), METRICS, ["test_acc = 'abc' (must be a number"]),
    ("metrics accuracy 1e9", _metrics(_row(0, val_acc=1e9)), METRICS, ["val_acc = 1000000000.0", "0 to 100"]),
    ("metrics accuracy negative", _metrics(_row(0, train_acc=-5)), METRICS, ["train_acc = -5", "0 to 100"]),
    ("metrics loss a word", _metrics(_row(0, val_loss="x")), METRICS, ["val_loss = 'x' (must be a number or null)"]),
    ("metrics evaluated a word", _metrics(_row(0, evaluated="yes")), METRICS, ["evaluated = 'yes'"]),
    (
        "summary accuracy a word",
        _summary(best_test_acc="abc"),
        SUMMARY_FILE,
        ['best_test_acc = "abc"', "0 to 100", FIX],
    ),
    ("summary accuracy 1e9", _summary(final_test_acc=1e9), SUMMARY_FILE, ["final_test_acc = 1000000000.0", FIX]),
    ("summary accuracy NaN", _summary(final_test_acc=NAN), SUMMARY_FILE, ["final_test_acc = NaN", "0 to 100"]),
    ("summary accuracy null", _summary(best_test_acc=None), SUMMARY_FILE, ["best_test_acc = null"]),
    ("summary not UTF-8", _summary_text(b'{"experiment": "\xff"}'), SUMMARY_FILE, ["not UTF-8 text", FIX]),
    ("summary emptied", _summary_text(b""), SUMMARY_FILE, ["not JSON", FIX]),
    ("summary garbled", _summary_text(b'{"experiment": '), SUMMARY_FILE, ["not JSON", FIX]),
    ("summary a list", _summary_text(b"[1, 2]"), SUMMARY_FILE, ["holds an array, not a JSON object", FIX]),
    ("summary a string", _summary_text(b'"abc"'), SUMMARY_FILE, ["holds a string, not a JSON object"]),
    ("summary lacks an accuracy", _summary(final_test_acc=_DROP), SUMMARY_FILE, ["lacks final_test_acc", FIX]),
    ("summary state negative", _summary(state=-1), SUMMARY_FILE, ["state = -1 (must be a whole number >= 0)"]),
    ("summary state a string", _summary(state="1"), SUMMARY_FILE, ['state = "1"']),
    ("summary state a boolean", _summary(state=True), SUMMARY_FILE, ["state = true"]),
    ("summary seed fractional", _summary(seed=1.5), SUMMARY_FILE, ["seed = 1.5"]),
    ("summary epochs negative", _summary(epochs=-3), SUMMARY_FILE, ["epochs = -3"]),
    ("summary params a word", _summary(params_alive="many"), SUMMARY_FILE, ['params_alive = "many"']),
    ("summary density 2", _summary(density=2), SUMMARY_FILE, ["density = 2 (must be a fraction from 0 to 1)"]),
    ("summary wall time negative", _summary(wall_seconds=-1), SUMMARY_FILE, ["wall_seconds = -1"]),
    ("summary method empty", _summary(method=""), SUMMARY_FILE, ['method = "" (must be a name)']),
    ("summary kept a word", _summary(kept={"blocks.0": {"heads": "x"}}), SUMMARY_FILE, ["kept.blocks.0 ="]),
    ("summary cost a word", _summary(cost={"compact": "big"}), SUMMARY_FILE, ['cost.compact = "big"']),
    ("summary cost negative", _summary(cost={"compact": {"macs": -5}}), SUMMARY_FILE, ["cost.compact", ">= 0"]),
    ("summary throughput a word", _summary(throughput="fast"), SUMMARY_FILE, ['throughput = "fast" (must be a JSON']),
    ("running garbled middle", _progress(_row(0), "{x", _row(1)), RUNNING, ["line 2: not a JSON row", "recovery"]),
    ("running epoch a word", _progress(_row(0), _row("two")), RUNNING, ["line 2", "epoch = 'two'"]),
]


@pytest.mark.parametrize("damage, file, words", [c[1:] for c in RESULTS_CASES], ids=[c[0] for c in RESULTS_CASES])
def test_a_damaged_results_file_is_one_error_naming_it_and_the_fix(results, damage, file, words):
    damage(results)
    with pytest.raises(ResultsError) as info:  # as `prunebench report` and `status` read them
        load_results(find_summaries(results))
        plan = {"experiment": [EXP], "states": [3], "epochs": [2], "state0_epochs": [2]}
        progress(results, __import__("pandas").DataFrame(plan))
    message = str(info.value)
    assert str(results / file) in message and "\n" not in message, message
    for word in words:
        assert word in message, message


def test_the_undamaged_results_load_and_a_torn_last_line_of_a_running_state_is_skipped(results):
    import pandas as pd

    loaded = load_results(find_summaries(results))
    assert list(loaded.epochs["epoch"]) == [0, 1, 2] and loaded.states["final_test_acc"].tolist() == [42.0]
    with open(results / RUNNING, "a") as fh:
        fh.write('{"experiment": "t-synth')  # a write cut off by a crash: the epoch reruns
    plan = pd.DataFrame({"experiment": [EXP], "states": [3], "epochs": [2], "state0_epochs": [2]})
    assert progress(results, plan)["epoch"].tolist() == [1]


# --- the command line ---------------------------------------------------------------------------


def _cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-m", "prunebench.cli", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture
def workdir(tmp_path, results) -> Path:
    """tmp_path with config.yaml (the tiny config, data in tmp_path/data), results/, a file and an empty folder."""
    config = copy.deepcopy(TINY_CONFIG)
    config["data_dir"] = str(tmp_path / "data")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    _tiny_yaml(tmp_path / "nan.yaml", "    lr: .nan\n")
    (tmp_path / "epochs.yaml").write_text(yaml.safe_dump({**config, "defaults": {"train": {"epochs": 10**12}}}))
    (tmp_path / "latin1.yaml").write_bytes(b"models: {caf\xe9: {arch: resnet20}}\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("x")
    return tmp_path


# (description, arguments, words the one message on stderr must hold; "{tmp}" is the working folder)
CLI_CASES = [
    ("report of a mistyped folder", ["report", "--results", "{tmp}/typo"], ["{tmp}/typo (--results) does not exist"]),
    ("report of a file", ["report", "--results", "{tmp}/afile"], ["{tmp}/afile (--results) is not a folder"]),
    ("report of an empty folder", ["report", "--results", "{tmp}/empty"], ["holds no prune states yet", "run the"]),
    ("report of /proc/forbidden", ["report", "--results", "/proc/forbidden"], ["/proc/forbidden (--results) does not"]),
    ("report of an empty name", ["report", "--results", ""], ["argument --results: an empty path"]),
    ("report of a damaged summary", ["report", "--results", "{tmp}/bad"], ["damaged state summary", "best_test_acc"]),
    ("report of truncated metrics", ["report", "--results", "{tmp}/torn"], ["damaged metrics file", "line 3"]),
    ("status of a mistyped folder", ["status", "--results", "{tmp}/typo"], ["{tmp}/typo (--results) does not exist"]),
    ("status of an empty folder", ["status", "--results", "{tmp}/empty"], ["holds no prune states yet"]),
    ("status of a summary not UTF-8", ["status", "--results", "{tmp}/latin"], ["summary.json: not UTF-8 text"]),
    (
        "status with a missing config",
        ["status", "--config", "nothere.yaml"],
        ["config file nothere.yaml does not exist"],
    ),
    (
        "threads negative",
        ["train-state", "config.yaml", EXP, "1", "--threads", "-3"],
        ["--threads: '-3': must be >= 1"],
    ),
    ("threads 0", ["train-state", "config.yaml", EXP, "1", "--threads", "0"], ["--threads: '0': must be >= 1"]),
    ("threads a word", ["train-state", "config.yaml", EXP, "1", "--threads", "many"], ["'many' is not a whole number"]),
    ("state negative", ["train-state", "config.yaml", EXP, "-1"], ["argument state: '-1': states are numbered from 0"]),
    ("state a word", ["train-state", "config.yaml", EXP, "last"], ["argument state: 'last' is not a state number"]),
    ("state past the last", ["train-state", "config.yaml", EXP, "9"], ["state 9 does not exist", "0 to 1"]),
    (
        "unknown experiment",
        ["train-state", "config.yaml", "nope", "0"],
        ["no experiment 'nope'", "prunebench validate"],
    ),
    (
        "results not writable",
        ["train-state", "config.yaml", EXP, "1", "--results", "/proc/forbidden"],
        ["/proc/forbidden (--results) cannot be created or written", "No such file"],
    ),
    (
        "results under a file",
        ["train-state", "config.yaml", EXP, "1", "--results", "{tmp}/afile/r"],
        ["is a file, not a folder"],
    ),
    (
        "prepare under a file",
        ["prepare", "config.yaml", "--results", "{tmp}/afile/r"],
        ["afile is a file, not a folder"],
    ),
    (
        "train with lr .nan",
        ["train-state", "nan.yaml", EXP, "0"],
        ["defaults.train.lr = .nan: must be a finite number"],
    ),
    ("validate lr .nan", ["validate", "nan.yaml"], ["nan.yaml:", "defaults.train.lr = .nan"]),
    ("validate epochs 1e12", ["validate", "epochs.yaml"], ["defaults.train.epochs = 1000000000000: must be <= 10000"]),
    ("validate a Latin-1 file", ["validate", "latin1.yaml"], ["latin1.yaml, line 1: not UTF-8 text"]),
    ("validate a missing file", ["validate", "nothere.yaml"], ["config file nothere.yaml does not exist"]),
    ("export a missing checkpoint", ["export", "nothere.pt", "out.pt"], ["checkpoint nothere.pt does not exist"]),
    ("export on a gpu device", ["export", "x.pt", "out.pt", "--device", "gpu"], ["--device: 'gpu': use cpu, cuda"]),
    ("export batch size 0", ["export", "x.pt", "out.pt", "--batch-sizes", "0"], ["--batch-sizes: '0': must be >= 1"]),
    ("export compile maybe", ["export", "x.pt", "out.pt", "--compile", "maybe"], ["--compile: 'maybe': use auto"]),
    ("an unknown command", ["trian-state"], ["argument command: invalid choice: 'trian-state'"]),
    ("retrain no experiment", ["retrain"], ["the following arguments are required: experiment"]),
    (
        "retrain an unknown experiment",
        ["retrain", "--config", "config.yaml", "nope"],
        ["no experiment 'nope'", "prunebench validate"],
    ),
    (
        "retrain from a state past the last",
        ["retrain", "--config", "config.yaml", EXP, "--from-state", "7"],
        [f"{EXP} has no state 7: its states are 0 to 1"],
    ),
    ("retrain from state -1", ["retrain", "--config", "config.yaml", EXP, "--from-state", "-1"], ["'-1': states are"]),
    (
        "retrain in a missing results folder",
        ["retrain", "--config", "config.yaml", EXP, "--results", "{tmp}/typo"],
        ["typo (--results) does not exist"],
    ),
]


@pytest.mark.parametrize("args, words", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_a_bad_command_line_is_one_line_and_exit_status_2(workdir, args, words):
    import shutil

    for name, damage in (("bad", _summary(best_test_acc="abc")), ("torn", _metrics_text(_FULL[:-20]))):
        shutil.copytree(workdir / "results", workdir / name)
        damage(workdir / name)
    shutil.copytree(workdir / "results", workdir / "latin")
    _summary_text(b'{"experiment": "caf\xe9"}')(workdir / "latin")
    proc = _cli(*[a.replace("{tmp}", str(workdir)) for a in args], cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr and lines[0].startswith("prunebench"), proc.stderr
    # one line; a config's errors are one message too: "invalid CONFIG:", then one line per problem (here one)
    assert len(lines) == 1 or (len(lines) == 2 and lines[0].endswith(".yaml:") and " invalid " in lines[0]), lines
    for word in words:
        assert word.replace("{tmp}", str(workdir)) in proc.stderr, proc.stderr
    assert not (workdir / "data").exists() and not (workdir / "typo").exists()  # no job started, nothing created
    assert not any(p.name == "reports" for p in workdir.rglob("reports"))


# --- the Snakemake parse ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lr_line, words",
    [
        ("    lr: .nan\n", "defaults.train.lr = .nan: must be a finite number"),
        ("    lr: 1e30\n", "lr = 1e+30: must be <= 10"),
    ],
    ids=["lr .nan", "lr 1e30"],
)
def test_the_workflow_stops_at_its_parse_with_the_one_message(tmp_path, lr_line, words):
    _tiny_yaml(tmp_path / "config.yaml", lr_line)
    proc = run_snakemake(tmp_path, None, "-n", "--configfile", str(tmp_path / "config.yaml"), check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output, output
    assert "prunebench: invalid config:" in output and words in output, output
    assert "train_state" not in output  # no job was planned


def test_every_number_in_the_schema_has_a_finite_range_its_description_states():
    from prunebench.config import load_schema

    def numbers(node, path, described):
        if isinstance(node, dict):
            described = node.get("description", described)
            types = node.get("type")
            types = [types] if isinstance(types, str) else types or []
            if {"number", "integer"} & set(types):
                yield ".".join(path), node, described
            for key, sub in node.items():
                yield from numbers(sub, (*path, key), described if key in ("items", "oneOf") else "")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                yield from numbers(sub, (*path, str(i)), described)

    found = list(numbers(load_schema(), (), ""))
    assert len(found) > 40
    for path, node, described in found:
        low = node.get("minimum", node.get("exclusiveMinimum"))
        high = node.get("maximum", node.get("exclusiveMaximum"))
        assert low is not None and high is not None and math.isfinite(low) and math.isfinite(high), path
        assert any(w in described for w in ("at most", "At most", "Between", "below 1")), (path, described)
