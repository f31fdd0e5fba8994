"""The console line of a finished state (printed by the local announce_state job, in Snakemake's console)."""

from __future__ import annotations

from prunebench.logs import state_done_line

SUMMARY = {"experiment": "demo-digits-vit_digits-rsst-s0", "state": 2, "final_test_acc": 95.31, "best_test_acc": 95.77,
           "best_epoch": 4, "wall_seconds": 41.2}  # fmt: skip


def test_the_line_names_the_state_its_accuracies_and_time():
    assert state_done_line(SUMMARY) == (
        "prunebench: demo-digits-vit_digits-rsst-s0 state 2 done in 41 s: test 95.3 % at its end, 95.8 % at its best "
        "validation epoch (4)"
    )


def test_long_states_show_hours_minutes_seconds():
    assert "state 2 done in 3:01:02: test" in state_done_line({**SUMMARY, "wall_seconds": 3 * 3600 + 62})
