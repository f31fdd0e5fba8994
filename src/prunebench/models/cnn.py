"""prunebench's own CNNs: the small CNN, CIFAR ResNet-20/32/56/110, ResNet-18 at 32 px, and torchvision's
ResNet-34/50 at ImageNet size (224 px).

Every model exposes ``channel_chain()``: the (conv, bn, consumer) module names of its prunable
convs. In residual blocks only the inner convs (conv1 -> bn1 -> conv2, and conv2 -> bn2 -> conv3 in a
bottleneck) are listed: the block's output
channels are tied to the shortcut, so pruning them would need the whole residual stream pruned alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunebench.errors import ModelError


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


class BasicBlock(nn.Module):
    """He et al.'s CIFAR basic block with the parameter-free "option A" shortcut.

    When the block halves the resolution and doubles the width, the shortcut subsamples by 2 and
    pads the new channels with zeros, so ResNet-56 has exactly 853,018 parameters for 10 classes.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2): a 3x3 stem and 3 stages of n basic blocks with 16/32/64 channels."""

    def __init__(self, depth: int, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110...), not {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_planes = widths[0]
        for i, planes in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride=2 if i > 0 and j == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))

    def channel_chain(self) -> list[tuple[str, str, str]]:
        """The inner conv of every block: conv1's output channels feed only conv2."""
        return _inner_chain(self, ("layer1", "layer2", "layer3"))


def _inner_chain(model: nn.Module, stages: tuple[str, ...]) -> list[tuple[str, str, str]]:
    out = []
    for stage in stages:
        for j in range(len(model.get_submodule(stage))):
            p = f"{stage}.{j}"
            out.append((f"{p}.conv1", f"{p}.bn1", f"{p}.conv2"))
    return out


class ResNet18Cifar(nn.Module):
    """torchvision's ResNet-18 for 32 px inputs: a 3x3 stride-1 stem and no max-pool."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        # Adopt torchvision's modules so that parameter names read as in torchvision (layer1.0.conv1...).
        for name, module in net.named_children():
            setattr(self, name, module)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def channel_chain(self) -> list[tuple[str, str, str]]:
        """The inner conv of every basic block (conv1 -> bn1 -> conv2)."""
        return _inner_chain(self, ("layer1", "layer2", "layer3", "layer4"))


class ImageNetResNet(nn.Module):
    """torchvision's ResNet-34 or ResNet-50 for ImageNet-size inputs (224 px: 7x7 stride-2 stem, max-pool).

    Prunable: in a basic block (ResNet-34) the first conv's outputs; in a bottleneck block (ResNet-50)
    the outputs of the two inner convs (conv1 -> conv2 and conv2 -> conv3), as REPrune prunes them. The
    block's output channels (conv3's, tied to the shortcut) are never pruned.
    """

    def __init__(self, depth: int, num_classes: int = 1000):
        super().__init__()
        from torchvision.models import resnet34, resnet50

        net = {34: resnet34, 50: resnet50}[depth](weights=None, num_classes=num_classes)
        for name, module in net.named_children():  # torchvision's parameter names (layer1.0.conv1...)
            setattr(self, name, module)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def channel_chain(self) -> list[tuple[str, str, str]]:
        """conv1 -> bn1 -> conv2 of every block, and conv2 -> bn2 -> conv3 of every bottleneck block."""
        out = []
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            for j, block in enumerate(self.get_submodule(stage)):
                p = f"{stage}.{j}"
                out.append((f"{p}.conv1", f"{p}.bn1", f"{p}.conv2"))
                if hasattr(block, "conv3"):
                    out.append((f"{p}.conv2", f"{p}.bn2", f"{p}.conv3"))
        return out


def _imagenet_resnet(depth: int):
    def build(spec: dict) -> nn.Module:
        return ImageNetResNet(depth, num_classes=spec["num_classes"], **(spec.get("kwargs") or {}))

    return build


def _cifar_resnet(depth: int):
    def build(spec: dict) -> nn.Module:
        return CifarResNet(depth, num_classes=spec["num_classes"], **(spec.get("kwargs") or {}))

    return build


def _resnet18(spec: dict) -> nn.Module:
    return ResNet18Cifar(num_classes=spec["num_classes"], **(spec.get("kwargs") or {}))


CNN_ARCHS = {
    "small_cnn": _small_cnn,
    "resnet20": _cifar_resnet(20),
    "resnet32": _cifar_resnet(32),
    "resnet56": _cifar_resnet(56),
    "resnet110": _cifar_resnet(110),
    "resnet18": _resnet18,
    "resnet34": _imagenet_resnet(34),
    "resnet50": _imagenet_resnet(50),
}


def build_cnn(spec: dict) -> nn.Module:
    try:
        return CNN_ARCHS[spec["arch"]](spec)
    except TypeError as exc:  # an unknown key under the model's kwargs
        raise ModelError(f"cannot build {spec['arch']} with kwargs {spec.get('kwargs')}: {exc}") from None
