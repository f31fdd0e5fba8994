"""Partial results: the report names the missing state and the anomalies; the CLI says what is missing."""

from __future__ import annotations

import json

import yaml

from prunebench.cli import main

from .conftest import ANOMALY, DATASET, DIVERGING, FIXTURE_CONFIG, MISSING, MODEL, NAN_EPOCH, RUNNING_EPOCHS
from .markdown import sections


def _cli_report(results_dir, tmp_path, capsys, with_config=True):
    args = ["report", "--results", str(results_dir)]
    if with_config:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump(FIXTURE_CONFIG))
        args += ["--config", str(cfg)]
    assert main(args) == 0
    return capsys.readouterr()


def test_report_names_missing_state_and_anomalies(results_dir, tmp_path, capsys):
    out = _cli_report(results_dir, tmp_path, capsys)
    reports = results_dir / "reports"
    assert f"{MISSING[0]}: 3/4 states done, missing {MISSING[1]}" in out.err
    md = (reports / f"{DATASET}_{MODEL}.md").read_text()
    secs = sections(md)
    assert "15 of 16 planned states are finished" in secs["Completeness"]
    assert f"- {MISSING[0]}: state {MISSING[1]}" in secs["Completeness"]
    anomalies = secs["Anomalies"]
    assert f"{ANOMALY[0]} state {ANOMALY[1]}: final accuracy" in anomalies
    assert f"{NAN_EPOCH[0]} state {NAN_EPOCH[1]}: epoch {NAN_EPOCH[2]} has NaN val_loss" in anomalies
    assert f"{DIVERGING[0]} state {DIVERGING[1]}: training loss rose to 5" in anomalies
    # exactly those three: healthy states are not flagged
    assert len([line for line in anomalies.splitlines() if line.startswith("- ")]) == 3
    index = (reports / "index.md").read_text()
    assert f"[{DATASET}_{MODEL}]({DATASET}_{MODEL}.md)" in index
    assert "| 15/16 |" in index and f"- {MISSING[0]}: state {MISSING[1]}" in index
    assert (reports / "summary.md").is_file()


def test_report_without_config_warns_it_cannot_know_the_plan(results_dir, tmp_path, capsys):
    out = _cli_report(results_dir, tmp_path, capsys, with_config=False)
    assert "cannot be known to be missing" in out.err
    md = (results_dir / "reports" / f"{DATASET}_{MODEL}.md").read_text()
    assert "15 of 15 planned states are finished" in md  # rsst's trailing state 3 is unknown without the plan


def test_report_with_no_results_yet(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(FIXTURE_CONFIG))
    assert main(["report", "--results", str(results), "--config", str(cfg)]) == 2  # nothing has started
    assert f"results folder {results} (--results) holds no prune states yet" in capsys.readouterr().err
    assert list(results.iterdir()) == []
    (results / "shared" / f"main-{DATASET}-{MODEL}-s0" / "recovery" / "state0").mkdir(parents=True)  # started
    out = _cli_report(results, tmp_path, capsys)
    md = (results / "reports" / f"{DATASET}_{MODEL}.md").read_text()
    assert "0 of 16 planned states are finished" in md
    assert "No state of this comparison has finished yet." in md
    assert "missing 0, 1, 2, 3" in out.err


def test_status_shows_running_state_and_eta(results_dir, tmp_path, capsys):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(FIXTURE_CONFIG))
    assert main(["status", "--config", str(cfg), "--results", str(results_dir)]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith(MISSING[0]))
    # state 3 is timed by its own epochs (13 s each in the fixture), not by the finished states' 12.7 s
    # per epoch start-up included: 6 - 2 epochs left; it is the chain's last state
    eta = (6 - RUNNING_EPOCHS) * 13
    assert line.split() == [MISSING[0], "3/4", "state", "3", f"{RUNNING_EPOCHS}/6", "0:00:13", f"0:00:{eta:02d}",
                            f"0:00:{eta:02d}"]  # fmt: skip
    assert "17/18 states done" in out  # the shared dense states 0 included


def test_status_shows_a_shared_state0_running_for_every_method_that_waits_on_it(tmp_path, capsys):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(FIXTURE_CONFIG))
    rec = tmp_path / "results" / "shared" / f"main-{DATASET}-{MODEL}-s0" / "recovery" / "state0"
    rec.mkdir(parents=True)
    rows = [{"epoch": e, "epoch_seconds": 2.0 if e else 0.0} for e in range(3)]
    (rec / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["status", "--config", str(cfg), "--results", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    for method in ("dense", "refill", "rsst"):
        line = next(row for row in out.splitlines() if row.startswith(f"main-{DATASET}-{MODEL}-{method}-s0"))
        # the shared run's 10 epochs left at its 2 s, then 3 states of 6 epochs at that estimate
        assert line.split()[1:] == ["0/4", "state", "0", "(shared)", "2/12", "0:00:02", "0:00:20", "0:00:56"], line


def test_broken_summary_is_one_clear_error(results_dir, tmp_path, capsys):
    bad = results_dir / MISSING[0] / "state1" / "summary.json"
    bad.write_text("{not json")
    assert main(["report", "--results", str(results_dir)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "prunebench retrain --config CONFIG" in err


def test_experiments_no_longer_in_the_config_are_left_out(results_dir, tmp_path, capsys):
    import shutil

    old = results_dir / "old-cifar10-vit_s-refill-s9"
    shutil.copytree(results_dir / "seeds-cifar10-vit_s-refill-s1", old)
    _cli_report(results_dir, tmp_path, capsys)
    assert "old-cifar10" not in (results_dir / "reports" / f"{DATASET}_{MODEL}.md").read_text()
    assert "old-cifar10" not in (results_dir / "reports" / "summary.md").read_text()
