import pickle

import pytest
import torch

from prunebench.errors import CheckpointError
from prunebench.results.checkpoint import load_checkpoint
from prunebench.train.checkpoint import make_checkpoint, save_checkpoint
from tests.conftest import resolved_experiment


def test_checkpoint_round_trips_with_weights_only(tiny_vit, tiny_config, tmp_path):
    exp = resolved_experiment(tiny_config)
    masks = {"blocks.0.attn.heads": torch.tensor([True, False, True])}
    ckpt = make_checkpoint(
        experiment=exp,
        model_spec={"arch": "x"},
        model=tiny_vit,
        masks=masks,
        state=3,
        epoch=7,
        metrics={"val_acc": 50.0},
    )
    save_checkpoint(tmp_path / "c.pt", ckpt)
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # plain types only
    assert raw["config"] == exp and raw["state"] == 3 and raw["epoch"] == 7
    loaded = load_checkpoint(tmp_path / "c.pt", expect={"state": 3, "method": exp["method"], "arch": "x"})
    assert torch.equal(loaded["masks"]["blocks.0.attn.heads"], masks["blocks.0.attn.heads"])
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # evil.pt is a plain pickle, as intended
def test_wrong_state_missing_and_foreign_files_are_named(tiny_vit, tiny_config, tmp_path):
    exp = resolved_experiment(tiny_config)
    save_checkpoint(
        tmp_path / "c.pt",
        make_checkpoint(experiment=exp, model_spec={}, model=tiny_vit, masks={}, state=1, epoch=1, metrics={}),
    )
    with pytest.raises(CheckpointError, match="is for state 1, expected 2"):
        load_checkpoint(tmp_path / "c.pt", expect={"state": 2})
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"model": tiny_vit.state_dict()}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a prunebench state checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(print))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "evil.pt")


def test_failed_write_leaves_the_previous_file_intact(tmp_path):
    from prunebench.io import atomic_torch_save

    atomic_torch_save(tmp_path / "x.pt", {"a": 1})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_torch_save(tmp_path / "x.pt", {"a": Boom()})
    assert torch.load(tmp_path / "x.pt", weights_only=True) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]
