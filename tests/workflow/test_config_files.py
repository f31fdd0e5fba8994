"""--config and --configfile as in any Snakemake workflow, and configs that never share a file."""

import re
import shutil

import pytest
import yaml

from prunebench.cli import main
from prunebench.config import load_config_file, resolve_config
from tests.conftest import REPO, run_snakemake

PATH_LINE = re.compile(r"^    (?:output|log|benchmark): (.*)$", re.M)


def planned_files(out: str) -> set[str]:
    """Every output, log and benchmark file of the jobs a dry run lists."""
    return {path.strip() for line in PATH_LINE.findall(out) for path in line.split(",")}


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """Dry runs in one folder holding the reference config.yaml: the reference matrix with a
    `--config` override, and the demo given with --configfile."""
    workdir = tmp_path_factory.mktemp("configs")
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    reference = run_snakemake(workdir, None, "-n", "--config", "download=false")
    demo = run_snakemake(workdir, None, "-n", "--configfile", str(REPO / "config" / "demo.yaml"))
    return reference.stdout + reference.stderr, demo.stdout + demo.stderr


def test_command_line_values_override_config_yaml(plans):
    reference, _ = plans
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", reference, re.M))
    resolved = resolve_config(load_config_file(REPO / "config.yaml"))
    later = sum(exp["prune"]["states"] - 1 for exp in resolved.experiments.values())
    # the whole matrix: every state 0 and every later state of config.yaml (3 seeds, dense chains)
    assert counts["train_state0"] == str(len(resolved.state0_runs)) and counts["train_state"] == str(later)
    assert later > 600


def test_a_configfile_replaces_config_yaml_instead_of_merging_with_it(plans):
    _, demo = plans
    files = planned_files(demo)
    assert files and all(f.startswith(("demo/results/", "demo/logs/", "demo/benchmarks/")) for f in files), files
    assert not any("vit_small" in f or "resnet56" in f for f in files)  # no experiment of config.yaml


def test_the_demo_and_the_reference_matrix_share_no_file(plans):
    reference, demo = plans
    ref_files, demo_files = planned_files(reference), planned_files(demo)
    assert len(ref_files) > 1000 and len(demo_files) > 100
    assert ref_files.isdisjoint(demo_files)
    assert {f.split("/")[0] for f in ref_files} == {"results", "logs", "benchmarks"}
    assert "results/reports/index.md" in ref_files and "demo/results/reports/index.md" in demo_files


def test_status_and_report_of_one_config_stay_in_its_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(demo))
    (tmp_path / "results" / "reports").mkdir(parents=True)
    (tmp_path / "results" / "reports" / "index.md").write_text("the reference matrix's index\n")
    assert main(["report", "--config", "demo.yaml"]) == 2  # demo/results does not exist: nothing to report
    err = capsys.readouterr().err
    assert "results folder demo/results (the output_dir of demo.yaml, relative to the current folder" in err
    assert "does not exist" in err
    assert not (tmp_path / "demo").exists()
    (tmp_path / "demo" / "results" / "demo-digits-vit_digits-refill-s0" / "recovery" / "state0").mkdir(parents=True)
    assert main(["report", "--config", "demo.yaml"]) == 0
    assert (tmp_path / "demo" / "results" / "reports" / "index.md").is_file()
    assert (tmp_path / "demo" / "results" / "reports" / "summary.md").is_file()
    assert (tmp_path / "results" / "reports" / "index.md").read_text() == "the reference matrix's index\n"
    assert sorted(p.name for p in (tmp_path / "results" / "reports").iterdir()) == ["index.md"]
    assert main(["status", "--config", "demo.yaml"]) == 0
    assert "demo-digits-vit_digits-refill-s0" in capsys.readouterr().out
