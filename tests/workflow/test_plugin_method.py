"""A method from outside the package (tests/workflow/toy_method.py, one class), registered by the
config's ``plugins``, runs a 2-state chain through the real workflow beside Refill."""

import copy
import json
import os
import re
import sys

import pytest

from prunebench.pruning import registry
from prunebench.results.metrics import read_rows
from tests.conftest import REPO, TINY_CONFIG, run_snakemake
from tests.workflow.plans import TRAINING_RULES

PLUGIN = "tests.workflow.toy_method"
EXP = "t-synthetic-tiny_vit-magnitude-s0"
SHARED = "shared/t-synthetic-tiny_vit-s0"
# the jobs import the plugin: the repository root on their PYTHONPATH (where the method's package would be)
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}  # fmt: skip


def config(grad_scale: float = 0.5) -> dict:
    c = copy.deepcopy(TINY_CONFIG)
    c["plugins"] = [PLUGIN]
    c["experiments"]["t"]["methods"] = ["refill", "magnitude"]
    c["defaults"]["magnitude"] = {"grad_scale": grad_scale}
    return c


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("plugin")
    run_snakemake(workdir, config(), env=ENV)
    return workdir


@pytest.fixture
def magnitude():
    """The plugin's method registered in this process too, for as long as the test runs."""
    import importlib

    registry.register(importlib.import_module(PLUGIN).Magnitude)
    yield registry.METHODS["magnitude"]
    registry.unregister("magnitude")
    sys.modules.pop(PLUGIN, None)  # imported again, it registers again


@pytest.mark.slow
def test_the_plugin_method_runs_its_chain_and_logs_its_hook(finished):
    state1 = finished / "results" / EXP / "state1"
    summary = json.loads((state1 / "summary.json").read_text())
    assert summary["method"] == "magnitude" and summary["density"] < 1.0
    rows = read_rows(state1 / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [0, 1]
    # epoch 0 ran no hook (its declared value); the trained epoch logs the hook's last step: s_T = grad_scale
    assert rows[0]["grad_scale"] == 0.0 and rows[1]["grad_scale"] == pytest.approx(0.5)
    assert rows[1]["reg_lambda"] == 0.0  # no penalty: the column every method has
    assert all("grad_scale" not in r for r in read_rows(finished / "results" / "t-synthetic-tiny_vit-refill-s0" /
                                                       "state1" / "metrics.jsonl"))  # fmt: skip
    log = (finished / "logs" / "train_state" / EXP / "state1.log").read_text()
    assert re.search(r"state 1 epoch 1/1 .* lr [\d.]+ lambda 0 scale 0\.5 ", log)
    # its state 0 is the shared dense one, copied (its class does not declare a state 0 of its own)
    state0 = json.loads((finished / "results" / EXP / "state0" / "summary.json").read_text())
    assert state0["shared_state0"] == f"results/{SHARED}/state0"


@pytest.mark.slow
def test_the_report_shows_the_plugin_methods_section(finished):
    md = (finished / "results" / "reports" / "synthetic_tiny_vit.md").read_text()
    assert "### magnitude: gradient scale" in md
    section = md.split("### magnitude: gradient scale", 1)[1].split("\n#", 1)[0]
    assert re.search(r"^\| magnitude \| 0 \| 1 \| 0\.500 \|$", section, re.M), section
    assert "refill" in md and "magnitude final" in md


@pytest.mark.slow
def test_its_settings_retrain_its_own_experiment_only(finished, magnitude):
    from prunebench.config import resolve_config, training_hash

    def hashes(cfg):
        r = resolve_config(cfg)
        return {n: training_hash(e) for n, e in {**r.experiments, **r.state0_runs}.items()}

    before, after = hashes(config(0.5)), hashes(config(0.25))
    assert {n for n in before if before[n] != after[n]} == {EXP}
    # the real workflow agrees: only the method's own states train again
    proc = run_snakemake(finished, config(0.25), "-n", env=ENV)
    out = proc.stdout + proc.stderr
    jobs = re.findall(r"^rule (\w+):\n(?:    (?!wildcards).*\n)*    wildcards: (.*)$", out, re.M)
    assert sorted((rule, wc) for rule, wc in jobs if rule in TRAINING_RULES) == [
        ("share_state0", f"experiment={EXP}"),
        ("train_state", f"experiment={EXP}, state=1"),
    ], out[-3000:]
