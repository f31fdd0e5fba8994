"""A state starts only from checkpoints whose contents are those their state recorded in its summary."""

import copy
import hashlib
import json
import shutil

import pytest
import yaml

from prunebench.cli import main
from prunebench.config import resolve_config
from prunebench.errors import CheckpointError
from prunebench.results.layout import StatePaths
from prunebench.train import job
from prunebench.train.share import adopt_state0
from tests.conftest import TINY_CONFIG

EXP = "t-synthetic-tiny_vit-refill-s0"
SHARED = "shared/t-synthetic-tiny_vit-s0"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A config (Refill, rewinding to init.pt in state 1) and the results of its state 0: the shared dense
    run and the experiment's relabelled copy, as `prunebench train-state` writes them."""
    root = tmp_path_factory.mktemp("digests")
    config = copy.deepcopy(TINY_CONFIG)
    config["defaults"]["prune"]["rewind"] = "init"
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    assert train_state(root / "results", 0) == 0
    return root


@pytest.fixture
def results(trained, tmp_path, monkeypatch):
    """A copy of the trained results, to damage at will."""
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    return tmp_path / "results"


def train_state(results, state: int) -> int:
    return main(["train-state", str(results.parent / "config.yaml"), EXP, str(state), "--results", str(results)])


def experiment(results) -> dict:
    config = yaml.safe_load((results.parent / "config.yaml").read_text())
    return resolve_config(config).experiments[EXP]


def digests(folder, names) -> dict:
    return {n: {"sha256": hashlib.sha256((folder / n).read_bytes()).hexdigest(), "bytes": (folder / n).stat().st_size}
            for n in names}  # fmt: skip


def flip_middle_byte(path) -> bytes:
    """Invert one byte in the middle of ``path`` in place (a bit rot torch.load may not notice); returns the original."""
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    return original


def test_summaries_record_the_digests_of_their_checkpoints_shared_state0_and_copy_alike(results):
    shared, own = results / SHARED / "state0", results / EXP / "state0"
    names = ("init.pt", "last.pt", "best.pt")
    shared_files = json.loads((shared / "summary.json").read_text())["files"]
    own_files = json.loads((own / "summary.json").read_text())["files"]
    assert shared_files == digests(shared, names)
    assert own_files == digests(own, names)  # the relabelled copies' own bytes ...
    assert own_files["last.pt"]["sha256"] != shared_files["last.pt"]["sha256"]  # ... not the shared run's


def test_a_flipped_byte_in_the_previous_last_pt_stops_the_next_state_with_one_error(results, capsys):
    last = results / EXP / "state0/last.pt"
    recorded = json.loads((last.parent / "summary.json").read_text())["files"]["last.pt"]["sha256"]
    original = flip_middle_byte(last)
    found = hashlib.sha256(last.read_bytes()).hexdigest()

    assert train_state(results, 1) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (msg,) = [line for line in err.splitlines() if line.startswith("prunebench: ")]
    assert f"{last} is not the file state 0 of {EXP} wrote" in msg
    assert f"sha256 {recorded[:12]} expected, {found[:12]} found" in msg
    assert f"prunebench retrain --config CONFIG {EXP} --from-state 0" in msg
    assert "state 1 epoch" not in err and not (results / EXP / "state1").exists()  # stopped before training
    assert not (results / EXP / "recovery/state1/resume.pt").exists()

    last.write_bytes(original)  # the untouched chain trains on
    assert train_state(results, 1) == 0
    state1 = results / EXP / "state1"
    summary = json.loads((state1 / "summary.json").read_text())
    assert summary["files"] == digests(state1, ("last.pt", "best.pt"))
    assert summary["run"] == {
        "gpus": 1, "nodes": 1, "data_loader": "device", "data_workers": None, "amp": False, "channels_last": False,
        "eval_every": 1, "eval_test": "best_and_final", "eval_batch_size": summary["run"]["eval_batch_size"],
        "eval_padded": False, "background_checkpoints": True, "resumed_after_epoch": None, "training": "slim",
        "training_reason": None,  # train.slim: auto, the default
    }  # fmt: skip


def test_a_damaged_init_pt_stops_a_rewinding_state(results, caplog):
    init = results / EXP / "state0/init.pt"
    flip_middle_byte(init)
    caplog.set_level("INFO", logger="prunebench")
    with pytest.raises(CheckpointError, match=rf"{init} is not the file state 0 of {EXP} wrote: .* --from-state 0`"):
        job.train_state(experiment(results), 1, StatePaths.under(results, EXP, 1), device="cpu", threads=1)
    assert "state 1 epoch" not in caplog.text


def test_a_damaged_shared_state0_is_not_copied(results):
    flip_middle_byte(results / SHARED / "state0/best.pt")
    with pytest.raises(CheckpointError, match=rf"state0/best.pt is not the file state 0 of {SHARED} wrote"):
        adopt_state0(results / SHARED / "state0", results / "elsewhere/state0", experiment(results))


def test_a_summary_without_digests_is_trusted_as_before(results, caplog):
    summary_path = results / EXP / "state0/summary.json"
    summary = json.loads(summary_path.read_text())
    del summary["files"]  # as an older prunebench wrote it
    summary_path.write_text(json.dumps(summary))
    caplog.set_level("INFO", logger="prunebench")
    summary = job.train_state(experiment(results), 1, StatePaths.under(results, EXP, 1), device="cpu", threads=1)
    assert summary["state"] == 1 and "files" in summary
    assert f"{summary_path} records no digest of {summary_path.parent / 'last.pt'}" in caplog.text
