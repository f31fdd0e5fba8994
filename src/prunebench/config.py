"""Configuration: validation against the JSON schema, defaults, and the experiment matrix.

This is the one place that turns a config mapping into experiments. The Snakemake layer and the
command-line tool both call :func:`resolve_config`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from prunebench.archs import check_arch_name, family_of
from prunebench.errors import ConfigError

if TYPE_CHECKING:  # imported where a config is validated: the training code (bench/gpu_check.py) runs without it
    import jsonschema

SCHEMA_RESOURCE = "config.schema.yaml"


def schema_path() -> Path:
    """Filesystem path of the config JSON schema shipped with the package."""
    return Path(str(resources.files("prunebench") / "resources" / SCHEMA_RESOURCE))


@cache
def load_schema() -> dict:
    # libyaml's loader where PyYAML has it: ten times faster on the schema (the Snakemake parse reads it)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(schema_path().read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 (a SafeLoader)


# A number with an exponent: YAML 1.1 (PyYAML, Snakemake) reads 1e-3 or 1.0e5 as a string.
_NUMBER = re.compile(r"^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """``yaml.SafeLoader`` (libyaml's where PyYAML has it: ten times faster) that refuses a key given
    twice in one mapping (plain YAML keeps the last silently) and reads ``1e-3`` as a number, as YAML
    1.2 and JSON do (YAML 1.1 reads it as a string)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges defaults that the mapping's own keys may override
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(
                    f"duplicate key {key!r} at line {line} (first at line {seen[key]}): YAML would keep only "
                    "the last value silently; remove one of them"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _NUMBER, list("-+0123456789."))


def load_config_file(path: str | Path) -> dict:
    """Read a YAML config safely (no Python objects), refusing duplicate keys; errors are ConfigErrors."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give the config's YAML file (e.g. {path / 'config.yaml'})")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(f"config file {path}, line {line}: not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


# What `snakemake --config` hands over as strings: a nested value (`defaults={train: {epochs: 2}}`)
# is read with YAML's BaseLoader, whose every leaf is a string, and a top-level word such as
# `download=false` stays one too. Where the schema wants a number or null and no string, such a
# string is read by YAML 1.2's core rules; a boolean's words (YAML 1.1's yes/no/on/off too) wherever
# the schema takes a boolean. Any other string stays one, for the schema to refuse by name.
_BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_NULL_WORDS = {"null", "Null", "NULL", "~"}
_INTEGER = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def _allowed_types(node: dict, root: dict) -> list[str]:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    types = node.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    for branch in node.get("oneOf", []) + node.get("anyOf", []):
        types += _allowed_types(branch, root)
    return types


def _numbers_read(value: Any, node: dict, root: dict) -> Any:
    """``value`` with the strings that stand for a boolean, a number or null (how ``snakemake --config``
    passes them, nested values included, and how YAML 1.1 reads ``1e-3``) turned into that type
    wherever the schema expects it; where it also takes a string, only booleans and ``1e-3``."""
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    types = _allowed_types(node, root)
    if isinstance(value, str):
        word, numeric = value.strip(), "integer" in types or "number" in types
        if "boolean" in types and word.lower() in _BOOLEAN_WORDS:
            return _BOOLEAN_WORDS[word.lower()]
        if "string" in types and not _NUMBER.match(word):  # a string may be meant: only 1e-3 is read
            return value
        if "null" in types and word in _NULL_WORDS:
            return None
        if numeric and _INTEGER.match(word):
            return int(word)
        if numeric and _FLOAT.match(word):
            number = float(word)
            if "integer" in types and number.is_integer():
                return int(number)
            if "number" in types:
                return number
        return value
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        return {
            k: _numbers_read(v, props[k], root)
            if k in props
            else _numbers_read(v, extra, root)
            if isinstance(extra, dict)
            else v
            for k, v in value.items()
        }
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_numbers_read(v, node["items"], root) for v in value]
    return value


def _where(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# keys that were removed, and what replaces them (named in the error an old config gets)
REPLACED_KEYS = {
    ("reprune", "budget"): "prune.budget (groups, params or macs; `channels` is now `groups`)",
    ("reprune", "macs_reduction"): "prune.target_sparsity with prune.budget: macs",
}


def _yaml_word(value) -> str:
    """A schema value as the config file spells it: true, false and null, not Python's True/None."""
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def _describe(error: jsonschema.ValidationError) -> str:
    where = _where(error.absolute_path)
    value = error.instance
    kw, arg = error.validator, error.validator_value
    if kw == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed))
        section = [str(p) for p in error.absolute_path][-1:]
        moved = [f"{section[0]}.{e} is replaced by {REPLACED_KEYS[(section[0], e)]}" for e in extra
                 if section and (section[0], e) in REPLACED_KEYS]  # fmt: skip
        if moved:
            return f"{where}: {'; '.join(moved)}"
        hint = f"allowed keys: {', '.join(allowed)}" if allowed else "no keys are allowed here"
        return f"{where}: unknown key {', '.join(repr(e) for e in extra)}; {hint}"
    if kw == "enum":
        return f"{where} = {value!r}: must be one of {', '.join(map(_yaml_word, arg))}"
    if kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
        return f"{where} = {value!r}: must be {op[kw]} {arg}"
    if kw == "required":
        missing = [k for k in arg if k not in value]
        return f"{where}: missing required key {', '.join(map(repr, missing))}"
    if kw == "pattern":
        desc = error.schema.get("description", f"must match {arg}")
        if "propertyNames" in error.schema_path:  # a key of a mapping, not a value
            return f"{where}: the name {value!r} is not allowed; rename it. {desc}"
        return f"{where} = {value!r}: invalid. {desc}"
    if kw == "type":
        return f"{where} = {value!r}: must be of type {arg}"
    if kw in ("minItems", "minProperties"):
        return f"{where}: must not be empty"
    if kw == "uniqueItems":
        return f"{where} = {value!r}: entries must be unique"
    if kw == "oneOf":
        return f"{where} = {value!r}: {error.schema.get('description', 'invalid value')}"
    return f"{where}: {error.message}"


