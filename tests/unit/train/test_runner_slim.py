"""Slim training (train.slim, issue 23): a pruned state trains the slim model of its alive groups and
computes what masked training computes, in fp32 on the CPU up to float rounding.

RSST (the slim model of its training masks under the penalty, evaluated under its final masks,
re-slimmed at the hard mask) and REPrune (re-slimmed at every event) included.

Tolerances: the slim model sums fewer (exactly zero) terms, in another order, so its losses differ
from the masked run's by float rounding only: measured ~1e-7 relative on this tiny ViT; 1e-5 asserted.
"""

import pytest
import torch

import prunebench.train.loop as loop
from prunebench.export.compact import compact_model
from prunebench.models import build_model
from prunebench.pruning.registry import method_class
from prunebench.results.checkpoint import load_checkpoint
from prunebench.results.metrics import read_rows
from prunebench.train.job import train_state
from tests.conftest import resolved_experiment
from tests.unit.train.chains import interrupt_after_epoch, paths, pruned_weights_are_zero

REL = 1e-5


class LossRecorder:
    """``torch.nn.functional`` as the training loop sees it, keeping every training step's loss."""

    def __init__(self):
        self.losses: list[float] = []

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)

    def cross_entropy(self, *args, **kwargs):
        out = torch.nn.functional.cross_entropy(*args, **kwargs)
        if torch.is_grad_enabled():  # a training step (evaluations run under inference_mode)
            self.losses.append(float(out.detach()))
        return out


def _experiment(tiny_config, method="refill", epochs=3, states=3, **train):
    tiny_config["defaults"]["train"].update(epochs=epochs, **{"slim": "auto", **train})
    tiny_config["defaults"]["prune"]["states"] = states
    return resolved_experiment(tiny_config, method)


def _cnn(tiny_config):
    """ResNet-20 pruned by channels (BatchNorm: the running statistics of pruned channels are replayed)."""
    tiny_config["models"] = {"r20": {"arch": "resnet20"}}
    tiny_config["experiments"]["t"]["models"] = ["r20"]
    tiny_config["defaults"]["train"].update(optimizer="sgd", lr=0.05, momentum=0.9)
    tiny_config["defaults"]["prune"].update(groups=["channels"], target_sparsity=0.5, budget="groups")
    tiny_config["defaults"]["data"]["train_limit"] = 128
    tiny_config["defaults"]["reprune"] = {"interval_epochs": 1, "prune_until": 0.75, "regrowth": 0.5}
    return tiny_config


def _chain(exp, root, monkeypatch, states):
    recorder = LossRecorder()
    with monkeypatch.context() as m:
        m.setattr(loop, "F", recorder)
        summaries = [train_state(exp, k, paths(root, k), device="cpu", threads=1) for k in states]
    return summaries, recorder.losses


