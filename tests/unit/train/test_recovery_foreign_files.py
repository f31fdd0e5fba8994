"""Every checkpoint a command reads must be what it is meant to be, trained under the current settings."""

import json

import pytest
import torch
import yaml

from prunebench.cli import main
from prunebench.config import training_hash
from prunebench.errors import CheckpointError
from prunebench.export.run import export_checkpoint
from prunebench.train.checkpoint import load_trained, save_checkpoint
from prunebench.train.job import train_state
from prunebench.train.recovery import file_digests
from tests.conftest import resolved_experiment
from tests.unit.train.chains import paths


def test_training_hash_ignores_names_and_timing_but_not_settings(tiny_config):
    exp = resolved_experiment(tiny_config)
    same = {**exp, "name": "renamed", "group": "g2", "model_key": "m", "measure": {"enabled": True}}
    assert training_hash(same) == training_hash(exp)
    assert training_hash({**exp, "train": {**exp["train"], "lr": 0.002 * 1.0}}) == training_hash(exp)
    assert training_hash({**exp, "train": {**exp["train"], "epochs": 1.0}}) == training_hash(exp)  # YAML 1 vs 1.0
    assert training_hash({**exp, "train": {**exp["train"], "lr": 0.003}}) != training_hash(exp)
    assert training_hash({**exp, "method": "rsst"}) != training_hash(exp)
    assert training_hash({**exp, "seed": 1}) != training_hash(exp)


@pytest.fixture
def trained(tiny_config, tmp_path):
    """A 2-state Refill run trained through the command line, and its config file."""
    tiny_config["share_state0"] = False
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config))
    exp = resolved_experiment(tiny_config)
    for k in (0, 1):
        assert main(["train-state", str(cfg), exp["name"], str(k), "--results", str(tmp_path / "results")]) == 0
    return tiny_config, cfg, exp, tmp_path / "results" / exp["name"]


def test_checkpoints_and_summaries_carry_the_config_hash(trained):
    _, _, exp, run = trained
    for k in (0, 1):
        assert torch.load(run / f"state{k}/last.pt", weights_only=True)["config_hash"] == training_hash(exp)
        assert json.loads((run / f"state{k}/summary.json").read_text())["config_hash"] == training_hash(exp)


def test_train_state_refuses_a_previous_state_trained_under_other_settings(trained, capsys):
    config, cfg, exp, run = trained
    config["defaults"]["train"]["lr"] = 0.01
    cfg.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["train-state", str(cfg), exp["name"], "1", "--results", str(run.parent)]) == 2
    err = capsys.readouterr().err
    assert f"{run}/state0/last.pt was trained under other settings than {exp['name']} has now" in err
    assert (
        "train.lr: 0.002 -> 0.01" in err and f"prunebench retrain --config CONFIG {exp['name']} --from-state 0" in err
    )
    assert err.count("prunebench:") == 1


def test_checkpoint_of_an_older_prunebench_is_checked_through_its_stored_config(trained):
    _, _, exp, run = trained
    ckpt = torch.load(run / "state0/last.pt", weights_only=True)
    del ckpt["config_hash"]
    save_checkpoint(run / "state0/last.pt", ckpt)
    assert load_trained(run / "state0/last.pt", exp, 0)["state"] == 0  # its config is the current one
    with pytest.raises(CheckpointError, match="trained under other settings .*prune.target_sparsity: 0.5 -> 0.7"):
        load_trained(run / "state0/last.pt", {**exp, "prune": {**exp["prune"], "target_sparsity": 0.7}}, 0)
    del ckpt["config"]
    save_checkpoint(run / "state0/last.pt", ckpt)
    with pytest.raises(CheckpointError, match="records no settings it was trained under"):
        load_trained(run / "state0/last.pt", exp, 0)


def test_export_refuses_another_experiments_checkpoint_copied_into_a_final_state(trained, tmp_path, capsys):
    config, _, exp, run = trained
    last = run / "state1/last.pt"
    ckpt = torch.load(last, weights_only=True)
    save_checkpoint(last, {**ckpt, "experiment": "other-experiment"})
    assert main(["export", str(last), str(tmp_path / "model.pt")]) == 2
    assert "is for experiment 'other-experiment', but" in capsys.readouterr().err
    # the same experiment, retrained under other settings elsewhere
    other = {**exp, "train": {**exp["train"], "lr": 0.01}}
    save_checkpoint(last, {**ckpt, "config": other, "config_hash": training_hash(other)})
    assert main(["export", str(last), str(tmp_path / "model.pt")]) == 2
    assert "was trained under other settings than the state that wrote" in capsys.readouterr().err
    # another run of the very same experiment and settings: not the checkpoint its summary describes
    save_checkpoint(last, {**ckpt, "metrics": {**ckpt["metrics"], "test_acc": -1.0}})
    assert main(["export", str(last), str(tmp_path / "model.pt")]) == 2
    assert "is not the last checkpoint of the run that wrote" in capsys.readouterr().err
    assert not (tmp_path / "model.pt").exists()
    save_checkpoint(last, ckpt)
    assert main(["export", str(last), str(tmp_path / "model.pt")]) == 0
    # the workflow's export also names the experiment it expects, as configured now
    with pytest.raises(CheckpointError, match="trained under other settings than"):
        export_checkpoint(last, tmp_path / "m2.pt", experiment={**exp, "seed": 3})


def test_status_and_report_mark_states_trained_under_other_settings_as_stale(trained, capsys):
    config, cfg, exp, run = trained
    assert main(["status", "--config", str(cfg), "--results", str(run.parent)]) == 0
    out = capsys.readouterr().out
    assert "2/2" in out and "stale" not in out
    config["defaults"]["train"]["weight_decay"] = 0.05
    cfg.write_text(yaml.safe_dump(config))
    assert main(["status", "--config", str(cfg), "--results", str(run.parent)]) == 0
    out = capsys.readouterr().out
    assert "0/2 (2 stale)" in out and f"stale: {exp['name']} state 1: trained under other settings" in out
    assert main(["report", "--config", str(cfg), "--results", str(run.parent)]) == 0
    assert f"{exp['name']} state 0: trained under other settings" in capsys.readouterr().err


def test_a_previous_state_of_another_run_is_refused_by_the_state_runner(tiny_config, tmp_path):
    exp = resolved_experiment(tiny_config)
    train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1)
    ckpt = torch.load(tmp_path / "state0/last.pt", weights_only=True)
    save_checkpoint(tmp_path / "state0/last.pt", {**ckpt, "state": 4})
    summary = json.loads((tmp_path / "state0/summary.json").read_text())
    summary["files"] = file_digests(tmp_path / "state0", ("init.pt", "last.pt", "best.pt"))
    (tmp_path / "state0/summary.json").write_text(json.dumps(summary))  # a summary that came with it
    with pytest.raises(CheckpointError, match=r"state0/last.pt is for state 4, expected 0"):
        train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
