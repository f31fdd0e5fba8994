"""What a finished state records about how it was produced, and the per-epoch tracking beside its metrics."""

from __future__ import annotations

import csv
import json
import re
import sys
import types

import pytest

from prunebench.config import resolve_config, training_hash
from prunebench.errors import ConfigError
from prunebench.results.metrics import read_rows
from prunebench.train.job import train_state
from prunebench.train.tracking import (
    CSV_COLUMNS,
    CSV_FIELDS,
    SCALARS,
    Tracker,
    chain_step,
    state_offset,
    wandb_run_id,
)
from tests.conftest import resolved_experiment
from tests.unit.train.chains import paths

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _state0(tiny_config, root, tracking=None, epochs=2):
    tiny_config["defaults"]["train"]["state0_epochs"] = epochs
    exp = resolved_experiment(tiny_config)
    summary = train_state(exp, 0, paths(root, 0), device="cpu", download=False, threads=1, tracking=tracking)
    return exp, summary


def test_summary_records_provenance(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    exp, summary = _state0(tiny_config, tmp_path)
    on_disk = json.loads((tmp_path / "state0" / "summary.json").read_text())
    prov = on_disk["provenance"]
    assert prov == json.loads(json.dumps(summary["provenance"]))
    # one hash, the same as the summary's and the checkpoints' config_hash
    assert prov["config_hash"] == on_disk["config_hash"] == training_hash(exp)
    assert prov["experiment"] == exp  # the resolved experiment it was trained under, whole
    src = prov["source"]
    assert src["version"] == on_disk["versions"]["prunebench"]
    if src["git_commit"] is not None:  # a git checkout (this test's); an installed package has none
        assert re.fullmatch(r"[0-9a-f]{40}", src["git_commit"]) and isinstance(src["git_dirty"], bool)
    assert prov["host"] and prov["platform"]
    assert prov["device"]["type"] == "cpu" and prov["device"]["name"] and prov["device"]["driver"] is None
    assert {"torch", "timm", "python", "torchvision", "numpy", "cuda", "cudnn"} <= set(prov["packages"])
    assert prov["slurm"]["job_id"] == "4242" and prov["slurm"]["array_task_id"] == "7"
    assert prov["slurm"]["array_job_id"] is None
    for key in ("started_at", "process_started_at", "finished_at"):
        assert ISO_UTC.match(prov[key]), (key, prov[key])
    assert prov["started_at"] <= prov["finished_at"]
    assert prov["peak_gpu_mb"] is None  # a CPU state
    assert 10 < prov["peak_host_mb"] < 1e6  # MB: a Python process with torch loaded


def test_provenance_without_git(tiny_config, tmp_path, monkeypatch):
    """No git on the PATH (a bare compute node): the commit is unknown, the state still finishes."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    _, summary = _state0(tiny_config, tmp_path, epochs=1)
    assert summary["provenance"]["source"]["git_commit"] is None
    assert summary["provenance"]["source"]["version"]


def _csv_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _same(csv_row, row):
    for column, key in CSV_COLUMNS.items():
        value = row.get(key) if key else None
        if column == "epoch":
            continue  # the chain step (test_one_tracked_run_per_chain)
        if value is None:
            assert csv_row[column] == "", column
        else:
            assert float(csv_row[column]) == pytest.approx(float(value), rel=1e-12), column


def test_summary_csv_per_epoch_equals_metrics(tiny_config, tmp_path, monkeypatch):
    """The live CSV in the recovery folder has a line per finished epoch while the state trains, and
    the finished state's summary.csv holds exactly the rows of its metrics.jsonl."""
    from prunebench.train import tracking

    seen = []
    real = tracking.write_csv

    def spy(path, experiment, rows):
        real(path, experiment, rows)
        seen.append((str(path), [r["epoch"] for r in _csv_rows(path)]))

    monkeypatch.setattr(tracking, "write_csv", spy)
    _state0(tiny_config, tmp_path, epochs=3)
    live = [epochs for path, epochs in seen if "recovery" in path]
    assert live == [["0"], ["0", "1"], ["0", "1", "2"], ["0", "1", "2", "3"]]
    rows = read_rows(tmp_path / "state0" / "metrics.jsonl")
    got = _csv_rows(tmp_path / "state0" / "summary.csv")
    assert list(got[0]) == list(CSV_FIELDS)
    assert len(got) == len(rows) == 4
    for csv_row, row in zip(got, rows):
        _same(csv_row, row)
    assert not (tmp_path / "recovery" / "state0" / "summary.csv").exists()  # progress is cleared at the end


def test_tensorboard_event_files(tiny_config, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _state0(tiny_config, tmp_path, tracking={"tensorboard": True}, epochs=2)
    tb = tmp_path / "tensorboard"  # the chain's: tmp_path holds its state folders
    assert list(tb.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(tb))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"accuracy/train", "accuracy/val", "accuracy/test", "optim/lr", "optim/rsst_lambda"} <= tags
    rows = read_rows(tmp_path / "state0" / "metrics.jsonl")
    assert [e.step for e in acc.Scalars("accuracy/val")] == [0, 1, 2]
    assert [e.value for e in acc.Scalars("accuracy/val")] == pytest.approx([r["val_acc"] for r in rows], abs=1e-4)
    assert [e.step for e in acc.Scalars("accuracy/train")] == [1, 2]  # epoch 0 is not trained


def test_tensorboard_missing_is_one_clear_error(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"prunebench\[tensorboard\]"):
        _state0(tiny_config, tmp_path, tracking={"tensorboard": True}, epochs=1)


class _FakeRun:
    def __init__(self, **kwargs):
        self.init, self.logged, self.finished = kwargs, [], False

    def log(self, values, step):
        self.logged.append((step, values))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    runs = []

    def init(**kwargs):
        runs.append(_FakeRun(**kwargs))
        return runs[-1]

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    return runs


def test_wandb_receives_every_row(tiny_config, tmp_path, fake_wandb):
    exp, _ = _state0(tiny_config, tmp_path, tracking={"wandb": {"project": "pb"}}, epochs=2)
    (run,) = fake_wandb
    assert run.init["project"] == "pb" and run.init["mode"] == "offline"
    assert run.init["name"] == exp["name"] and run.init["config"]["experiment"] == exp
    assert run.init["id"] == wandb_run_id(exp) and run.init["resume"] == "allow"
    assert run.init["dir"] == str(tmp_path)  # the chain's folder: wandb writes into its wandb/ there
    assert run.finished
    rows = read_rows(tmp_path / "state0" / "metrics.jsonl")
    assert [step for step, _ in run.logged] == [r["epoch"] for r in rows]
    for (_, values), row in zip(run.logged, rows):
        if SCALARS["test_acc"] in values:  # a row as it was at its epoch (a best's test comes at the state's end)
            assert values[SCALARS["test_acc"]] == pytest.approx(row["test_acc"])
        assert values[SCALARS["lr"]] == pytest.approx(row["lr"])


def test_wandb_failing_mid_state_does_not_stop_training(tiny_config, tmp_path, fake_wandb, caplog):
    def broken(*_, **__):
        raise RuntimeError("disk full")

    _FakeRun.log, real = broken, _FakeRun.log
    try:
        _, summary = _state0(tiny_config, tmp_path, tracking={"wandb": {"project": "pb"}}, epochs=1)
    finally:
        _FakeRun.log = real
    assert summary["epochs"] == 1 and fake_wandb[0].finished
    assert "wandb logging failed (disk full)" in caplog.text


def test_wandb_missing_is_one_clear_error(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match="pip install wandb"):
        _state0(tiny_config, tmp_path, tracking={"wandb": {"project": "pb"}}, epochs=1)


def test_logging_is_a_validated_runtime_setting(tiny_config):
    tiny_config["logging"] = {"tensorboard": True, "wandb": {"project": "pb", "mode": "offline"}}
    resolved = resolve_config(tiny_config)
    assert resolved.runtime["logging"] == tiny_config["logging"]
    exp = next(iter(resolved.experiments.values()))
    assert "logging" not in exp  # not part of the experiment: no state reruns when it changes
    tiny_config["logging"] = {"wandb": {"mode": "offline"}}
    with pytest.raises(ConfigError, match="project"):
        resolve_config(tiny_config)


def test_shared_state0_copy_has_its_csv_and_relabelled_provenance(tiny_config, tmp_path):
    from prunebench.results.layout import StatePaths
    from prunebench.train.share import adopt_state0

    tiny_config["experiments"]["t"]["methods"] = ["refill", "rsst"]
    tiny_config["defaults"]["train"]["state0_epochs"] = 1
    resolved = resolve_config(tiny_config)
    shared = tmp_path / "shared/t-synthetic-tiny_vit-s0"
    train_state(resolved.state0_runs["shared/t-synthetic-tiny_vit-s0"], 0, StatePaths(shared / "state0", shared / "rec"),
              device="cpu", threads=1)  # fmt: skip
    rsst = resolved.experiments["t-synthetic-tiny_vit-rsst-s0"]
    adopt_state0(shared / "state0", tmp_path / "rsst/state0", rsst)
    own = json.loads((tmp_path / "rsst/state0/summary.json").read_text())
    trained = json.loads((shared / "state0/summary.json").read_text())
    assert own["provenance"]["experiment"] == rsst
    assert own["provenance"]["config_hash"] == own["config_hash"] == training_hash(rsst)
    assert own["provenance"]["started_at"] == trained["provenance"]["started_at"]  # where and when it ran stay
    assert own["provenance"]["host"] == trained["provenance"]["host"]
    copied = _csv_rows(tmp_path / "rsst/state0/summary.csv")
    assert [r["epoch"] for r in copied] == ["0", "1"]
    assert copied == _csv_rows(shared / "state0/summary.csv")


def test_resumed_state_tracks_each_epoch_once(tiny_config, tmp_path, monkeypatch):
    """A state killed after epoch 1 and resumed: its CSV and TensorBoard stream hold every epoch once."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.unit.train.chains import interrupt_after_epoch

    tiny_config["defaults"]["train"]["state0_epochs"] = 3
    exp = resolved_experiment(tiny_config)
    import prunebench.train.runner as runner_module

    with monkeypatch.context() as m:
        interrupt_after_epoch(m, 1)
        m.setattr(runner_module, "now_iso", lambda: "2026-01-01T00:00:00Z")
        with pytest.raises(KeyboardInterrupt):
            train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1, tracking={"tensorboard": True})
    monkeypatch.setattr(runner_module, "now_iso", lambda: "2026-01-02T00:00:00Z")
    live = _csv_rows(tmp_path / "recovery/state0/summary.csv")
    assert [r["epoch"] for r in live] == ["0", "1"]  # what a user watching the running state sees
    summary = train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1, tracking={"tensorboard": True})
    rows = read_rows(tmp_path / "state0/metrics.jsonl")
    got = _csv_rows(tmp_path / "state0/summary.csv")
    assert [r["epoch"] for r in got] == ["0", "1", "2", "3"]
    for csv_row, row in zip(got, rows):
        _same(csv_row, row)
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("accuracy/val")] == [0, 1, 2, 3]
    # test at epoch 0 and the last (train.eval_test: best_and_final); a best epoch's test, evaluated at
    # the state's end, is in metrics.jsonl and the summary, not sent to the trackers again
    assert [e.step for e in acc.Scalars("accuracy/test")] == [0, 3]
    # the first attempt's start is the state's start; this attempt started later
    prov = summary["provenance"]
    assert (prov["started_at"], prov["process_started_at"]) == ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")


def test_train_state_command_passes_the_logging_settings(tiny_config, tmp_path, fake_wandb):
    """`logging` reaches the trainer the way the workflow passes it: as a runtime setting of the config."""
    import yaml

    from prunebench.cli import main

    tiny_config["defaults"]["train"]["state0_epochs"] = 1
    tiny_config["share_state0"] = False
    tiny_config["logging"] = {"wandb": {"project": "from-config"}}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config))
    results = tmp_path / "results"
    assert main(["train-state", str(cfg), "t-synthetic-tiny_vit-refill-s0", "0", "--results", str(results)]) == 0
    assert [run.init["project"] for run in fake_wandb] == ["from-config"]
    assert (results / "t-synthetic-tiny_vit-refill-s0/state0/summary.csv").is_file()


def test_one_tracked_run_per_chain(tiny_config, tmp_path, fake_wandb):
    """A 2-state chain whose state 0 is the shared dense run's copy: one TensorBoard run and one W&B run
    for the chain, stepping through both states' epochs from 0, and one summary.csv line per epoch."""
    pytest.importorskip("tensorboard")
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from prunebench.cli import main

    tiny_config["defaults"]["train"]["state0_epochs"] = 2  # state 0: epochs 0..2, state 1: 0..1
    tiny_config["defaults"]["train"]["eval_test"] = "every"  # a test accuracy at every epoch, to track
    tiny_config["logging"] = {"tensorboard": True, "wandb": {"project": "pb"}}
    cfg, results = tmp_path / "config.yaml", tmp_path / "results"
    cfg.write_text(yaml.safe_dump(tiny_config))
    name = "t-synthetic-tiny_vit-refill-s0"
    for state in (0, 1):
        assert main(["train-state", str(cfg), name, str(state), "--results", str(results)]) == 0
    chain = results / name
    rows = read_rows(chain / "state0/metrics.jsonl") + read_rows(chain / "state1/metrics.jsonl")
    assert [(r["state"], r["epoch"]) for r in rows] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert json.loads((chain / "state0/summary.json").read_text())["shared_state0"]  # a copy, not trained here

    runs = sorted(str(p.parent.relative_to(results)) for p in results.rglob("events.out.tfevents.*"))
    # the chain's run, and the shared dense state 0 as the run it trained in (its epochs are the chain's too)
    assert sorted(set(runs)) == ["shared/t-synthetic-tiny_vit-s0/tensorboard", f"{name}/tensorboard"]
    acc = EventAccumulator(str(chain / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("accuracy/test")] == [0, 1, 2, 3, 4]
    assert [e.value for e in acc.Scalars("accuracy/test")] == pytest.approx([r["test_acc"] for r in rows], abs=1e-4)
    assert [e.value for e in acc.Scalars("pruning/state")] == [0, 0, 0, 1, 1]
    assert [e.step for e in acc.Scalars("accuracy/train")] == [1, 2, 4]  # no training at a state's epoch 0
    assert [e.step for e in acc.Tensors("state/text_summary")] == [0, 3]  # a marker where each state starts

    chain_runs = [run for run in fake_wandb if run.init["name"] == name]
    assert len(chain_runs) == 2  # the copy of state 0, then state 1: the same W&B run, resumed
    assert {run.init["id"] for run in chain_runs} == {chain_runs[0].init["id"]}
    assert [step for step, _ in chain_runs[-1].logged] == [0, 1, 2, 3, 4]  # an offline run holds the whole chain

    got = _csv_rows(chain / "summary.csv")
    assert list(got[0])[:6] == ["epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr"]  # timm's
    assert [(r["epoch"], r["state"], r["state_epoch"]) for r in got] == [
        ("0", "0", "0"), ("1", "0", "1"), ("2", "0", "2"), ("3", "1", "0"), ("4", "1", "1"),
    ]  # fmt: skip
    for csv_row, row in zip(got, rows):
        _same(csv_row, row)
        assert float(csv_row["eval_top1"]) == pytest.approx(row["val_acc"])
    assert _csv_rows(chain / "state1/summary.csv") == got[3:]  # a state's own lines of the chain's


def test_chain_steps_count_every_state_epoch_and_rsst_finetune(tiny_config):
    tiny_config["defaults"]["train"].update(state0_epochs=3, epochs=2)
    tiny_config["defaults"]["prune"]["states"] = 3
    tiny_config["experiments"]["t"]["methods"] = ["rsst"]
    tiny_config["defaults"].setdefault("rsst", {})["finetune_epochs"] = 1
    exp = resolved_experiment(tiny_config, "rsst")
    # state 0: epochs 0..3; state 1: 0..2 and a fine-tune epoch; state 2 starts after them
    assert [state_offset(exp, k) for k in range(3)] == [0, 4, 8]
    assert chain_step(exp, {"state": 2, "epoch": 1}) == 9


def test_a_state_trained_again_replaces_its_own_and_later_event_files(tiny_config, tmp_path):
    """No training: the tracker fed rows directly, as a chain whose state 1 is resumed, then whose state 0
    is copied again (a retrained shared state 0): each step is in the chain's run once."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    exp = resolved_experiment(tiny_config)  # 1 epoch per state: chain steps 0..3

    def rows(state, epochs, acc):
        return [{"state": state, "epoch": e, "test_acc": acc + e} for e in epochs]

    def steps():
        acc = EventAccumulator(str(tmp_path / "tensorboard"))
        acc.Reload()
        return [(e.step, e.value) for e in acc.Scalars("accuracy/test")]

    on = {"tensorboard": True}
    Tracker.open(tmp_path / "state0", None, exp, 0, on, rows(0, [0, 1], 10)).close()
    Tracker.open(tmp_path / "state1", tmp_path / "rec1", exp, 1, on, rows(1, [0], 20)).close()  # killed
    Tracker.open(tmp_path / "state1", tmp_path / "rec1", exp, 1, on, rows(1, [0, 1], 30)).close()  # resumed
    assert steps() == [(0, 10), (1, 11), (2, 30), (3, 31)]
    Tracker.open(tmp_path / "state0", None, exp, 0, on, rows(0, [0, 1], 40)).close()
    assert steps() == [(0, 40), (1, 41)]  # state 1 trains again after it
