"""`prunebench export CHECKPOINT OUT` writes a compact model and a JSON of its costs."""

import json

import torch

from prunebench.cli import main
from prunebench.export.compact import load_compact
from prunebench.models import build_model, model_spec
from prunebench.train.checkpoint import make_checkpoint, save_checkpoint


def test_export_command_writes_model_and_costs(tmp_path, capsys):
    spec = model_spec({"arch": "small_cnn"}, 10)
    model = build_model(spec)
    masks = {"conv1.channels": torch.arange(32) < 8, "conv2.channels": torch.arange(64) < 20}
    ckpt = make_checkpoint(
        experiment={"name": "e", "method": "refill"}, model_spec=spec, model=model, masks=masks,
        state=3, epoch=5, metrics={},
    )  # fmt: skip
    save_checkpoint(tmp_path / "state3" / "last.pt", ckpt)

    rc = main(["export", str(tmp_path / "state3" / "last.pt"), str(tmp_path / "out" / "model.pt"),
               "--throughput", "--batch-sizes", "2"])  # fmt: skip
    assert rc == 0
    info = json.loads((tmp_path / "out" / "model.json").read_text())
    assert (info["experiment"], info["state"]) == ("e", 3)
    assert info["model_spec"]["widths"]["conv2"] == {"channel": 20}
    assert info["cost"]["compact"]["macs"] < info["cost"]["dense"]["macs"]
    assert set(info["throughput"]["compact"]) == {"2"}
    assert load_compact(tmp_path / "out" / "model.pt").conv2.out_channels == 20
    s = info["throughput"]["speedup"]["2"]
    assert f"{s['median']:.2f}x ({s['min']:.2f}-{s['max']:.2f} over {s['rounds']} rounds" in capsys.readouterr().out


def test_export_of_a_missing_checkpoint_is_one_clear_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.pt"), str(tmp_path / "model.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
