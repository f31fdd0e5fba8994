"""What a state trains: the training settings of a resolved experiment and their hash.

The schema's marks decide what is left out (settings that only say how a state runs, the other
methods' sections, settings added later at their old behaviour); the hash is what Snakemake's rules,
checkpoints and summaries compare.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from prunebench.config.schema import load_schema
from prunebench.errors import ConfigError


def canonical(value: Any) -> Any:
    # 1 and 1.0 train alike (YAML gives either), so an integral float hashes as the int
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


# Fields of a resolved experiment that do not change what a state trains and that the schema's
# settings do not define (those carry NOT_TRAINING_MARK): its labels (the experiment, method and state
# a checkpoint is for are checked on their own) and the tracking of metrics (`logging`, where an older
# config has it). An image folder's `dataset_source` (where it lives, who decodes it) is a runtime
# setting like data_dir.
NOT_TRAINING = ("name", "group", "model_key", "logging", "dataset_source")


# The schema marks a setting added after results existed with `x-neutral-default: true` when its
# default reproduces the behaviour from before it existed. The training hash leaves such a setting
# out while it has that default, so that a prunebench that adds it retrains nothing: a finished
# matrix keeps its hashes, and only a config that sets another value trains anew.
NEUTRAL_MARK = "x-neutral-default"


# The schema marks a setting that changes how a state runs but not what it computes (torch.compile,
# its mode and cache folder, the GPUs and nodes, the throughput timing) with `x-not-training: true`:
# the training hash leaves it out whatever its value. One that was hashed before it was so marked also
# names `x-hashed-as: <value>`: the hash then sees that value in its place (the value it had in every
# finished state that left it at its default), so marking it retrains none of those.
NOT_TRAINING_MARK = "x-not-training"


HASHED_AS_MARK = "x-hashed-as"


_LEFT_OUT = object()


# The schema marks each method's own settings section with `x-method: <method>` (the `rsst` section
# with `x-method: rsst`): it is part of what that method's experiments train and of no other's. The
# training hash of another method's experiment sees the section's `x-hashed-as` value in its place
# (what every state trained before the mark existed had there: the section's defaults, without the
# neutral ones), so that marking it retrains no state whose config leaves the section at its
# defaults (leaving the section out would have retrained them all); a section without `x-hashed-as`
# (a method added later) is left out of other methods' hashes. The shared dense state 0
# (shared_state0_run) holds no method's section at all.
METHOD_MARK = "x-method"


def _schema_marks(mark: str, value_of) -> dict[tuple[str, ...], Any]:
    schema = load_schema()
    out: dict[tuple[str, ...], Any] = {}

    def walk(node: dict, path: tuple[str, ...]) -> None:
        for key, sub in node.get("properties", {}).items():
            if sub.get(mark):
                out[(*path, key)] = value_of(sub, ".".join((*path, key)))
            walk(sub, (*path, key))

    walk(schema["$defs"]["settings"], ())
    walk(schema["$defs"]["model"], ("model",))
    return out


@cache
def neutral_defaults() -> dict[tuple[str, ...], Any]:
    """Path in a resolved experiment -> default, for every setting the schema marks neutral."""

    def default(sub: dict, name: str) -> Any:
        if "default" not in sub:
            raise ConfigError(f"schema: {name} is marked {NEUTRAL_MARK} but has no default")
        return canonical(sub["default"])

    return _schema_marks(NEUTRAL_MARK, default)


@cache
def not_training_settings() -> dict[tuple[str, ...], Any]:
    """Path in a resolved experiment -> what the training hash sees instead (its ``x-hashed-as`` value,
    or nothing), for every setting the schema marks ``x-not-training``."""
    return _schema_marks(
        NOT_TRAINING_MARK, lambda sub, _: canonical(sub[HASHED_AS_MARK]) if HASHED_AS_MARK in sub else _LEFT_OUT
    )


@cache
def method_sections() -> dict[tuple[str, ...], tuple[str, Any]]:
    """Path in a resolved experiment -> (the method it belongs to, what another method's training hash
    sees in its place: its ``x-hashed-as`` value, or nothing), for every section marked :data:`METHOD_MARK`."""

    def owner(sub: dict, name: str) -> tuple[str, Any]:
        if "." in name:
            raise ConfigError(f"schema: {name} is marked {METHOD_MARK}, but only a settings section can be")
        return sub[METHOD_MARK], canonical(sub[HASHED_AS_MARK]) if HASHED_AS_MARK in sub else _LEFT_OUT

    return _schema_marks(METHOD_MARK, owner)


def _without_neutral(value: Any, path: tuple[str, ...], neutral: dict, runtime: dict) -> Any:
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        where = (*path, k)
        if where in runtime:
            if runtime[where] is not _LEFT_OUT:
                out[k] = runtime[where]
        elif not (where in neutral and canonical(v) == neutral[where]):
            out[k] = _without_neutral(v, where, neutral, runtime)
    return out


def training_settings(experiment: dict) -> dict:
    """The part of a resolved experiment that decides what its states train (see :func:`training_hash`):
    everything but :data:`NOT_TRAINING`, the settings marked :data:`NOT_TRAINING_MARK` and the other
    methods' sections (:data:`METHOD_MARK`), and without the neutral settings at their defaults."""
    kept = {k: v for k, v in experiment.items() if k not in NOT_TRAINING}
    others = {path: seen for path, (method, seen) in method_sections().items() if method != experiment.get("method")}
    return _without_neutral(kept, (), neutral_defaults(), {**not_training_settings(), **others})


def training_hash(experiment: dict) -> str:
    """sha256 (hex) of the experiment's training-relevant settings: the dataset, model, method, seed,
    every train/prune/data setting and its own method's settings; not its names, another method's
    settings (:data:`METHOD_MARK`), how it runs (``measure``, GPUs, compile: :data:`NOT_TRAINING_MARK`),
    nor the neutral settings at their defaults (:data:`NEUTRAL_MARK`). The runtime settings (``device``,
    ``data_dir``, ``download``, ``output_dir``) are not part of an experiment at all.

    The training rules take it as their parameter, so that it alone decides when Snakemake retrains;
    checkpoints and summaries carry it as ``config_hash``; a file whose hash differs from the current
    experiment's was trained under other settings."""
    text = json.dumps(canonical(training_settings(experiment)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def same_training(recorded_hash: str | None, recorded_experiment: Any, want: str) -> bool:
    """Whether a state recorded under ``recorded_hash`` (with its resolved experiment, where it kept one)
    trained what the hash ``want`` names now: the same hash, or the same settings hashed by an earlier
    prunebench's rules (re-hashed here by today's)."""
    if recorded_hash == want:
        return True
    return isinstance(recorded_experiment, dict) and training_hash(recorded_experiment) == want


def settings_diff(trained: dict, current: dict, limit: int = 4) -> list[str]:
    """The training settings that differ between two resolved experiments, as ``key: old -> new``."""

    def flat(value, prefix=""):
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                out.update(flat(v, f"{prefix}{k}."))
            return out
        return {prefix[:-1]: canonical(value)}

    a, b = flat(training_settings(trained)), flat(training_settings(current))
    diff = [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in sorted(a.keys() | b.keys())
            if a.get(k, "(unset)") != b.get(k, "(unset)")]  # fmt: skip
    return diff[:limit] + ([f"and {len(diff) - limit} more"] if len(diff) > limit else [])