def validate_raw(config: dict, source: str = "config") -> None:
    """Validate a raw config mapping against the schema; raise one ConfigError listing every problem."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    # jsonschema's minimum and maximum let NaN through (every comparison with it is false): one check
    # for every number of the config, model kwargs included, replaces the schema's words on those keys
    non_finite = dict(_non_finite(config, ()))
    errors = [e for e in validator.iter_errors(config) if not _about_non_finite(e, non_finite)]
    found = [(list(map(str, e.absolute_path)), _describe(e)) for e in errors]
    found += [(list(map(str, path)), _describe_non_finite(path, value)) for path, value in non_finite.items()]
    if found:
        lines = [line for _, line in sorted(found, key=lambda f: f[0])]
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(dict.fromkeys(lines)))


def _about_non_finite(error: jsonschema.ValidationError, non_finite: dict) -> bool:
    """Whether a schema error only says that a NaN or infinity is wrong: the number itself, or the
    list holding it where the schema offers a choice of forms (oneOf: measure.states)."""
    path = tuple(error.absolute_path)
    if path in non_finite:
        return True
    return error.validator in ("oneOf", "anyOf") and any(p[: len(path)] == path for p in non_finite)


def _non_finite(value: Any, path: tuple) -> Any:
    """(path, value) of every NaN or infinite number in a config mapping."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_finite(v, (*path, i))


def _describe_non_finite(path: tuple, value: float) -> str:
    bounds = _bounds_of(_schema_node(path))
    return f"{_where(path)} = {_yaml_number(value)}: must be a finite number" + (f" ({bounds})" if bounds else "")


def _yaml_number(value: float) -> str:
    return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")


def _schema_node(path: tuple) -> dict:
    """The schema of the config value at ``path`` ({} where the schema says nothing, as in model kwargs)."""
    root = load_schema()
    node: dict = root
    for part in path:
        while "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        if isinstance(part, int):  # an entry of a list, which may be one branch of a oneOf (measure.states)
            lists = [
                b for b in [node, *node.get("oneOf", []), *node.get("anyOf", [])] if isinstance(b.get("items"), dict)
            ]
            node = lists[0]["items"] if lists else {}
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _bounds_of(node: dict) -> str:
    low = (f">= {node['minimum']}" if "minimum" in node else f"> {node['exclusiveMinimum']}"
           if "exclusiveMinimum" in node else "")  # fmt: skip
    high = (f"<= {node['maximum']}" if "maximum" in node else f"< {node['exclusiveMaximum']}"
            if "exclusiveMaximum" in node else "")  # fmt: skip
    return " and ".join(b for b in (low, high) if b)


def _defaults_of(schema: dict) -> Any:
    """The default values a schema node declares, recursively, for objects with properties."""
    if "properties" in schema:
        out = {}
        for key, sub in schema["properties"].items():
            if "properties" in sub:
                out[key] = _defaults_of(sub)
            elif "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
        return out
    return copy.deepcopy(schema.get("default"))


