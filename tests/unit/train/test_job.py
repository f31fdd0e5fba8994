"""Running prune states: masks, RSST's end-of-state mask, determinism, files."""

import json
import os

import pytest
import torch

from prunebench.data import DeviceData, load_dataset
from prunebench.errors import CheckpointError, TrainingError
from prunebench.models import build_model
from prunebench.pruning.groups import MaskedParams, full_masks, groupsets_of, param_masks
from prunebench.pruning.registry import plan_state
from prunebench.results.checkpoint import load_checkpoint
from prunebench.results.layout import StatePaths
from prunebench.results.metrics import METRIC_FIELDS, TIMING_FIELDS, append_row, read_rows
from prunebench.train.job import train_state
from prunebench.train.loop import evaluate, make_optimizer, train_one_epoch
from tests.conftest import resolved_experiment
from tests.unit.train.chains import interrupt_after_epoch, paths, pruned_weights_are_zero, run_chain


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_refill_masked_weights_stay_exactly_zero_after_every_step(tiny_vit, tiny_config, optimizer):
    exp = resolved_experiment(tiny_config)
    cfg = {**exp["train"], "optimizer": optimizer, "lr": 0.05}
    gsets = groupsets_of(tiny_vit, ["heads", "neurons"])
    plan = plan_state("refill", tiny_vit, gsets, full_masks(gsets), {**exp["prune"], "target_sparsity": 0.6}, 1)
    pm = param_masks(tiny_vit, gsets, plan.train_masks)
    hard = MaskedParams(tiny_vit, pm)
    hard.mask_weights()
    opt = make_optimizer(tiny_vit, cfg)
    params = dict(tiny_vit.named_parameters())
    leaks = []
    opt.register_step_post_hook(
        lambda *_: leaks.append(max(float((params[n].detach() * (1 - m)).abs().max()) for n, m in pm.items()))
    )
    data = DeviceData(load_dataset("synthetic", train_limit=256), "cpu", 32)
    train_one_epoch(
        tiny_vit,
        data,
        opt,
        cfg,
        step0=0,
        total_steps=4,
        warmup_steps=0,
        generator=torch.Generator().manual_seed(0),
        hard=hard,
    )
    assert len(leaks) == 4 and max(leaks) == 0.0  # zero right after the optimizer step, before re-masking


def test_refill_chain_writes_masked_checkpoints_and_consistent_files(tiny_config, tmp_path):
    exp, (s0, s1) = run_chain(tiny_config, tmp_path, "refill")
    for name in ("init.pt", "last.pt", "best.pt", "metrics.jsonl", "summary.json"):
        assert (tmp_path / "state0" / name).is_file()
    assert not (tmp_path / "state1" / "init.pt").exists()
    # the progress files went when the state finished; its sealed outputs stay until a later job reads them,
    # as state 1 did state 0's
    assert sorted(p.name for p in (tmp_path / "recovery" / "state1").iterdir()) == ["finished", "trainer.lock"]
    assert not (tmp_path / "recovery" / "state0").exists()
    last = load_checkpoint(tmp_path / "state1/last.pt", expect={"experiment": exp["name"], "state": 1})
    assert pruned_weights_are_zero(last) and pruned_weights_are_zero(load_checkpoint(tmp_path / "state1/best.pt"))
    assert s1["density"] == pytest.approx(0.5) and s1["params_alive"] < s0["params_alive"] == s0["params_dense"]
    assert sum(k["head"] for k in s1["kept"].values()) == 3  # global: round(0.5 * 6 heads)
    rows = read_rows(tmp_path / "state1/metrics.jsonl")
    assert [r["epoch"] for r in rows] == [0, 1]
    for r in rows:
        assert {"experiment", "method", "dataset", "model", "seed", "state", "epoch", *METRIC_FIELDS} <= set(r)
        assert (r["experiment"], r["state"], r["method"]) == (exp["name"], 1, "refill")
    assert rows[1]["train_loss"] is not None and rows[0]["train_loss"] is None  # epoch 0: right after pruning
    assert s1["acc_after_pruning"] == rows[0]["test_acc"]
    assert s1["test_size"] > 0  # the reports' Wilson intervals need the number of test images
    assert json.loads((tmp_path / "state1/summary.json").read_text()) == s1


