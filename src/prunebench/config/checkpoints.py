"""Whether a state checkpoint is of an experiment as it is configured now: the same experiment, method,
state and model, trained under the same settings (:func:`prunebench.config.same_training`).

A checkpoint here is the dict :func:`prunebench.results.checkpoint.load_checkpoint` returns; the
trainer checks the states it starts from, the exporter the state it exports, by the same rule.
"""

from __future__ import annotations

from pathlib import Path

from prunebench.config.identity import same_training, settings_diff, training_hash
from prunebench.errors import CheckpointError
from prunebench.results.layout import retrain_command


def trained_hash(ckpt: dict) -> str | None:
    """The ``config_hash`` a checkpoint was trained under; for one written before prunebench stored it,
    the hash of the resolved config it holds (None when it holds neither)."""
    if ckpt.get("config_hash"):
        return ckpt["config_hash"]
    return training_hash(ckpt["config"]) if isinstance(ckpt.get("config"), dict) else None


def check_trained_for(ckpt: dict, path: str | Path, experiment: dict, state: int, spec: dict | None = None) -> None:
    """Refuse a checkpoint that is not state ``state`` of ``experiment`` as configured now: another
    experiment, method, state or model, or the same one trained under other settings."""
    path, name = Path(path), experiment["name"]
    fix = (
        f"restore the config it was trained with, or train it and the later states of {name} again with the "
        f"current settings: {retrain_command(path.parent)}"
    )
    for key, want in (("experiment", name), ("method", experiment["method"]), ("state", state)):
        if ckpt.get(key) != want:
            raise CheckpointError(
                f"checkpoint {path} is for {key} {ckpt.get(key)!r}, expected {want!r}: it was copied from "
                f"another run or left by an older one; {fix}"
            )
    if spec is not None and ckpt["model_spec"] != spec:
        raise CheckpointError(
            f"checkpoint {path} was trained for model {ckpt['model_spec']}, but {name} now builds {spec}; {fix}"
        )
    have, want = trained_hash(ckpt), training_hash(experiment)
    if have is None:
        raise CheckpointError(
            f"checkpoint {path} records no settings it was trained under, so it cannot be checked against "
            f"{name}'s config; {fix}"
        )
    if not same_training(have, ckpt.get("config"), want):
        diff = settings_diff(ckpt["config"], experiment) if isinstance(ckpt.get("config"), dict) else []
        what = f" ({'; '.join(diff)})" if diff else ""
        raise CheckpointError(
            f"checkpoint {path} was trained under other settings than {name} has now{what}: config hash "
            f"{have[:12]} in the file, {want[:12]} expected; {fix}"
        )
