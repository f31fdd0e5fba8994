"""Helpers of the training tests: a chain of tiny states, its files, an interrupted state."""

from __future__ import annotations

from prunebench.models import build_model
from prunebench.pruning.groups import groupsets_of, param_masks
from prunebench.results.layout import StatePaths
from prunebench.train.job import train_state
from tests.conftest import resolved_experiment


def paths(root, k):
    return StatePaths(
        root / f"state{k}",
        root / "recovery" / f"state{k}",
        root / f"state{k - 1}/last.pt" if k else None,
        root / "state0/init.pt",
    )


def run_chain(tiny_config, root, method, states=2, **overrides):
    tiny_config["defaults"]["prune"]["states"] = states
    for section, values in overrides.items():
        tiny_config["defaults"].setdefault(section, {}).update(values)
    exp = resolved_experiment(tiny_config, method)
    return exp, [train_state(exp, k, paths(root, k), device="cpu", download=False, threads=1) for k in range(states)]


def pruned_weights_are_zero(ckpt) -> bool:
    model = build_model(ckpt["model_spec"])
    model.load_state_dict(ckpt["state_dict"])
    gsets = groupsets_of(model, ["heads", "neurons"])
    pm = param_masks(model, gsets, ckpt["masks"])
    params = dict(model.named_parameters())
    assert pm, "nothing was pruned"
    return all(not (params[n] * (1 - m)).any() for n, m in pm.items())


def interrupt_after_epoch(monkeypatch, epoch: int):
    """Make the state runner die (like a kill) right after it finished ``epoch`` of a state."""
    import prunebench.train.runner as runner_module

    real, calls = runner_module.save_resume, []

    def save_then_die(paths, *args):
        real(paths, *args)
        prog = args[-1]
        if prog.epoch == epoch:
            calls.append(prog.epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "save_resume", save_then_die)
    return calls
