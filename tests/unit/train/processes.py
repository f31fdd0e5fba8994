"""Helpers of the multi-process training tests: a state trained by several gloo processes, its metrics rows."""

from __future__ import annotations

import json

import yaml

from prunebench.cli import main
from tests.conftest import resolved_experiment

TOL = 1e-5


def config_for(tiny_config, gpus, **train):
    tiny_config["share_state0"] = False
    tiny_config["defaults"]["train"].update(gpus=gpus, batch_size=32, **train)
    tiny_config["defaults"]["prune"].update(importance="taylor", taylor_batches=2)  # a ranking with gradients
    tiny_config["defaults"]["data"]["train_limit"] = 128
    return tiny_config


def train_chain(config, tmp_path, name, states=(0, 1)):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(config))
    exp = resolved_experiment(config)
    for k in states:
        args = ["train-state", str(cfg), exp["name"], str(k), "--results", str(tmp_path / name), "--threads", "1"]
        assert main(args) == 0
    return tmp_path / name / exp["name"]


def metric_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]
