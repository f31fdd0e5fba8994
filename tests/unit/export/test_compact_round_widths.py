"""prune.round_to keeps every layer's width at a multiple of the step, with nested masks."""

import torch

from prunebench.pruning.groups import GroupSet, ParamSlice
from prunebench.pruning.ranking import round_widths


def _gs(name, size, width=1):
    return GroupSet(name, "neuron" if width == 1 else "head", name, size, (ParamSlice(f"{name}.w", 0, width),))


def test_widths_move_to_the_nearest_multiple_best_groups_first():
    sets = [_gs("a", 32), _gs("b", 32), _gs("c", 6, width=64), _gs("d", 32)]
    scores = {gs.name: torch.arange(gs.size, dtype=torch.float64) for gs in sets}
    prev = {gs.name: torch.ones(gs.size, dtype=torch.bool) for gs in sets}
    prev["d"][22:] = False  # only 22 live groups left
    keep = {gs.name: torch.zeros(gs.size, dtype=torch.bool) for gs in sets}
    keep["a"][[31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19]] = True  # 13 -> 16
    keep["b"][[31, 30, 29]] = True  # 3 -> 8: at least one multiple
    keep["c"][[5, 4, 3]] = True  # heads of 64 entries: 3 already fits
    keep["d"][1:22] = True  # 21 -> 24, capped at the 22 live groups
    out = round_widths(sets, scores, prev, keep, 8)
    assert {k: int(v.sum()) for k, v in out.items()} == {"a": 16, "b": 8, "c": 3, "d": 22}
    assert out["a"][16:].all() and not out["a"][:16].any()  # the best live groups were added
    assert not (out["d"] & ~prev["d"]).any()


def test_widths_round_down_dropping_the_weakest():
    gs = _gs("a", 32)
    keep = {"a": torch.arange(32) >= 22}  # 10 -> 8
    out = round_widths(
        [gs], {"a": torch.arange(32, dtype=torch.float64)}, {"a": torch.ones(32, dtype=torch.bool)}, keep, 8
    )
    assert int(out["a"].sum()) == 8 and out["a"][24:].all()
