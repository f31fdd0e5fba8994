"""Datasets held in memory as uint8 tensors, and a batch loader that augments on the device."""

from prunebench.data.datasets import DATASETS, Splits, load_dataset
from prunebench.data.loader import DeviceData

__all__ = ["DATASETS", "DeviceData", "Splits", "load_dataset"]