def deep_merge(base: dict, override: dict) -> dict:
    """Return ``base`` updated recursively with ``override`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class ResolvedConfig:
    """The validated config: runtime settings plus every experiment by name."""

    runtime: dict
    experiments: dict[str, dict]
    # state 0 of every experiment: the run (a folder under results/) that trains it, and the
    # experiment each run trains (an experiment's own name, or a shared/ run: see shared_state0_run)
    state0_of: dict[str, str] = field(default_factory=dict)
    state0_runs: dict[str, dict] = field(default_factory=dict)
    # the run whose (dense) state 0 is every experiment's reference in reports (see dense_reference_runs)
    reference_of: dict[str, str] = field(default_factory=dict)
    # what training jobs ask the scheduler for (the config's `resources`, defaults filled in; see
    # prunebench.estimates) and where pretrained weights are cached (`weights_dir`)
    resources: dict = field(default_factory=dict)
    weights_dir: str | None = None
    # where the workflow writes this config's results/, logs/ and benchmarks/ (see output_paths)
    output_dir: str = "."

    def timed_states(self, names=None) -> list[tuple[str, int]]:
        """(run, state) of every state folder whose throughput is timed for the given experiments
        (all by default; see :func:`measured_states`): state 0 of an experiment that copies a shared
        state 0 is timed in the shared run's folder, once; "last" and "all" add the dense state 0
        each experiment is compared against."""
        out = set()
        for name in self.experiments if names is None else names:
            exp = self.experiments[name]
            out.update((self.state0_of[name] if k == 0 else name, k) for k in measured_states(exp))
            if exp["measure"]["enabled"] and exp["measure"]["states"] in ("last", "all"):
                out.add((self.reference_of[name], 0))
        return sorted(out)

    def by(self, key: str) -> dict[Any, list[str]]:
        """Experiment names grouped by one of their identifying fields (dataset, model, method...)."""
        out: dict[Any, list[str]] = {}
        for name, exp in self.experiments.items():
            out.setdefault(exp[key], []).append(name)
        return out


RUNTIME_KEYS = ("data_dir", "download", "device", "logging")


def runtime_settings(config: dict) -> dict:
    """Settings that say where and how to run, not what to compute (they never trigger reruns)."""
    props = load_schema()["properties"]
    typed = _numbers_read({k: config[k] for k in RUNTIME_KEYS if k in config}, load_schema(), load_schema())
    return {k: typed.get(k, props[k]["default"]) for k in RUNTIME_KEYS}


@dataclass(frozen=True)
class OutputPaths:
    """The folders the workflow writes a config's files to, all under its ``output_dir``."""

    results: str
    logs: str
    benchmarks: str


def output_paths(config: dict) -> OutputPaths:
    """Where a config's results, logs and benchmarks go: ``results``, ``logs`` and ``benchmarks``
    under its ``output_dir`` (the working directory by default; the demo's is ``demo``)."""
    base = config.get("output_dir") or load_schema()["properties"]["output_dir"]["default"]
    return OutputPaths(*(os.path.normpath(os.path.join(base, name)) for name in ("results", "logs", "benchmarks")))


def experiment_name(group: str, dataset: str, model: str, method: str, seed: int) -> str:
    """The experiment's folder name under results/."""
    return f"{group}-{dataset}-{model}-{method}-s{seed}"


SHARED_DIR = "shared"


def default_budget(groups: list[str]) -> str:
    """prune.budget when the config leaves it out: ``macs`` for CNN-channel experiments (what CNN
    pruning papers report), ``groups`` otherwise."""
    return "macs" if list(groups) == ["channels"] else "groups"


def measured_states(experiment: dict) -> list[int]:
    """The states of a resolved experiment whose throughput is timed (``measure.states``): none when
    ``measure.enabled`` is false."""
    measure, n = experiment["measure"], experiment["prune"]["states"]
    if not measure["enabled"]:
        return []
    if measure["states"] == "all":
        return list(range(n))
    if measure["states"] == "last":
        return [n - 1]
    return sorted(measure["states"])


def shares_state0(experiment: dict) -> bool:
    """Whether the experiment's state 0 is plain dense training, the same for every such method.
    REPrune prunes from its first epoch on, so its state 0 is its own."""
    return experiment["method"] != "reprune"


# What dense training of state 0 reads of the pruning settings: the group kinds its (all-true)
# masks name. The schedule, budget, ranking and the methods' own sections shape later states only.
STATE0_PRUNE_KEYS = ("groups",)


