"""Seeding: the same seed and state give the same run on CPU."""

from __future__ import annotations

import random

import numpy as np
import torch


def state_seed(seed: int, state: int) -> int:
    return seed * 1_000_003 + state * 7919


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
