"""A compact checkpoint reloads from its own file with weights_only=True: no masks, no training code."""

import pytest
import torch

from prunebench.errors import CheckpointError
from prunebench.export.compact import compact_from_checkpoint, load_compact, save_compact
from prunebench.models import build_model, model_spec
from prunebench.train.checkpoint import make_checkpoint
from tests.conftest import TINY_VIT


def test_compact_checkpoint_reloads_and_gives_the_same_outputs(tmp_path):
    spec = model_spec(TINY_VIT, 10)
    torch.manual_seed(0)
    model = build_model(spec)
    masks = {
        "blocks.0.attn.heads": torch.tensor([False, True, False]),
        "blocks.1.attn.heads": torch.tensor([1, 0, 1]).bool(),
    }
    ckpt = make_checkpoint(
        experiment={"name": "e", "method": "refill"}, model_spec=spec, model=model, masks=masks,
        state=1, epoch=1, metrics={},
    )  # fmt: skip
    compact, cspec, masked = compact_from_checkpoint(ckpt)
    save_compact(tmp_path / "model.pt", compact, cspec, {"experiment": "e", "state": 1})

    raw = torch.load(tmp_path / "model.pt", weights_only=True)
    assert "masks" not in raw and raw["model_spec"]["widths"]["blocks.0"] == {"head": 1}
    reloaded = load_compact(tmp_path / "model.pt")
    assert [b.attn.num_heads for b in reloaded.blocks] == [1, 2]
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(reloaded(x), compact(x))
        assert (masked(x) - reloaded(x)).abs().max().item() <= 1e-4


def test_loading_a_state_checkpoint_as_a_compact_model_says_what_to_do(tmp_path):
    torch.save({"kind": "prunebench-state"}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="not a prunebench compact model; export it"):
        load_compact(tmp_path / "last.pt")
