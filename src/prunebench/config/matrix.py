"""The experiment matrix: a validated config expanded into fully resolved experiments, the shared
state-0 runs and the dense reference of each experiment.

This is the one place that turns a config mapping into experiments. The Snakemake layer and the
command-line tool both call :func:`resolve_config`.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunebench.archs import check_arch_name
from prunebench.config.checks import check_settings
from prunebench.config.identity import method_sections, training_hash
from prunebench.config.load import load_plugins, numbers_read, validate_raw
from prunebench.config.schema import deep_merge, defaults_of, load_schema
from prunebench.errors import ConfigError
from prunebench.pruning.registry import CONTROL, declared
from prunebench.pruning.schedule import default_budget
from prunebench.results.layout import OutputPaths, output_folders, shared_run


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
    typed = numbers_read({k: config[k] for k in RUNTIME_KEYS if k in config}, load_schema(), load_schema())
    return {k: typed.get(k, props[k]["default"]) for k in RUNTIME_KEYS}


def output_paths(config: dict) -> OutputPaths:
    """Where a config's results, logs and benchmarks go: ``results``, ``logs`` and ``benchmarks``
    under its ``output_dir`` (the working directory by default; the demo's is ``demo``)."""
    return output_folders(config.get("output_dir") or load_schema()["properties"]["output_dir"]["default"])


def experiment_name(group: str, dataset: str, model: str, method: str, seed: int) -> str:
    """The experiment's folder name under results/."""
    return f"{group}-{dataset}-{model}-{method}-s{seed}"


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
    """Whether the experiment's state 0 is plain dense training, the same for every such method: unless
    its method's class declares ``trains_own_state0`` (REPrune prunes from its first epoch on)."""
    return not declared(experiment["method"]).trains_own_state0


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
    return shared_run(name), {**trained, "name": name, "method": CONTROL}


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
        dense = [n for n in own if experiments[n]["method"] == CONTROL]
        ref = None if share or not own else (dense or own)[0]
        if ref is None:
            ref, _ = shared_state0_run(experiments[names[0]])
        out.update(dict.fromkeys(names, ref))
    return out


def job_experiment(config: dict, name: str, config_hash: str | None = None) -> tuple[dict, ResolvedConfig]:
    """The experiment (or state-0 run) ``name`` of a workflow job, resolved from the job's config.

    The training rules pass only the name and the :func:`training_hash` they were planned with (their
    rerun trigger): the job resolves the experiment itself, and refuses to train when its config does
    not resolve to the settings Snakemake planned (a config file edited between the plan and the job).
    """
    resolved = resolve_config(config, source="config")  # the prepare rule built the models
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


def group_methods(spec: dict) -> list[str]:
    """The methods a group runs: its ``methods``, and ``dense`` after them when the group prunes and keeps
    its ``dense_control`` (the equally trained dense reference of SPEC §2)."""
    methods = list(spec["methods"])
    if spec.get("dense_control", True) and CONTROL not in methods and any(declared(m).prunes for m in methods):
        methods.append(CONTROL)
    return methods


def resolve_config(config: dict, source: str = "config") -> ResolvedConfig:
    """Validate ``config`` and expand its matrix into fully resolved experiments.

    Each experiment is a plain dict (JSON types only), so it can be stored in checkpoints and
    passed to Snakemake as a rule parameter.

    Nothing here imports torch (the Snakemake process calls it): the checks that build the models on
    the `meta` device are :func:`prunebench.prepare.models.resolve_checked`'s. The config's ``plugins``
    are imported first: the methods they register are part of the schema.
    """
    load_plugins(config)
    config = numbers_read(config, load_schema(), load_schema())
    validate_raw(config, source)
    schema = load_schema()
    settings_defaults = defaults_of(schema["$defs"]["settings"])
    base = deep_merge(settings_defaults, config.get("defaults") or {})
    runtime = runtime_settings(config)

    models = {}
    for key, model in config["models"].items():
        model = deep_merge(defaults_of(schema["$defs"]["model"]), model)
        try:
            check_arch_name(model["arch"])
        except Exception as exc:
            raise ConfigError(f"invalid {source}:\n  models.{key}.arch = {model['arch']!r}: {exc}") from None
        if isinstance(model["pretrained"], str) and not Path(model["pretrained"]).is_file():
            raise ConfigError(
                f"invalid {source}:\n  models.{key}.pretrained = {model['pretrained']!r}: no such file; "
                "give the path of a local weights file, true for the timm hub, or false"
            )
        models[key] = model

    folders = _folder_datasets(config, source)
    experiments: dict[str, dict] = {}
    group_defaults = defaults_of(schema["$defs"]["group"])
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
        for method in spec["methods"]:  # each method's own checks (REPrune's: CNN channels, no round_to)
            group_models = {key: models[key] for key in spec["models"]}
            declared(method).check_config(f"invalid {source}:\n  experiments.{group}", group_models, settings)
        check_settings(source, group, spec, settings)
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
    resources = deep_merge(defaults_of(schema["properties"]["resources"]), config.get("resources") or {})
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
    defaults = defaults_of(load_schema()["$defs"]["dataset"])
    out = {}
    for name, spec in (config.get("datasets") or {}).items():
        if name in BUILTIN_DATASETS:
            raise ConfigError(
                f"invalid {source}:\n  datasets.{name}: the name of a built-in dataset; give the image folder "
                "another name (e.g. imagenet)"
            )
        out[name] = deep_merge(defaults, spec)
    return out
