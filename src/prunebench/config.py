"""Configuration: validation against the JSON schema, defaults, and the experiment matrix.

This is the one place that turns a config mapping into experiments. The Snakemake layer and the
command-line tool both call :func:`resolve_config`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from prunebench.errors import ConfigError

SCHEMA_RESOURCE = "config.schema.yaml"


def schema_path() -> Path:
    """Filesystem path of the config JSON schema shipped with the package."""
    return Path(str(resources.files("prunebench") / "resources" / SCHEMA_RESOURCE))


@cache
def load_schema() -> dict:
    return yaml.safe_load(schema_path().read_text(encoding="utf-8"))


def load_config_file(path: str | Path) -> dict:
    """Read a YAML config with ``yaml.safe_load``; a missing or unparsable file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _where(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _where(error.absolute_path)
    value = error.instance
    kw, arg = error.validator, error.validator_value
    if kw == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed))
        hint = f"allowed keys: {', '.join(allowed)}" if allowed else "no keys are allowed here"
        return f"{where}: unknown key {', '.join(repr(e) for e in extra)}; {hint}"
    if kw == "enum":
        return f"{where} = {value!r}: must be one of {', '.join(map(str, arg))}"
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
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [_describe(e) for e in errors]
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(dict.fromkeys(lines)))


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

    def by(self, key: str) -> dict[Any, list[str]]:
        """Experiment names grouped by one of their identifying fields (dataset, model, method...)."""
        out: dict[Any, list[str]] = {}
        for name, exp in self.experiments.items():
            out.setdefault(exp[key], []).append(name)
        return out


RUNTIME_KEYS = ("data_dir", "download", "device")


def runtime_settings(config: dict) -> dict:
    """Settings that say where and how to run, not what to compute (they never trigger reruns)."""
    props = load_schema()["properties"]
    return {k: config.get(k, props[k]["default"]) for k in RUNTIME_KEYS}


def experiment_name(group: str, dataset: str, model: str, method: str, seed: int) -> str:
    """The experiment's folder name under results/."""
    return f"{group}-{dataset}-{model}-{method}-s{seed}"


SHARED_DIR = "shared"


def shares_state0(experiment: dict) -> bool:
    """Whether the experiment's state 0 is plain dense training, the same for every such method.
    REPrune prunes from its first epoch on, so its state 0 is its own."""
    return experiment["method"] != "reprune"


def shared_state0_run(experiment: dict) -> tuple[str, dict]:
    """The run that trains state 0 for all methods of the experiment's group, dataset, model and seed:
    its folder under results/, and the experiment it trains (the group's settings, method dense)."""
    name = f"{experiment['group']}-{experiment['dataset']}-{experiment['model_key']}-s{experiment['seed']}"
    return f"{SHARED_DIR}/{name}", {**experiment, "name": name, "method": "dense"}


# Fields of a resolved experiment that do not change what a state trains: its labels (the
# experiment, method and state a checkpoint is for are checked on their own) and the throughput timing.
NOT_TRAINING = ("name", "group", "model_key", "measure")


def training_settings(experiment: dict) -> dict:
    """The part of a resolved experiment that decides what its states train (see :func:`training_hash`)."""
    return {k: v for k, v in experiment.items() if k not in NOT_TRAINING}


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
    """sha256 (hex) of the experiment's training-relevant settings: the dataset, model, method, seed and
    every train/prune/method/data setting, not its names nor the throughput timing (``measure``).
    Checkpoints and summaries carry it as ``config_hash``; a file whose hash differs from the current
    experiment's was trained under other settings."""
    text = json.dumps(_canonical(training_settings(experiment)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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


def resolve_config(config: dict, source: str = "config") -> ResolvedConfig:
    """Validate ``config`` and expand its matrix into fully resolved experiments.

    Each experiment is a plain dict (JSON types only), so it can be stored in checkpoints and
    passed to Snakemake as a rule parameter.
    """
    from prunebench.models import check_arch  # imported late: pulls in timm

    validate_raw(config, source)
    schema = load_schema()
    settings_defaults = _defaults_of(schema["$defs"]["settings"])
    base = deep_merge(settings_defaults, config.get("defaults") or {})
    runtime = runtime_settings(config)

    models = {}
    for key, model in config["models"].items():
        model = deep_merge(_defaults_of(schema["$defs"]["model"]), model)
        try:
            check_arch(model["arch"])
        except Exception as exc:
            raise ConfigError(f"invalid {source}:\n  models.{key}.arch = {model['arch']!r}: {exc}") from None
        if isinstance(model["pretrained"], str) and not Path(model["pretrained"]).is_file():
            raise ConfigError(
                f"invalid {source}:\n  models.{key}.pretrained = {model['pretrained']!r}: no such file; "
                "give the path of a local weights file, true for the timm hub, or false"
            )
        models[key] = model

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
        settings = deep_merge(base, spec.get("overrides") or {})
        if "reprune" in spec["methods"]:
            _check_reprune(source, group, spec, models, settings)
        for dataset, model_key, method, seed in itertools.product(
            spec["datasets"], spec["models"], spec["methods"], spec["seeds"]
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
    state0_of, state0_runs = {}, {}
    share = config.get("share_state0", schema["properties"]["share_state0"]["default"])
    for name, exp in experiments.items():
        run, trained = shared_state0_run(exp) if share and shares_state0(exp) else (name, exp)
        state0_of[name], state0_runs[run] = run, trained
    return ResolvedConfig(runtime=runtime, experiments=experiments, state0_of=state0_of, state0_runs=state0_runs)


def _check_reprune(source: str, group: str, spec: dict, models: dict, settings: dict) -> None:
    """REPrune prunes CNN channels during training: refuse setups where it could not."""
    from prunebench.models import family_of

    where = f"invalid {source}:\n  experiments.{group}"
    for model_key in spec["models"]:
        if family_of(models[model_key]["arch"]) != "cnn":
            raise ConfigError(
                f"{where}: method reprune prunes CNN channels, but model {model_key!r} "
                f"({models[model_key]['arch']}) is not a prunebench CNN; run reprune in a group of CNNs"
            )
    if "channels" not in settings["prune"]["groups"]:
        raise ConfigError(f"{where}: method reprune needs `channels` in prune.groups (set it in the group's overrides)")
    rcfg, total = settings["reprune"], chain_epochs(settings)
    if round(rcfg["prune_until"] * total) < rcfg["interval_epochs"]:
        raise ConfigError(
            f"{where}: reprune would never prune: prune_until x {total} epochs is before the first event at "
            f"epoch {rcfg['interval_epochs']}; raise reprune.prune_until or lower reprune.interval_epochs"
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