def shared_state0_run(experiment: dict) -> tuple[str, dict]:
    """The run that trains state 0 for all methods of the experiment's group, dataset, model and seed:
    its folder under results/, and the experiment it trains: the group's settings that state 0 reads,
    method dense. Pruning settings that only shape later states are left out, so that changing them
    (a sweep of target_sparsity, another schedule) keeps the dense state 0 and its training hash, and so
    is every method's own settings section (:data:`METHOD_MARK`)."""
    name = f"{experiment['group']}-{experiment['dataset']}-{experiment['model_key']}-s{experiment['seed']}"
    trained = {k: v for k, v in experiment.items() if (k,) not in method_sections()}
    trained["prune"] = {k: experiment["prune"][k] for k in STATE0_PRUNE_KEYS if k in experiment["prune"]}
    return f"{SHARED_DIR}/{name}", {**trained, "name": name, "method": "dense"}


def reference_key(experiment: dict) -> tuple:
    """What one dense reference is shared by: group, dataset, model and seed."""
    return experiment["group"], experiment["dataset"], experiment["model_key"], experiment["seed"]


def dense_reference_runs(experiments: dict[str, dict], state0_of: dict[str, str], share: bool) -> dict[str, str]:
    """Per experiment: the run whose state 0 is its dense reference (dense point, retention, "vs dense").

    With ``share_state0`` it is the group's shared dense state 0, trained even for a group whose only
    method is REPrune (REPrune's own state 0 is already pruned). Without it: the ``dense``
    experiment of the same key, else the first (by name) that trains a dense state 0 of its own,
    else the shared run. Reports pick the same one from the loaded files (report.load).
    """
    by_key: dict[tuple, list[str]] = {}
    for name, exp in experiments.items():
        by_key.setdefault(reference_key(exp), []).append(name)
    out = {}
    for names in by_key.values():
        own = sorted(n for n in names if shares_state0(experiments[n]) and state0_of[n] == n)
        dense = [n for n in own if experiments[n]["method"] == "dense"]
        ref = None if share or not own else (dense or own)[0]
        if ref is None:
            ref, _ = shared_state0_run(experiments[names[0]])
        out.update(dict.fromkeys(names, ref))
    return out


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
        return _canonical(sub["default"])

    return _schema_marks(NEUTRAL_MARK, default)


@cache
def not_training_settings() -> dict[tuple[str, ...], Any]:
    """Path in a resolved experiment -> what the training hash sees instead (its ``x-hashed-as`` value,
    or nothing), for every setting the schema marks ``x-not-training``."""
    return _schema_marks(
        NOT_TRAINING_MARK, lambda sub, _: _canonical(sub[HASHED_AS_MARK]) if HASHED_AS_MARK in sub else _LEFT_OUT
    )


@cache
def method_sections() -> dict[tuple[str, ...], tuple[str, Any]]:
    """Path in a resolved experiment -> (the method it belongs to, what another method's training hash
    sees in its place: its ``x-hashed-as`` value, or nothing), for every section marked :data:`METHOD_MARK`."""

    def owner(sub: dict, name: str) -> tuple[str, Any]:
        if "." in name:
            raise ConfigError(f"schema: {name} is marked {METHOD_MARK}, but only a settings section can be")
        return sub[METHOD_MARK], _canonical(sub[HASHED_AS_MARK]) if HASHED_AS_MARK in sub else _LEFT_OUT

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
        elif not (where in neutral and _canonical(v) == neutral[where]):
            out[k] = _without_neutral(v, where, neutral, runtime)
    return out


def training_settings(experiment: dict) -> dict:
    """The part of a resolved experiment that decides what its states train (see :func:`training_hash`):
    everything but :data:`NOT_TRAINING`, the settings marked :data:`NOT_TRAINING_MARK` and the other
    methods' sections (:data:`METHOD_MARK`), and without the neutral settings at their defaults."""
    kept = {k: v for k, v in experiment.items() if k not in NOT_TRAINING}
    others = {path: seen for path, (method, seen) in method_sections().items() if method != experiment.get("method")}
    return _without_neutral(kept, (), neutral_defaults(), {**not_training_settings(), **others})


