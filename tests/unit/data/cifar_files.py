"""CIFAR-format files as torchvision's loader reads them, written by the tests."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
from torchvision import datasets


def write_cifar(root, name="cifar10", per_batch=40, n_test=50, classes=10, seed=0):
    """Small files in torchvision's on-disk CIFAR layout (pickled dicts of uint8 rows)."""
    rng = np.random.default_rng(seed)
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    label_key = "labels" if name == "cifar10" else "fine_labels"

    def batch(n):
        return {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key: rng.integers(0, classes, n).tolist(),
        }

    files = {fname: batch(per_batch) for fname, _ in cls.train_list}
    files.update({fname: batch(n_test) for fname, _ in cls.test_list})
    files[cls.meta["filename"]] = {cls.meta["key"]: [f"class{i}" for i in range(classes)]}
    md5 = {}
    for fname, content in files.items():
        (folder / fname).write_bytes(pickle.dumps(content))
        md5[fname] = hashlib.md5((folder / fname).read_bytes()).hexdigest()
    return cls, md5, files
