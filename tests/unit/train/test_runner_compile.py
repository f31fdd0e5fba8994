"""train.compile runs a state's training and evaluation through torch.compile at static shapes, with the
same results, one training graph and one evaluation graph per state."""

import json
import os
import shutil

import pytest
import torch

from prunebench.accel.settings import prepare_model
from prunebench.models import build_model, model_spec
from prunebench.results.layout import StatePaths
from prunebench.train.job import train_state
from tests.conftest import resolved_experiment
from tests.unit.train.chains import paths


def run(tmp_path, config, compile_):
    config["defaults"]["train"]["compile"] = compile_
    exp = resolved_experiment(config)
    out = tmp_path / f"compile_{compile_}"
    train_state(exp, 0, StatePaths(out / "state0", out / "recovery"), device="cpu")
    return [json.loads(line) for line in (out / "state0" / "metrics.jsonl").read_text().splitlines()]


def test_a_compiled_state_trains_through_torch_compile_and_matches_eager(tmp_path, tiny_config, monkeypatch):
    compiled = []
    real_compile = torch.compile

    def spy(model, **kwargs):
        compiled.append((model, kwargs))
        return real_compile(model, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    tiny_config["data_dir"] = str(tmp_path / "data")
    # TorchDynamo captures the graphs for real; the eager backend skips Inductor's C++ build (a minute
    # on 2 cores), which the opt-in test below covers
    tiny_config["defaults"]["train"]["compile_backend"] = "eager"
    eager_rows = run(tmp_path, tiny_config, False)
    assert compiled == []
    assert run(tmp_path, tiny_config, "auto") and compiled == []  # auto: eager on the CPU
    compiled_rows = run(tmp_path, tiny_config, True)
    assert len(compiled) == 1 and isinstance(compiled[0][0], torch.nn.Module)
    assert compiled[0][1] == {"backend": "eager", "dynamic": False}  # static shapes
    for a, b in zip(eager_rows, compiled_rows):
        for key in ("train_loss", "val_loss", "val_acc", "test_acc"):
            if a.get(key) is not None:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-5), key


@pytest.mark.parametrize("method", ["rsst", "reprune"])
def test_a_compiled_state_compiles_one_training_and_one_evaluation_graph(tmp_path, tiny_config, method, caplog):
    """A state's real order through AOTAutograd (evaluation at epoch 0, training, evaluation, a second
    epoch), across RSST's mask epoch and REPrune's events, without a graph break. Masks change values,
    not shapes: a state compiles one training and one evaluation graph per architecture it trains, and
    a re-slim (slim training at new training masks) is a new architecture. RSST: state 0 dense (2);
    state 1 masked under the penalty, slim after the mask (4). REPrune: state 0 dense, slim after its
    event at epoch 2 (4); state 1 evaluates its start (1), then trains two re-slimmed models (2 + 2)."""
    import torch._dynamo

    cfg = tiny_config
    cfg["data_dir"] = str(tmp_path / "data")
    cfg["defaults"]["train"].update(compile=True, compile_backend="aot_eager", epochs=2)
    cfg["defaults"]["rsst"] = {"peak_at": 0.5}  # the hard mask at the end of epoch 1 of 2
    if method == "reprune":  # REPrune prunes CNN channels: events at the start of epochs 2 (state 0), 1 and 2
        cfg["models"] = {"cnn": {"arch": "small_cnn", "kwargs": {"widths": [4, 8, 8]}}}
        cfg["experiments"]["t"]["models"] = ["cnn"]
        cfg["defaults"]["prune"].update(groups=["channels"], budget="groups")
        cfg["defaults"]["reprune"] = {"interval_epochs": 1, "prune_until": 0.75, "regrowth": 0.5}
    exp = resolved_experiment(cfg, method)
    caplog.set_level("INFO", logger="prunebench")
    summaries = []
    for k in range(2):
        torch._dynamo.reset()  # a state is a process of its own: nothing compiled before it
        summaries.append(train_state(exp, k, paths(tmp_path, k), device="cpu", threads=1))
    for summary in summaries:
        stats = summary["compile"]
        assert stats["backend"] == "aot_eager" and stats["seconds"] > 0
        graphs = {("rsst", 0): 2, ("rsst", 1): 4, ("reprune", 0): 4, ("reprune", 1): 5}[method, summary["state"]]
        assert (stats["graphs"], stats["frames"], stats["graph_breaks"]) == (graphs, graphs, 0)
        assert (
            f"state {summary['state']} compile: {stats['seconds']:.1f} s, {graphs} graphs, 0 graph breaks"
            in caplog.text
        )
    if method == "rsst":
        assert summaries[1]["rsst"]["mask_epoch"] == 1
    else:
        assert [s["event_epochs"] for s in summaries] == [[2], [1, 2]]


@pytest.mark.skipif(
    not os.environ.get("PRUNEBENCH_TEST_COMPILE"),
    reason="Inductor compiles C++ for about a minute on 2 cores; set PRUNEBENCH_TEST_COMPILE=1 to run",
)
@pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")),
    reason="Inductor on the CPU needs a C++ compiler (g++, c++ or clang++ on PATH)",
)
def test_inductor_compiled_training_step_matches_eager():
    torch.manual_seed(0)
    spec = model_spec({"arch": "small_cnn", "kwargs": {"widths": [4, 8, 8]}}, 10)
    eager, other = build_model(spec), build_model(spec)
    other.load_state_dict(eager.state_dict())
    net = prepare_model(other, "cnn", torch.device("cpu"), compile=True)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    for model in (eager, net):
        torch.nn.functional.cross_entropy(model(x), y).backward()
    assert torch.allclose(eager.conv1.weight.grad, other.conv1.weight.grad, atol=1e-5)


def test_a_re_slimmed_state_compiles_its_new_slim_model(tmp_path, tiny_config, monkeypatch):
    """RSST's state 1 trains the dense model (nothing pruned) until its hard mask, then re-slims: the
    new slim model is compiled as the dense one was, and the state trains as the eager one does."""
    compiled = []
    real_compile = torch.compile

    def spy(model, **kwargs):
        compiled.append(model)
        return real_compile(model, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    tiny_config["defaults"]["train"]["compile_backend"] = "eager"  # dynamo captures; no Inductor C++ build
    tiny_config["experiments"]["t"]["methods"] = ["rsst"]
    tiny_config["defaults"]["rsst"] = {"finetune_epochs": 1}
    rows = {}
    for compile_ in (False, True):
        tiny_config["defaults"]["train"]["compile"] = compile_
        exp = resolved_experiment(tiny_config)
        out = tmp_path / f"compile_{compile_}"
        for k in (0, 1):
            previous = out / "state0" / "last.pt" if k else None
            summary = train_state(exp, k, StatePaths(out / f"state{k}", out / f"rec{k}", previous), device="cpu")
        assert summary["run"]["training"] == "slim"
        rows[compile_] = [json.loads(line) for line in (out / "state1" / "metrics.jsonl").read_text().splitlines()]
    # state 0 and state 1's dense model, then the slim model of the hard mask's groups
    assert len(compiled) == 3
    dense, slim = (sum(p.numel() for p in m.parameters()) for m in compiled[1:])
    assert slim < dense
    for a, b in zip(rows[False], rows[True], strict=True):
        for key in ("train_loss", "val_loss", "val_acc", "test_acc"):
            if a.get(key) is not None:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-5), key
