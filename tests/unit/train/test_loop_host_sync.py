"""A training step never waits for the device: every read-back to the host happens once per epoch."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from prunebench.data import DeviceData, load_dataset
from prunebench.pruning.groups import MaskedParams, groupsets_of, param_masks
from prunebench.pruning.penalty import RSSTPenalty
from prunebench.train.loop import make_optimizer, train_one_epoch

# Ops whose result the host must see (on CUDA each one blocks until the GPU catches up).
aten = torch.ops.aten
SYNCING = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.is_nonzero, aten.equal, aten.unique_dim}
TRAIN = {
    "optimizer": "sgd", "lr": 0.05, "min_lr": 0.0, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
    "lr_schedule": "cosine", "label_smoothing": 0.1, "grad_clip": 1.0, "amp": True,
}  # fmt: skip
RSST = {"lambda_schedule": "exp_custom_exponents", "reg_granularity_prune": 1.0, "exponents": 4}


class CountSyncs(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in SYNCING:
            self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def syncs_in_epoch(model, n_train: int) -> list[str]:
    data = DeviceData(load_dataset("synthetic", train_limit=n_train), "cpu")
    gs = groupsets_of(model, ["heads", "neurons"])
    keep = {s.name: torch.arange(s.size) % 3 != 0 for s in gs}
    hard = MaskedParams(model, param_masks(model, gs, keep))
    pen = {
        k: 1 - m for k, m in param_masks(model, gs, {k: torch.arange(len(v)) % 3 != 1 for k, v in keep.items()}).items()
    }
    penalty = RSSTPenalty(model, pen, RSST, total_steps=100)
    opt = make_optimizer(model, TRAIN)
    with CountSyncs() as counter:
        stats = train_one_epoch(
            model, data, opt, {**TRAIN, "batch_size": 16}, step0=0, total_steps=100, warmup_steps=2,
            generator=torch.Generator().manual_seed(0), hard=hard, gradient_hook=penalty,
        )  # fmt: skip
    assert stats["steps"] == n_train // 16
    return counter.ops


def test_host_reads_do_not_grow_with_the_number_of_steps(tiny_vit):
    two_steps = syncs_in_epoch(tiny_vit, 32)
    six_steps = syncs_in_epoch(tiny_vit, 96)
    assert len(six_steps) == len(two_steps) <= 2, six_steps  # only the epoch's loss and accuracy
