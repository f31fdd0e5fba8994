"""Configuration: the YAML file and its JSON schema (:mod:`.load`, :mod:`.schema`), the experiment
matrix (:mod:`.matrix`), what a state trains and its hash (:mod:`.identity`), whether a checkpoint
was trained as an experiment is configured now (:mod:`.checkpoints`), the checks between keys
(:mod:`.checks`) and the epochs of a state (:mod:`.epochs`). Nothing here imports torch.

The names below are the package's interface; import them from ``prunebench.config``.
"""

from prunebench.config.checkpoints import check_trained_for, trained_hash
from prunebench.config.epochs import chain_epochs, finetune_epochs, state_epochs
from prunebench.config.identity import (
    HASHED_AS_MARK,
    METHOD_MARK,
    NEUTRAL_MARK,
    NOT_TRAINING,
    NOT_TRAINING_MARK,
    method_sections,
    neutral_defaults,
    not_training_settings,
    same_training,
    settings_diff,
    training_hash,
    training_settings,
)
from prunebench.config.load import load_config_file, load_plugins, validate_raw
from prunebench.config.matrix import (
    BUILTIN_DATASETS,
    OutputPaths,
    ResolvedConfig,
    default_budget,
    dense_reference_runs,
    experiment_name,
    group_methods,
    job_experiment,
    measured_states,
    output_paths,
    reference_key,
    resolve_config,
    runtime_settings,
    shared_state0_run,
    shares_state0,
)
from prunebench.config.schema import deep_merge, defaults_of, load_schema, schema_path

__all__ = [
    "BUILTIN_DATASETS",
    "HASHED_AS_MARK",
    "METHOD_MARK",
    "NEUTRAL_MARK",
    "NOT_TRAINING",
    "NOT_TRAINING_MARK",
    "OutputPaths",
    "ResolvedConfig",
    "chain_epochs",
    "check_trained_for",
    "deep_merge",
    "default_budget",
    "defaults_of",
    "dense_reference_runs",
    "experiment_name",
    "finetune_epochs",
    "group_methods",
    "job_experiment",
    "load_config_file",
    "load_plugins",
    "load_schema",
    "measured_states",
    "method_sections",
    "neutral_defaults",
    "not_training_settings",
    "output_paths",
    "reference_key",
    "resolve_config",
    "runtime_settings",
    "same_training",
    "schema_path",
    "settings_diff",
    "shared_state0_run",
    "shares_state0",
    "state_epochs",
    "trained_hash",
    "training_hash",
    "training_settings",
    "validate_raw",
]