def _close(a, b, rel=REL):
    return len(a) == len(b) and all(abs(x - y) <= rel * max(abs(x), abs(y), 1e-12) for x, y in zip(a, b))


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_a_slim_refill_chain_trains_as_the_masked_chain(tiny_config, tmp_path, monkeypatch, optimizer):
    exp = _experiment(tiny_config, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.002, momentum=0.9)
    off = {**exp, "train": {**exp["train"], "slim": "off"}}
    slim, slim_losses = _chain(exp, tmp_path / "slim", monkeypatch, range(3))
    masked, masked_losses = _chain(off, tmp_path / "masked", monkeypatch, range(3))
    # state 0 prunes nothing: masked (dense) in both chains; states 1 and 2 train slim, fed by a slim state
    assert [s["run"]["training"] for s in slim] == ["masked", "slim", "slim"]
    assert slim[0]["run"]["training_reason"] == "nothing is pruned" and slim[1]["run"]["training_reason"] is None
    assert [s["run"]["training_reason"] for s in masked][1:] == ["train.slim is off"] * 2
    assert len(slim_losses) == 3 * 3 * 4  # states x epochs x steps (256 images, batches of 64)
    assert _close(slim_losses, masked_losses), max(
        abs(a - b) / abs(b) for a, b in zip(slim_losses, masked_losses)
    )  # every step's loss
    for k in (1, 2):
        a, b = (
            read_rows(tmp_path / f"slim/state{k}/metrics.jsonl"),
            read_rows(tmp_path / f"masked/state{k}/metrics.jsonl"),
        )
        assert _close([r["train_loss"] for r in a[1:]], [r["train_loss"] for r in b[1:]])
        for key in ("val_acc", "test_acc", "train_acc"):
            assert all(abs((x.get(key) or 0) - (y.get(key) or 0)) <= 0.1 for x, y in zip(a, b)), key
        assert [r["density"] for r in a] == [r["density"] for r in b]
        for key in ("best_test_acc", "final_test_acc"):
            assert slim[k][key] == pytest.approx(masked[k][key], abs=0.1), key
        for key in ("density", "params_alive", "kept", "best_epoch"):
            assert slim[k][key] == masked[k][key], key
        # the checkpoints: dense-shaped, the same masks, pruned weights zero, the same weights up to rounding
        ca, cb = (
            load_checkpoint(tmp_path / f"slim/state{k}/last.pt"),
            load_checkpoint(tmp_path / f"masked/state{k}/last.pt"),
        )
        assert ca["masks"].keys() == cb["masks"].keys()
        assert all(torch.equal(ca["masks"][g], cb["masks"][g]) for g in ca["masks"])
        assert {n: t.shape for n, t in ca["state_dict"].items()} == {n: t.shape for n, t in cb["state_dict"].items()}
        assert pruned_weights_are_zero(ca)
        # (AdamW turns the rounding noise of gradients that are zero in exact arithmetic, such as the
        # attention keys' bias, into steps of the full learning rate: its weights are not compared)
        for n, t in ca["state_dict"].items() if optimizer == "sgd" else ():
            assert torch.allclose(t, cb["state_dict"][n], rtol=1e-3, atol=1e-4), n
        # the exporter reads it as it reads a masked one
        model = build_model(ca["model_spec"])
        model.load_state_dict(ca["state_dict"])
        compact, _ = compact_model(model, ca["model_spec"], ca["masks"])
        assert sum(p.numel() for p in compact.parameters()) < sum(p.numel() for p in model.parameters())


def _kill_state1(exp, root, monkeypatch, after_epoch):
    """Train state 0, then stop state 1 after ``after_epoch`` epochs (its resume.pt left behind)."""
    train_state(exp, 0, paths(root, 0), device="cpu", threads=1)
    with monkeypatch.context() as m:
        interrupt_after_epoch(m, after_epoch)
        with pytest.raises(KeyboardInterrupt):
            train_state(exp, 1, paths(root, 1), device="cpu", threads=1)