def test_rsst_checkpoint_and_accuracies_are_those_of_the_masked_model(tiny_config, tmp_path):
    exp, (_, s1) = run_chain(tiny_config, tmp_path, "rsst", train={"epochs": 2})
    last = load_checkpoint(tmp_path / "state1/last.pt")
    assert pruned_weights_are_zero(last)
    rows = read_rows(tmp_path / "state1/metrics.jsonl")
    assert rows[1]["reg_lambda"] < rows[2]["reg_lambda"] == pytest.approx(1.0)  # ramps over the whole state
    model = build_model(last["model_spec"])
    model.load_state_dict(last["state_dict"])
    data = DeviceData(load_dataset("synthetic", train_limit=256), "cpu", 32, ())
    _, test_acc = evaluate(model, data, "test", 256)["test"]
    assert test_acc == pytest.approx(s1["final_test_acc"])
    best = load_checkpoint(tmp_path / "state1/best.pt")
    assert pruned_weights_are_zero(best) and best["epoch"] == s1["best_epoch"]


def test_same_seed_same_metrics_on_cpu(tiny_config, tmp_path):
    exp = resolved_experiment(tiny_config)
    a = train_state(exp, 0, paths(tmp_path / "a", 0), device="cpu", threads=1)
    b = train_state(exp, 0, paths(tmp_path / "b", 0), device="cpu", threads=1)

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]

    assert strip(read_rows(tmp_path / "a/state0/metrics.jsonl")) == strip(
        read_rows(tmp_path / "b/state0/metrics.jsonl")
    )
    assert a["best_val_acc"] == b["best_val_acc"]


def test_previous_state_of_another_experiment_is_refused(tiny_config, tmp_path):
    exp = resolved_experiment(tiny_config)
    train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1)
    other = {**exp, "name": "other-experiment", "method": "rsst"}
    with pytest.raises(CheckpointError, match=r"state0/last.pt is for experiment '.*', expected 'other-experiment'"):
        train_state(other, 1, paths(tmp_path, 1), device="cpu", threads=1)


def test_corrupt_previous_checkpoint_is_named(tiny_config, tmp_path):
    exp = resolved_experiment(tiny_config)
    train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1)
    last = tmp_path / "state0/last.pt"
    size = last.stat().st_size
    last.write_bytes(last.read_bytes()[: size // 2])
    with pytest.raises(CheckpointError, match=rf"state0/last.pt is not the file .*{size} bytes recorded, {size // 2}"):
        train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
    summary = json.loads((tmp_path / "state0/summary.json").read_text())
    del summary["files"]  # a state 0 of an older prunebench: the loader finds the damage
    (tmp_path / "state0/summary.json").write_text(json.dumps(summary))
    with pytest.raises(CheckpointError, match=r"state0/last.pt is corrupt or truncated .* delete it and rerun"):
        train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)


def test_diverging_loss_stops_the_state_without_a_checkpoint(tiny_config, tmp_path):
    tiny_config["defaults"]["train"].update(optimizer="sgd", lr=10, momentum=0.0)  # the largest lr the schema allows
    exp = resolved_experiment(tiny_config)
    with pytest.raises(TrainingError, match="training loss is .*Lower train.lr"):
        train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1)
    assert not (tmp_path / "state0").exists()


def test_init_checkpoint_holds_the_weights_state0_started_from(tiny_config, tmp_path):
    exp = resolved_experiment(tiny_config)
    train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1)
    init = load_checkpoint(tmp_path / "state0/init.pt")["state_dict"]
    last = load_checkpoint(tmp_path / "state0/last.pt")["state_dict"]
    assert any(not torch.equal(init[k], last[k]) for k in init)  # rewind: init must not rewind to trained weights


