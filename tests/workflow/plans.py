"""What Snakemake plans: the training rules."""

from __future__ import annotations

TRAINING_RULES = ("train_state0", "train_state", "share_state0")