def test_a_resumed_slim_state_trains_as_an_uninterrupted_one(tiny_config, tmp_path, monkeypatch):
    exp = _experiment(tiny_config, states=2)
    whole, whole_losses = _chain(exp, tmp_path / "a", monkeypatch, [0, 1])
    _kill_state1(exp, tmp_path / "b", monkeypatch, after_epoch=2)
    (resumed,), _ = _chain(exp, tmp_path / "b", monkeypatch, [1])
    assert resumed["run"]["training"] == "slim" and resumed["run"]["resumed_after_epoch"] == 2
    a, b = read_rows(tmp_path / "a/state1/metrics.jsonl"), read_rows(tmp_path / "b/state1/metrics.jsonl")
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]  # the same numbers, exactly
    assert [r.get("test_acc") for r in a] == [r.get("test_acc") for r in b]
    sa = load_checkpoint(tmp_path / "a/state1/last.pt")["state_dict"]
    sb = load_checkpoint(tmp_path / "b/state1/last.pt")["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_masked_resume_checkpoint_resumes_slim(tiny_config, tmp_path, monkeypatch):
    """A resume.pt written by masked training (an older version, or train.slim: off) continues slim."""
    exp = _experiment(tiny_config, states=2)
    off = {**exp, "train": {**exp["train"], "slim": "off"}}  # x-not-training: the same training hash
    whole, _ = _chain(exp, tmp_path / "a", monkeypatch, [0, 1])
    _kill_state1(off, tmp_path / "b", monkeypatch, after_epoch=1)
    resumed = train_state(exp, 1, paths(tmp_path / "b", 1), device="cpu", threads=1)
    assert resumed["run"]["training"] == "slim" and resumed["run"]["resumed_after_epoch"] == 1
    a, b = read_rows(tmp_path / "a/state1/metrics.jsonl"), read_rows(tmp_path / "b/state1/metrics.jsonl")
    assert _close([r["train_loss"] for r in a[1:]], [r["train_loss"] for r in b[1:]])
    assert all(abs(x.get("test_acc", 0) - y.get("test_acc", 0)) <= 0.1 for x, y in zip(a, b))


def _same_states(root, slim, masked, states):
    """The slim chain's states against the masked chain's: losses per epoch, accuracies (0.1 point),
    densities, masks and the kept groups."""
    for k in states:
        a, b = read_rows(root / f"slim/state{k}/metrics.jsonl"), read_rows(root / f"masked/state{k}/metrics.jsonl")
        assert _close([r["train_loss"] for r in a[1:]], [r["train_loss"] for r in b[1:]])
        for key in ("val_acc", "test_acc", "train_acc", "after_prune_test_acc", "unmasked_test_acc"):
            assert all(abs((x.get(key) or 0) - (y.get(key) or 0)) <= 0.1 for x, y in zip(a, b)), key
        assert [r["density"] for r in a] == [r["density"] for r in b]
        for key in ("density", "params_alive", "kept", "best_epoch"):
            assert slim[k][key] == masked[k][key], key
        ca, cb = load_checkpoint(root / f"slim/state{k}/last.pt"), load_checkpoint(root / f"masked/state{k}/last.pt")
        assert all(torch.equal(ca["masks"][g], cb["masks"][g]) for g in ca["masks"])


def test_a_slim_rsst_chain_trains_as_the_masked_chain(tiny_config, tmp_path, monkeypatch):
    """RSST: the slim model of the training masks trains under the penalty (bound to its parameters),
    is evaluated under the final masks, re-slims at the hard mask and fine-tunes the narrower model."""
    tiny_config["defaults"]["rsst"] = {"finetune_epochs": 1}
    exp = _experiment(tiny_config, "rsst", epochs=2, states=3)
    off = {**exp, "train": {**exp["train"], "slim": "off"}}
    slim, slim_losses = _chain(exp, tmp_path / "slim", monkeypatch, range(3))
    masked, masked_losses = _chain(off, tmp_path / "masked", monkeypatch, range(3))
    # state 1 prunes nothing until its hard mask (masked), then fine-tunes slim; state 2 is slim throughout
    assert [s["run"]["training"] for s in slim] == ["masked", "slim", "slim"]
    assert slim[1]["run"]["training_reason"] == "masked until step 8 (nothing is pruned), then slim"
    assert slim[2]["run"]["training_reason"] is None
    assert len(slim_losses) == (2 + 3 + 3) * 4  # epochs x steps, the fine-tune epochs included
    assert _close(slim_losses, masked_losses), max(abs(a - b) / abs(b) for a, b in zip(slim_losses, masked_losses))
    _same_states(tmp_path, slim, masked, (1, 2))
    assert all(pruned_weights_are_zero(load_checkpoint(tmp_path / f"slim/state{k}/last.pt")) for k in (1, 2))
    for k in (1, 2):  # the penalty's own numbers: lambda, the penalised norm, the accuracies at the mask
        a, b = slim[k]["rsst"], masked[k]["rsst"]
        assert a["penalized_norm_ratio"] == pytest.approx(b["penalized_norm_ratio"], rel=1e-4)
        assert a["unmasked"] == pytest.approx(b["unmasked"], abs=0.1)
        assert a["masked"] == pytest.approx(b["masked"], abs=0.1)
    rows = read_rows(tmp_path / "slim/state2/metrics.jsonl")
    assert rows[1]["reg_lambda"] > 0 and rows[-1]["reg_lambda"] == 0  # penalised, then fine-tuned without


def test_a_slim_reprune_chain_trains_as_the_masked_chain(tiny_config, tmp_path, monkeypatch):
    """REPrune (ResNet-20 channels): its own state 0 turns slim at its first event, and every later
    event re-slims the state; the masks, losses and accuracies are the masked chain's."""
    exp = _experiment(_cnn(tiny_config), "reprune", epochs=2, states=2, lr=0.01)
    off = {**exp, "train": {**exp["train"], "slim": "off"}}
    slim, slim_losses = _chain(exp, tmp_path / "slim", monkeypatch, [0, 1])
    masked, masked_losses = _chain(off, tmp_path / "masked", monkeypatch, [0, 1])
    assert [s["event_epochs"] for s in slim] == [[2], [1, 2]]  # events re-slim state 1 twice
    assert slim[0]["run"]["training_reason"] == "masked until step 2 (nothing is pruned), then slim"
    assert slim[1]["run"]["training"] == "slim" and slim[1]["run"]["training_reason"] is None
    assert _close(slim_losses, masked_losses), max(abs(a - b) / abs(b) for a, b in zip(slim_losses, masked_losses))
    _same_states(tmp_path, slim, masked, (0, 1))
    ca, cb = load_checkpoint(tmp_path / "slim/state1/last.pt"), load_checkpoint(tmp_path / "masked/state1/last.pt")
    for n, t in ca["state_dict"].items():  # BN statistics of the channels each event pruned: replayed
        assert torch.allclose(t.float(), cb["state_dict"][n].float(), rtol=1e-3, atol=1e-4), n


def test_a_slim_rsst_state_resumed_after_its_mask_trains_as_an_uninterrupted_one(tiny_config, tmp_path, monkeypatch):
    tiny_config["defaults"]["rsst"] = {"finetune_epochs": 2}
    exp = _experiment(tiny_config, "rsst", epochs=2, states=2)
    whole, _ = _chain(exp, tmp_path / "a", monkeypatch, [0, 1])
    _kill_state1(exp, tmp_path / "b", monkeypatch, after_epoch=2)  # the mask epoch
    resumed = train_state(exp, 1, paths(tmp_path / "b", 1), device="cpu", threads=1)
    assert resumed["run"]["training"] == "slim" and resumed["run"]["resumed_after_epoch"] == 2
    a, b = read_rows(tmp_path / "a/state1/metrics.jsonl"), read_rows(tmp_path / "b/state1/metrics.jsonl")
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]  # the same numbers, exactly
    assert [r.get("test_acc") for r in a] == [r.get("test_acc") for r in b]
    assert resumed["rsst"] == whole[1]["rsst"]
    sa = load_checkpoint(tmp_path / "a/state1/last.pt")["state_dict"]
    sb = load_checkpoint(tmp_path / "b/state1/last.pt")["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _prune_one_more(self, run, epoch):
    """A plugin's epoch_start: at epoch 2, one more group of the first prunable layer masked."""
    from prunebench.pruning.plan import StatePlan

    if epoch == 2:
        plan = run.plan
        masks = {k: v.clone() for k, v in plan.final_masks.items()}
        name = next(k for k, v in masks.items() if v.sum() > 1)
        masks[name][masks[name].nonzero()[0]] = False
        run.set_plan(StatePlan(plan.density, masks, masks, plan.penalized))
    return {}


def test_a_plan_changed_during_a_slim_state_re_slims_it_exactly(tiny_config, tmp_path, monkeypatch):
    """A method that changes its masks mid-state (a plugin's set_plan) re-slims the state there."""
    from prunebench.pruning.refill import Refill

    exp = _experiment(tiny_config, states=2)
    off = {**exp, "train": {**exp["train"], "slim": "off"}}
    monkeypatch.setattr(Refill, "epoch_start", _prune_one_more)
    monkeypatch.setattr(Refill, "trains_slim", True)  # declared: its hooks use no parameter of run.model
    slim, slim_losses = _chain(exp, tmp_path / "slim", monkeypatch, [0, 1])
    masked, masked_losses = _chain(off, tmp_path / "masked", monkeypatch, [0, 1])
    assert slim[1]["run"]["training"] == "slim" and slim[1]["run"]["training_reason"] is None
    assert _close(slim_losses, masked_losses)
    ca, cb = load_checkpoint(tmp_path / "slim/state1/last.pt"), load_checkpoint(tmp_path / "masked/state1/last.pt")
    assert all(torch.equal(ca["masks"][g], cb["masks"][g]) for g in ca["masks"])


def test_groups_revived_during_a_slim_state_go_on_masked_and_say_why(tiny_config, tmp_path, monkeypatch):
    """Masks that grow back after a re-slim cannot continue exactly slim (the dropped groups'
    optimizer state was not kept): the state goes on masked from there, and its summary says so."""
    from prunebench.pruning.refill import Refill

    def prune_then_revive(self, run, epoch):
        if epoch == 2:
            self.before = run.plan
            _prune_one_more(self, run, epoch)
        elif epoch == 3:
            run.set_plan(self.before)
        return {}

    exp = _experiment(tiny_config, states=2)
    monkeypatch.setattr(Refill, "epoch_start", prune_then_revive)
    monkeypatch.setattr(Refill, "trains_slim", True)
    summaries, _ = _chain(exp, tmp_path, monkeypatch, [0, 1])
    assert summaries[1]["run"]["training"] == "masked"
    assert summaries[1]["run"]["training_reason"] == (
        "slim until step 8, then masked (the method revived groups pruned while the state trained slim, "
        "whose optimizer state was not kept)"
    )


def test_a_slim_cnn_state_trains_as_the_masked_one(tiny_config, tmp_path, monkeypatch):
    """ResNet-20 by channels: the slim state's losses, accuracies and dense-shaped checkpoint (BN running
    statistics of the pruned channels included) are the masked state's."""
    # lr 0.01: at 0.05 these 2-step epochs on 128 images amplify float rounding ~10x a step (measured:
    # 9e-8, 5e-6, 5e-5 relative over the state's 4 steps, masked vs slim); at 0.01 it stays below 1e-6
    exp = _experiment(_cnn(tiny_config), epochs=2, states=2, lr=0.01)
    off = {**exp, "train": {**exp["train"], "slim": "off"}}
    slim, slim_losses = _chain(exp, tmp_path / "slim", monkeypatch, [0, 1])
    masked, masked_losses = _chain(off, tmp_path / "masked", monkeypatch, [0, 1])
    assert slim[1]["run"]["training"] == "slim"
    assert _close(slim_losses, masked_losses), max(abs(a - b) / abs(b) for a, b in zip(slim_losses, masked_losses))
    assert slim[1]["final_test_acc"] == pytest.approx(masked[1]["final_test_acc"], abs=0.1)
    ca, cb = load_checkpoint(tmp_path / "slim/state1/last.pt"), load_checkpoint(tmp_path / "masked/state1/last.pt")
    assert all(torch.equal(ca["masks"][g], cb["masks"][g]) for g in ca["masks"])
    for n, t in ca["state_dict"].items():
        assert t.shape == cb["state_dict"][n].shape
        assert torch.allclose(t.float(), cb["state_dict"][n].float(), rtol=1e-3, atol=1e-4), n


def test_a_method_with_its_own_training_hooks_trains_masked_unless_it_declares_slim(tiny_config, tmp_path):
    """A plugin's gradient hook may bind run.model's parameters (the dense model's, not trained when
    slim): a method overriding a training hook trains masked unless it declares trains_slim."""
    from prunebench.pruning.hooks import slim_refusal
    from prunebench.pruning.refill import Refill

    class Magnitude(Refill):  # as tests/workflow/toy_method.py: a gradient hook over run.model's parameters
        name = "magnitude"

        def start(self, run, epochs_done):
            self.params = list(run.model.parameters())

        def gradient_hook(self):
            return None

    assert slim_refusal(Refill) is None and slim_refusal(method_class("random")) is None
    assert slim_refusal(method_class("oneshot")) is None
    assert "start, gradient_hook" in slim_refusal(Magnitude)
    assert slim_refusal(method_class("rsst")) is None and slim_refusal(method_class("reprune")) is None