def _canonical(value: Any) -> Any:
    # 1 and 1.0 train alike (YAML gives either), so an integral float hashes as the int
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def training_hash(experiment: dict) -> str:
    """sha256 (hex) of the experiment's training-relevant settings: the dataset, model, method, seed,
    every train/prune/data setting and its own method's settings; not its names, another method's
    settings (:data:`METHOD_MARK`), how it runs (``measure``, GPUs, compile: :data:`NOT_TRAINING_MARK`),
    nor the neutral settings at their defaults (:data:`NEUTRAL_MARK`). The runtime settings (``device``,
    ``data_dir``, ``download``, ``output_dir``) are not part of an experiment at all.

    The training rules take it as their parameter, so that it alone decides when Snakemake retrains;
    checkpoints and summaries carry it as ``config_hash``; a file whose hash differs from the current
    experiment's was trained under other settings."""
    text = json.dumps(_canonical(training_settings(experiment)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def same_training(recorded_hash: str | None, recorded_experiment: Any, want: str) -> bool:
    """Whether a state recorded under ``recorded_hash`` (with its resolved experiment, where it kept one)
    trained what the hash ``want`` names now: the same hash, or the same settings hashed by an earlier
    prunebench's rules (re-hashed here by today's)."""
    if recorded_hash == want:
        return True
    return isinstance(recorded_experiment, dict) and training_hash(recorded_experiment) == want


def job_experiment(config: dict, name: str, config_hash: str | None = None) -> tuple[dict, ResolvedConfig]:
    """The experiment (or state-0 run) ``name`` of a workflow job, resolved from the job's config.

    The training rules pass only the name and the :func:`training_hash` they were planned with (their
    rerun trigger): the job resolves the experiment itself, and refuses to train when its config does
    not resolve to the settings Snakemake planned (a config file edited between the plan and the job).
    """
    resolved = resolve_config(config, source="config", build_models=False)  # the prepare rule built them
    experiment = resolved.experiments.get(name) or resolved.state0_runs.get(name)
    if experiment is None:
        raise ConfigError(f"the job's config has no experiment {name!r}; was the config edited while the workflow ran?")
    have = training_hash(experiment)
    if config_hash is not None and have != config_hash:
        raise ConfigError(
            f"{name}: the job's config resolves to training settings {have[:12]}, but the workflow planned the "
            f"job under {config_hash[:12]}; the config changed while the workflow ran: rerun snakemake"
        )
    return experiment, resolved


def settings_diff(trained: dict, current: dict, limit: int = 4) -> list[str]:
    """The training settings that differ between two resolved experiments, as ``key: old -> new``."""

    def flat(value, prefix=""):
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                out.update(flat(v, f"{prefix}{k}."))
            return out
        return {prefix[:-1]: _canonical(value)}

    a, b = flat(training_settings(trained)), flat(training_settings(current))
    diff = [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in sorted(a.keys() | b.keys())
            if a.get(k, "(unset)") != b.get(k, "(unset)")]  # fmt: skip
    return diff[:limit] + ([f"and {len(diff) - limit} more"] if len(diff) > limit else [])


def group_methods(spec: dict) -> list[str]:
    """The methods a group runs: its ``methods``, and ``dense`` after them when the group prunes and keeps
    its ``dense_control`` (the equally trained dense reference of SPEC §2)."""
    methods = list(spec["methods"])
    if spec.get("dense_control", True) and "dense" not in methods and set(methods) - {"dense"}:
        methods.append("dense")
    return methods


def resolve_config(config: dict, source: str = "config", *, build_models: bool | set[str] = True) -> ResolvedConfig:
    """Validate ``config`` and expand its matrix into fully resolved experiments.

    Each experiment is a plain dict (JSON types only), so it can be stored in checkpoints and
    passed to Snakemake as a rule parameter.

    ``build_models`` also checks the models by building them on the `meta` device (timm's model
    names, kwargs, image and patch sizes, the groups each has for prune.groups and round_to): True
    for every model, a set of model keys for those only, False for none. That imports torch and timm
    (seconds), so the Snakemake process passes False and the workflow's prepare rule, which runs
    before any training job, does these checks (as does `prunebench validate`).
    """
    config = _numbers_read(config, load_schema(), load_schema())
    validate_raw(config, source)
    schema = load_schema()
    settings_defaults = _defaults_of(schema["$defs"]["settings"])
    base = deep_merge(settings_defaults, config.get("defaults") or {})
    runtime = runtime_settings(config)

    models = {}
    for key, model in config["models"].items():
        model = deep_merge(_defaults_of(schema["$defs"]["model"]), model)
        built = build_models is True or (build_models and key in build_models)
        try:
            if built:
                from prunebench.models import check_arch  # imported late: pulls in torch and timm

                check_arch(model["arch"])
            else:
                check_arch_name(model["arch"])
        except Exception as exc:
            raise ConfigError(f"invalid {source}:\n  models.{key}.arch = {model['arch']!r}: {exc}") from None
        if isinstance(model["pretrained"], str) and not Path(model["pretrained"]).is_file():
            raise ConfigError(
                f"invalid {source}:\n  models.{key}.pretrained = {model['pretrained']!r}: no such file; "
                "give the path of a local weights file, true for the timm hub, or false"
            )
        if built:
            _check_model(source, key, model)
        models[key] = model

    folders = _folder_datasets(config, source)
    experiments: dict[str, dict] = {}
    group_defaults = _defaults_of(schema["$defs"]["group"])
    for group, spec in config["experiments"].items():
        spec = deep_merge(group_defaults, spec)
        for i, model_key in enumerate(spec["models"]):
            if model_key not in models:
                raise ConfigError(
                    f"invalid {source}:\n  experiments.{group}.models[{i}] = {model_key!r}: "
                    f"not defined under `models`; defined: {', '.join(sorted(models))}"
                )
        for i, dataset in enumerate(spec["datasets"]):
            if dataset not in BUILTIN_DATASETS and dataset not in folders:
                raise ConfigError(
                    f"invalid {source}:\n  experiments.{group}.datasets[{i}] = {dataset!r}: not a built-in dataset "
                    f"({', '.join(BUILTIN_DATASETS)}) nor defined under the top-level `datasets` "
                    f"({', '.join(sorted(folders)) or 'none defined'}); define it there (kind: imagefolder, root: ...)"
                )
        settings = deep_merge(base, spec.get("overrides") or {})
        settings["prune"].setdefault("budget", default_budget(settings["prune"]["groups"]))
        if "reprune" in spec["methods"]:
            _check_reprune(source, group, spec, models, settings)
        _check_settings(source, group, spec, models, settings, build_models)
        timed, n = settings["measure"]["states"], settings["prune"]["states"]
        if isinstance(timed, list) and max(timed) >= n:
            raise ConfigError(
                f"invalid {source}:\n  experiments.{group}: measure.states lists state {max(timed)}, but the group "
                f"has {n} states (0..{n - 1}); list states below {n} (in the group's overrides if other groups "
                'have more), or use "last" or "all"'
            )
        for dataset, model_key, method, seed in itertools.product(
            spec["datasets"], spec["models"], group_methods(spec), spec["seeds"]
        ):
            name = experiment_name(group, dataset, model_key, method, seed)
            experiments[name] = {
                "name": name,
                "group": group,
                "dataset": dataset,
                "model_key": model_key,
                "model": copy.deepcopy(models[model_key]),
                "method": method,
                "seed": seed,
                **copy.deepcopy(settings),
            }
            if dataset in folders:
                experiments[name]["dataset_source"] = copy.deepcopy(folders[dataset])
    state0_of, state0_runs = {}, {}
    share = config.get("share_state0", schema["properties"]["share_state0"]["default"])
    for name, exp in experiments.items():
        run, trained = shared_state0_run(exp) if share and shares_state0(exp) else (name, exp)
        state0_of[name], state0_runs[run] = run, trained
    reference_of = dense_reference_runs(experiments, state0_of, share)
    for name, run in reference_of.items():
        if run not in state0_runs:  # a group of REPrune only: its dense reference is trained all the same
            state0_runs[run] = shared_state0_run(experiments[name])[1]
    resources = deep_merge(_defaults_of(schema["properties"]["resources"]), config.get("resources") or {})
    for key in resources["models"]:
        if key not in models:
            raise ConfigError(
                f"invalid {source}:\n  resources.models.{key}: not defined under `models`; defined: "
                f"{', '.join(sorted(models))}"
            )
    return ResolvedConfig(
        output_dir=config.get("output_dir", schema["properties"]["output_dir"]["default"]),
        runtime=runtime,
        resources=resources,
        weights_dir=config.get("weights_dir"),
        experiments=experiments,
        state0_of=state0_of,
        state0_runs=state0_runs,
        reference_of=reference_of,
    )


# The datasets prunebench loads itself (prunebench.data.datasets.DATASETS; a test checks they agree)
BUILTIN_DATASETS = ("cifar10", "cifar100", "digits", "synthetic")


def _folder_datasets(config: dict, source: str) -> dict[str, dict]:
    """The config's image-folder datasets (its top-level `datasets`), defaults filled in."""
    defaults = _defaults_of(load_schema()["$defs"]["dataset"])
    out = {}
    for name, spec in (config.get("datasets") or {}).items():
        if name in BUILTIN_DATASETS:
            raise ConfigError(
                f"invalid {source}:\n  datasets.{name}: the name of a built-in dataset; give the image folder "
                "another name (e.g. imagenet)"
            )
        out[name] = deep_merge(defaults, spec)
    return out


# Every built-in dataset prunebench loads comes as 32 x 32 RGB images (see prunebench.data.datasets).
DATASET_IMAGE_SIZE = 32


def _check_model(source: str, key: str, model: dict) -> None:
    """Build the model on the `meta` device (no memory, no weights) and check the image and patch sizes
    it takes, so that kwargs and sizes that cannot work fail here, not in a running job."""
    where = f"invalid {source}:\n  models.{key}"
    img = model.get("img_size") or DATASET_IMAGE_SIZE
    patch = model.get("patch_size")
    if patch and patch > img:
        seen = "its img_size" if model.get("img_size") else "the datasets' size; no img_size is set"
        fits = ", ".join(str(d) for d in (4, 8, 16) if d < img and img % d == 0) or "1"
        raise ConfigError(
            f"{where}.patch_size = {patch}: larger than the {img} px images the model sees ({seen}); "
            f"use a patch_size that divides {img} (e.g. {fits}), or a larger img_size"
        )
    problem = _model_problem(_meta_spec(model))
    if problem is None:
        return
    kind, detail = problem
    kwargs = model.get("kwargs") or {}
    if kind == "unknown_kwarg":
        raise ConfigError(
            f"{where}.kwargs.{detail}: {model['arch']} takes no argument {detail!r}; remove it (kwargs go to "
            f"the model's constructor: {'widths' if family_of(model['arch']) == 'cnn' else 'depth, embed_dim, num_heads, mlp_ratio...'})"
        )
    if kind == "heads":
        raise ConfigError(
            f"{where}.kwargs = {kwargs}: {model['arch']}'s embedding width (embed_dim) is not a multiple of "
            f"num_heads; choose num_heads that divides embed_dim (e.g. embed_dim 96 with num_heads 3, 4, 6 or 8)"
        )
    if kind == "patch":
        raise ConfigError(
            f"{where}: {model['arch']} cuts {detail} px patches from {img} px images; set models.{key}.patch_size "
            f"to one that divides {img} (e.g. 4 or 8), or a larger img_size"
        )
    if kind == "img_size":
        raise ConfigError(
            f"{where}: {model['arch']} is built for {detail} px images but is given {img} px ones; set "
            f"models.{key}.img_size (images are resized to it on the device), e.g. img_size: {img}"
        )
    raise ConfigError(
        f"{where} (arch {model['arch']}, img_size {model.get('img_size')}, patch_size {patch}, kwargs "
        f"{kwargs}) cannot be built: {detail}; fix the model's settings"
    )


def _meta_spec(model: dict) -> str:
    from prunebench.models import model_spec

    return json.dumps(model_spec(model, num_classes=10), sort_keys=True)


@cache
def _model_problem(spec_json: str) -> tuple[str, str] | None:
    """Why the model of ``spec_json`` cannot be built or take its images, or None (cached per spec)."""
    layers = _meta_layers(spec_json)
    return layers if isinstance(layers, tuple) else None


@cache
def _meta_layers(spec_json: str) -> list[tuple[str, str, int, int]] | tuple[str, str]:
    """The prunable layers (option, layer, groups, entries per group) of a model spec built on the
    `meta` device, or (problem kind, detail) when it cannot be built or run."""
    import torch

    from prunebench.models import build_model
    from prunebench.pruning.groups import KIND_OF_OPTION, groupsets_of

    spec = json.loads(spec_json)
    size = spec.get("img_size") or DATASET_IMAGE_SIZE
    try:
        with torch.device("meta"):
            model = build_model(spec)
    except Exception as exc:
        text = str(exc)
        if m := re.search(r"unexpected keyword argument '(\w+)'", text):
            return "unknown_kwarg", m.group(1)
        if "divisible by num_heads" in text:
            return "heads", text
        if m := re.search(r"doesn't match model \((\d+)\)", text):
            return "img_size", m.group(1)
        return "other", f"{type(exc).__name__}: {text}"
    # What a forward pass would find, without its cost (a forward of ResNet-56 on meta takes a second):
    # a ViT takes images of exactly its img_size, cut in patches no larger than the image.
    embed = getattr(model, "patch_embed", None)
    if embed is not None:
        if max(embed.patch_size) > size:
            return "patch", str(max(embed.patch_size))
        if embed.img_size and getattr(embed, "strict_img_size", True) and tuple(embed.img_size) != (size, size):
            return "img_size", str(embed.img_size[0])
    option_of = {kind: option for option, kind in KIND_OF_OPTION.items()}
    return [(option_of[gs.kind], gs.layer, gs.size, gs.slices[0].width) for gs in groupsets_of(model)]


def _check_settings(
    source: str, group: str, spec: dict, models: dict, settings: dict, build_models: bool | set[str] = True
) -> None:
    """Settings that the schema cannot judge alone: bounds between keys, and the groups each model has
    (for the models in ``build_models``, see :func:`resolve_config`)."""
    where = f"invalid {source}:\n  experiments.{group}"
    train, prune = settings["train"], settings["prune"]
    if train["min_lr"] > train["lr"]:
        raise ConfigError(
            f"{where}: train.min_lr = {train['min_lr']} is above train.lr = {train['lr']} (from defaults or the "
            "group's overrides); the learning rate decays from lr to min_lr, so set min_lr <= lr"
        )
    world = train["gpus"] * train["nodes"]
    if train["batch_size"] % world:
        raise ConfigError(
            f"{where}: train.batch_size = {train['batch_size']} does not split into {world} equal shards "
            f"(train.gpus x train.nodes = {train['gpus']} x {train['nodes']}); set batch_size to a multiple "
            f"of {world} (it is the global batch of all GPUs together)"
        )
    if set(spec["methods"]) <= {"dense"}:
        return  # nothing is pruned: the groups do not matter
    for model_key in spec["models"]:
        if not (build_models is True or (build_models and model_key in build_models)):
            continue
        layers = _meta_layers(_meta_spec(models[model_key]))
        arch = models[model_key]["arch"]
        has = sorted({option for option, *_ in layers}, key=list(KIND_OPTIONS).index)
        pruned = [layer for layer in layers if layer[0] in prune["groups"]]
        if not pruned:
            raise ConfigError(
                f"{where}: prune.groups = {prune['groups']} matches no group of model {model_key!r} ({arch}), "
                f"which has {', '.join(has) or 'no prunable groups'}; set prune.groups to "
                f"{has} (in defaults or the group's overrides), or nothing would be pruned"
            )
        round_to = prune["round_to"]
        if round_to > 1 and set(spec["methods"]) - {"dense", "reprune"}:
            # a layer keeps a multiple of round_to entries, at least one: a layer of fewer entries keeps all
            shrinkable = [n for _, _, n, w in pruned if round_to // math.gcd(round_to, w) < n]
            if not shrinkable:
                widest = max(n * w for _, _, n, w in pruned)
                raise ConfigError(
                    f"{where}: prune.round_to = {round_to}: no layer of model {model_key!r} ({arch}) could be "
                    f"pruned, since each keeps at least {round_to} entries and the widest pruned layer has "
                    f"{widest}; set round_to well below {widest} (e.g. 8), or 1 to round nothing"
                )


KIND_OPTIONS = ("heads", "neurons", "channels")


def _check_reprune(source: str, group: str, spec: dict, models: dict, settings: dict) -> None:
    """REPrune prunes CNN channels during training: refuse setups where it could not."""
    where = f"invalid {source}:\n  experiments.{group}"
    for model_key in spec["models"]:
        if family_of(models[model_key]["arch"]) != "cnn":
            raise ConfigError(
                f"{where}: method reprune prunes CNN channels, but model {model_key!r} "
                f"({models[model_key]['arch']}) is not a prunebench CNN; run reprune in a group of CNNs"
            )
    if "channels" not in settings["prune"]["groups"]:
        raise ConfigError(f"{where}: method reprune needs `channels` in prune.groups (set it in the group's overrides)")
    if settings["prune"].get("round_to", 1) > 1:
        raise ConfigError(
            f"{where}: prune.round_to = {settings['prune']['round_to']}, but reprune keeps any number of "
            "channels per layer (its counts come from one |BN gamma| threshold), so its widths would not be "
            "rounded like the other methods'; set round_to: 1 in this group, or run reprune in a group of its own"
        )
    rcfg, total = settings["reprune"], chain_epochs(settings)
    if round(rcfg["prune_until"] * total) < rcfg["interval_epochs"] or rcfg["interval_epochs"] >= total:
        raise ConfigError(
            f"{where}: reprune would never prune: its first event comes after {rcfg['interval_epochs']} trained "
            f"epochs, which must be within prune_until x {total} epochs and before the chain's last epoch; "
            "raise reprune.prune_until or lower reprune.interval_epochs"
        )


def state_epochs(experiment: dict, state: int) -> int:
    """Training epochs of ``state`` (state 0 may train longer than pruned states), before any
    masked fine-tune (:func:`finetune_epochs`)."""
    train = experiment["train"]
    if state == 0 and train.get("state0_epochs"):
        return int(train["state0_epochs"])
    return int(train["epochs"])


def chain_epochs(experiment: dict) -> int:
    """Training epochs of the whole state chain (what REPrune's schedule spans)."""
    return sum(state_epochs(experiment, k) for k in range(experiment["prune"]["states"]))


def finetune_epochs(experiment: dict, state: int) -> int:
    """Epochs of RSST's masked fine-tune after its hard mask, at the end of every pruned state."""
    if experiment["method"] == "rsst" and state >= 1:
        return int(experiment.get("rsst", {}).get("finetune_epochs", 0))
    return 0
