"""The ``prunebench`` command's rough edges: --version, help, early and clear refusals, light imports."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
import torch
import yaml

import prunebench
from prunebench.cli import main


def _config(tmp_path, config: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"prunebench {prunebench.__version__}"


def test_every_train_state_argument_has_help(capsys):
    with pytest.raises(SystemExit):
        main(["train-state", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("config file", "as `prunebench validate --config CONFIG` lists them", "0 (dense) to prune.states - 1",
                 "results folder", "torch CPU threads"):  # fmt: skip
        assert text in out


def test_a_state_past_the_last_is_refused_before_any_data_is_loaded(tmp_path, tiny_config, capsys, monkeypatch):
    import prunebench.train.job as job_module

    def must_not_train(*args, **kwargs):
        raise AssertionError("the state runner was started")

    monkeypatch.setattr(job_module, "train_state", must_not_train)
    tiny_config["defaults"]["prune"]["states"] = 4
    tiny_config["data_dir"] = str(tmp_path / "data")
    args = ["train-state", _config(tmp_path, tiny_config), "t-synthetic-tiny_vit-refill-s0", "9"]
    assert main([*args, "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "state 9 does not exist: t-synthetic-tiny_vit-refill-s0 has 4 states, 0 to 3 (prune.states in" in err
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "spelling",
    [
        ["train-state", "--config", "{cfg}", "t-synthetic-tiny_vit-refill-s0", "9"],
        ["train-state", "t-synthetic-tiny_vit-refill-s0", "9", "--config", "{cfg}"],
        ["train-state", "{cfg}", "t-synthetic-tiny_vit-refill-s0", "9"],  # the older spelling: still accepted
    ],
    ids=["--config first", "--config last", "positional"],
)
def test_train_state_takes_the_config_as_every_command_does(tmp_path, tiny_config, capsys, spelling):
    cfg = _config(tmp_path, tiny_config)
    args = [a.replace("{cfg}", cfg) for a in spelling]
    assert main([*args, "--results", str(tmp_path / "results")]) == 2
    assert "state 9 does not exist: t-synthetic-tiny_vit-refill-s0 has 2 states" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["validate", "prepare"])
def test_validate_and_prepare_take_the_config_either_way(tmp_path, tiny_config, capsys, monkeypatch, command):
    tiny_config["models"]["tiny_vit"]["patch_size"] = "eight"  # invalid: both stop at validation, naming it
    cfg = _config(tmp_path, tiny_config)
    monkeypatch.chdir(tmp_path)
    for args in ([command, "--config", cfg], [command, cfg], [command]):  # the last: config.yaml, the default
        assert main(args) == 2
        assert "models.tiny_vit.patch_size = 'eight'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([command, cfg, "--config", "other.yaml"])
    assert exit_.value.code == 2 and "two configs given" in capsys.readouterr().err


def test_status_of_a_config_run_from_another_folder_reads_its_project_folder(tmp_path, capsys, monkeypatch):
    from tests.unit.report.conftest import FIXTURE_CONFIG, write_results

    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    (project / "Snakefile").write_text("")
    cfg = project / "config" / "demo.yaml"
    cfg.write_text(yaml.safe_dump({**FIXTURE_CONFIG, "output_dir": "demo"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["status", "--config", str(cfg)]) == 2  # no results yet, anywhere: both folders named
    err = capsys.readouterr().err
    assert "results folder demo/results (the output_dir of" in err and f"current folder {elsewhere}" in err
    assert f"nor in the config's project folder ({project / 'demo' / 'results'}" in err
    write_results(project / "demo")
    assert main(["status", "--config", str(cfg)]) == 0
    out, err = capsys.readouterr()
    assert f"reading {project / 'demo' / 'results'}" in err
    assert "17/18 states done" in out  # the fixture's states, not 0 of them
    assert not (elsewhere / "demo").exists()


def test_status_into_a_closed_pipe_ends_quietly(tmp_path):
    from tests.unit.report.conftest import FIXTURE_CONFIG, write_results

    results = write_results(tmp_path)
    read, write = os.pipe()
    os.close(read)  # `prunebench status | head -2`, once head has gone
    cmd = [sys.executable, "-m", "prunebench.cli", "status", "--config", _config(tmp_path, FIXTURE_CONFIG),
           "--results", str(results)]  # fmt: skip
    proc = subprocess.run(cmd, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert proc.returncode == 141  # 128 + SIGPIPE, as the shell reports a command that SIGPIPE ended
    assert proc.stderr == ""


def _export(path, tmp_path, capsys) -> str:
    assert main(["export", str(path), str(tmp_path / "out" / "compact.pt")]) == 2
    return capsys.readouterr().err


def test_export_of_a_text_file_says_it_is_text(tmp_path, capsys):
    path = tmp_path / "notes.pt"
    path.write_text("accuracy went up\nmore notes\n")
    err = _export(path, tmp_path, capsys)
    assert f"{path} is not a checkpoint: it is a text file of 28 bytes (it begins 'accuracy went up')" in err
    assert "give a state's last.pt or best.pt instead" in err and "corrupt" not in err


def test_export_of_a_foreign_zip_names_its_files(tmp_path, capsys):
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights.bin", b"\0" * 16)
        archive.writestr("README", "hello")
    err = _export(path, tmp_path, capsys)
    assert (
        "is not a checkpoint: it is a zip archive of 2 files (weights.bin, README), not one written by torch.save"
        in err
    )
    assert "corrupt" not in err


def test_export_of_bare_weights_says_what_they_lack(tmp_path, capsys):
    path = tmp_path / "weights.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, path)
    err = _export(path, tmp_path, capsys)
    assert "is not a prunebench state checkpoint: it holds bare weights (2 tensors)" in err


def test_export_of_a_truncated_checkpoint_still_says_truncated(tmp_path, capsys):
    path = tmp_path / "last.pt"
    torch.save({"kind": "prunebench-state", "w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:2000])
    assert "is corrupt or truncated" in _export(path, tmp_path, capsys)


def test_status_shows_the_shared_dense_states_0(tmp_path, capsys):
    from tests.unit.report.conftest import FIXTURE_CONFIG, write_results

    results = write_results(tmp_path)
    running = results / "shared" / "seeds-cifar10-vit_s-s1"
    (running / "state0" / "summary.json").unlink()  # seed 1's is still training: at epoch 2 of 12
    (running / "recovery" / "state0").mkdir(parents=True)
    (running / "recovery" / "state0" / "metrics.jsonl").write_text(
        "".join(f'{{"epoch": {e}, "epoch_seconds": 10.0}}\n' for e in range(3))
    )
    assert main(["status", "--config", _config(tmp_path, FIXTURE_CONFIG), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    shared = out[out.index("shared dense states 0") :].splitlines()
    assert shared[2].split()[:2] == ["shared/main-cifar10-vit_s-s0", "1/1"]
    # at 10 s per epoch of its own: 10 epochs, 100 s left
    assert shared[3].split() == ["shared/seeds-cifar10-vit_s-s1", "0/1", "state", "0", "2/12", "0:00:10", "0:01:40",
                                 "0:01:40"]  # fmt: skip
    assert shared[5].startswith("16/18 states done; time left:")


def test_the_status_and_report_code_imports_no_torch(tmp_path):
    from tests.unit.report.conftest import write_results

    results = write_results(tmp_path)
    code = (
        "import sys, prunebench.cli, prunebench.report.status; "
        f"assert prunebench.cli.main(['report', '--results', {str(results)!r}]) == 0; "
        "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert (results / "reports" / "index.html").is_file()
