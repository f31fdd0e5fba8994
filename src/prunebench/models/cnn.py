"""prunebench's own CIFAR CNNs."""

from __future__ import annotations

from torch import nn


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU stages and a linear classifier (the old test report's small CNN)."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (32, 64, 128), in_chans: int = 3):
        super().__init__()
        c1, c2, c3 = widths
        self.conv1, self.bn1 = nn.Conv2d(in_chans, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1)
        self.conv2, self.bn2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2)
        self.conv3, self.bn3 = nn.Conv2d(c2, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3)
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(c3, num_classes)

    def forward(self, x):
        x = self.pool(self.act(self.bn1(self.conv1(x))))
        x = self.pool(self.act(self.bn2(self.conv2(x))))
        x = self.act(self.bn3(self.conv3(x)))
        return self.fc(x.mean(dim=(2, 3)))

    def channel_chain(self) -> list[tuple[str, str, str]]:
        """(conv, bn, consumer) module names of each prunable conv: its output channels feed the consumer."""
        return [("conv1", "bn1", "conv2"), ("conv2", "bn2", "conv3"), ("conv3", "bn3", "fc")]


def _small_cnn(spec: dict) -> nn.Module:
    kwargs = dict(spec.get("kwargs") or {})
    widths = tuple(kwargs.pop("widths", (32, 64, 128)))
    return SmallCNN(num_classes=spec["num_classes"], widths=widths, **kwargs)


CNN_ARCHS = {"small_cnn": _small_cnn}


def build_cnn(spec: dict) -> nn.Module:
    return CNN_ARCHS[spec["arch"]](spec)