@pytest.mark.parametrize("damage", ["none", "row_without_checkpoint", "truncated", "predecessor_rebuilt", "rows_lost"])
def test_recovery_checkpoint_is_used_only_when_whole_and_current(tiny_config, tmp_path, monkeypatch, caplog, damage):
    caplog.set_level("INFO", logger="prunebench")
    tiny_config["defaults"]["train"]["epochs"] = 3
    exp = resolved_experiment(tiny_config)
    train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1)
    with monkeypatch.context() as m:
        interrupt_after_epoch(m, 1)
        with pytest.raises(KeyboardInterrupt):
            train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
    resume = tmp_path / "recovery/state1/resume.pt"
    assert resume.is_file() and not (tmp_path / "state1").exists()
    if damage == "truncated":
        resume.write_bytes(resume.read_bytes()[:100])
    elif damage == "row_without_checkpoint":  # killed after epoch 2's metrics row, before its resume.pt
        progress = tmp_path / "recovery/state1/metrics.jsonl"
        append_row(progress, {**read_rows(progress)[-1], "epoch": 2})
    elif damage == "rows_lost":  # e.g. a node crash lost the metrics file's last lines
        progress = tmp_path / "recovery/state1/metrics.jsonl"
        progress.write_text(progress.read_text().splitlines(keepends=True)[0])
    elif damage == "predecessor_rebuilt":
        previous = tmp_path / "state0/last.pt"
        previous.write_bytes(previous.read_bytes())  # same bytes, but a new file: as after rerunning state 0
        os.utime(previous, ns=(1, 1))
    caplog.clear()
    before = torch.load(resume, weights_only=True)["progress"]["wall_seconds"] if damage == "none" else 0.0
    summary = train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
    assert [r["epoch"] for r in read_rows(tmp_path / "state1/metrics.jsonl")] == [0, 1, 2, 3]
    assert summary["wall_seconds"] > before > 0 or damage != "none"  # the killed process's time counts too
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if damage in ("none", "row_without_checkpoint"):
        assert "resuming state 1 after epoch 1 of 3" in caplog.text and not warnings
    else:
        expected = {"truncated": "is unreadable", "predecessor_rebuilt": "continues an older"}.get(
            damage, "has no complete metrics"
        )
        assert len(warnings) == 1 and expected in warnings[0] and "starting the state afresh" in warnings[0]
        assert "resuming state 1" not in caplog.text


def test_a_best_written_just_before_a_kill_does_not_outlive_its_rerun_epoch(tiny_config, tmp_path, monkeypatch):
    """A kill between an epoch's new best checkpoint and its resume.pt reruns that epoch. On a GPU the
    rerun is not bit-identical and may score lower: best.pt must then be the best of the epochs kept."""
    import prunebench.train.runner as runner_module

    tiny_config["defaults"]["train"]["epochs"] = 3
    exp = resolved_experiment(tiny_config, "refill")
    train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1)
    real_evaluate, real_save = runner_module.evaluate, runner_module.save_resume

    def val_scores(*scores):  # the val accuracy of each evaluation in turn
        it = iter(scores)

        def evaluate(*args, **kwargs):
            scores = real_evaluate(*args, **kwargs)
            if "val" not in scores:  # the best epoch's test, evaluated at the state's end
                return scores
            return {**scores, "val": (scores["val"][0], next(it))}

        return evaluate

    def die_before_saving_epoch_2(state_paths, *args):
        if args[-1].epoch == 2:
            raise KeyboardInterrupt
        real_save(state_paths, *args)

    with monkeypatch.context() as m:
        m.setattr(runner_module, "evaluate", val_scores(10.0, 20.0, 30.0))  # epochs 0, 1, 2: 2 is the best
        m.setattr(runner_module, "save_resume", die_before_saving_epoch_2)
        with pytest.raises(KeyboardInterrupt):
            train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
    recovery = tmp_path / "recovery/state1"
    assert sorted(p.name for p in recovery.glob("best-*")) == ["best-epoch1.pt", "best-epoch2.pt"]
    with monkeypatch.context() as m:
        m.setattr(runner_module, "evaluate", val_scores(15.0, 15.0))  # epochs 2 and 3 rerun worse
        summary = train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
    best = load_checkpoint(tmp_path / "state1/best.pt")
    assert (summary["best_epoch"], summary["best_val_acc"]) == (1, 20.0)
    assert (best["epoch"], best["metrics"]["val_acc"]) == (1, 20.0)


def test_rsst_masked_finetune_follows_the_regularised_epochs_and_resumes(tiny_config, tmp_path, monkeypatch):
    exp, (_, s1) = run_chain(tiny_config, tmp_path / "a", "rsst", train={"epochs": 2}, rsst={"finetune_epochs": 2})
    rows = read_rows(tmp_path / "a/state1/metrics.jsonl")
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4] and s1["epochs"] == 4
    assert rows[2]["reg_lambda"] == pytest.approx(1.0)  # lambda reaches g at the end of train.epochs ...
    assert rows[3]["reg_lambda"] == rows[4]["reg_lambda"] == 0.0  # ... then the hard mask, no penalty
    assert rows[2]["lr"] > rows[3]["lr"] > rows[4]["lr"]  # one lr schedule over both parts
    last = load_checkpoint(tmp_path / "a/state1/last.pt")
    assert last["epoch"] == 4 and pruned_weights_are_zero(last)
    assert pruned_weights_are_zero(load_checkpoint(tmp_path / "a/state1/best.pt"))

    # killed during the fine-tune, it resumes there and ends as the uninterrupted run did
    train_state(exp, 0, paths(tmp_path / "b", 0), device="cpu", threads=1)
    with monkeypatch.context() as m:
        interrupt_after_epoch(m, 3)
        with pytest.raises(KeyboardInterrupt):
            train_state(exp, 1, paths(tmp_path / "b", 1), device="cpu", threads=1)
    train_state(exp, 1, paths(tmp_path / "b", 1), device="cpu", threads=1)
    timing = TIMING_FIELDS
    resumed = read_rows(tmp_path / "b/state1/metrics.jsonl")
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed] == [
        {k: v for k, v in r.items() if k not in timing} for r in rows
    ]
    assert torch.equal(
        load_checkpoint(tmp_path / "b/state1/last.pt")["state_dict"]["blocks.0.mlp.fc1.weight"],
        last["state_dict"]["blocks.0.mlp.fc1.weight"],
    )


def test_adopted_state0_is_the_shared_one_relabelled_and_refuses_other_settings(tiny_config, tmp_path):
    from prunebench.config import resolve_config
    from prunebench.errors import CheckpointError
    from prunebench.train.share import adopt_state0

    tiny_config["experiments"]["t"]["methods"] = ["refill", "rsst"]
    resolved = resolve_config(tiny_config)
    shared = tmp_path / "shared/t-synthetic-tiny_vit-s0"
    train_state(resolved.state0_runs["shared/t-synthetic-tiny_vit-s0"], 0, StatePaths(shared / "state0", shared / "rec"),
              device="cpu", threads=1)  # fmt: skip
    rsst = resolved.experiments["t-synthetic-tiny_vit-rsst-s0"]
    adopt_state0(shared / "state0", tmp_path / "rsst/state0", rsst)
    # the next state loads it as the experiment's own state 0
    summary = train_state(rsst, 1, paths(tmp_path / "rsst", 1), device="cpu", threads=1)
    assert summary["method"] == "rsst" and summary["density"] < 1
    own = json.loads((tmp_path / "rsst/state0/summary.json").read_text())
    assert own["experiment"] == rsst["name"] and own["shared_state0"] == str(shared / "state0")
    copied = (tmp_path / "rsst/state0/predictions.npz").read_bytes()
    assert copied == (shared / "state0/predictions.npz").read_bytes()  # per-image predictions come along

    tiny_config["defaults"]["train"]["lr"] = 0.5  # the group's settings changed since state 0 was trained
    changed = resolve_config(tiny_config).experiments["t-synthetic-tiny_vit-refill-s0"]
    with pytest.raises(
        CheckpointError, match=r"trained under other settings .*train.lr: 0.002 -> 0.5.* prunebench retrain .*shared/"
    ):
        adopt_state0(shared / "state0", tmp_path / "refill/state0", changed)


def test_train_state_command_builds_a_shared_state0_once_then_copies_it(tiny_config, tmp_path):
    import yaml

    from prunebench.cli import main

    tiny_config["experiments"]["t"]["methods"] = ["refill", "rsst"]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config))
    results = tmp_path / "results"
    shared = results / "shared/t-synthetic-tiny_vit-s0/state0"
    trained_at = []
    for method in ("refill", "rsst"):
        args = ["train-state", str(cfg), f"t-synthetic-tiny_vit-{method}-s0", "0", "--results", str(results)]
        assert main(args) == 0
        trained_at.append((shared / "last.pt").stat().st_mtime_ns)
    for method in ("refill", "rsst"):
        summary = json.loads((results / f"t-synthetic-tiny_vit-{method}-s0/state0/summary.json").read_text())
        assert summary["method"] == method and summary["shared_state0"] == str(shared)
    assert trained_at[0] == trained_at[1]  # trained once
    args = ["train-state", str(cfg), "t-synthetic-tiny_vit-rsst-s0", "1", "--results", str(results)]
    assert main(args) == 0 and (results / "t-synthetic-tiny_vit-rsst-s0/state1/summary.json").is_file()
