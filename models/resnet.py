"""ResNet-18 (He et al. 2016) with the CIFAR stem: a 3x3 convolution and no max-pool, so 32x32 images keep
their resolution in the first stage. Four stages of two basic blocks, 1x/2x/4x/8x `width` channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sweeper.models import DataInfo, ResNetConfig


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, cfg: ResNetConfig, channels: int, num_classes: int):
        super().__init__()
        width = cfg.width
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages, in_channels = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            out_channels = width * 2**i
            stages += [
                BasicBlock(in_channels, out_channels, stride),
                BasicBlock(out_channels, out_channels, 1),
            ]
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(in_channels, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate representation: globally average-pooled features of the last stage."""
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def build(cfg: ResNetConfig, info: DataInfo) -> ResNet18:
    return ResNet18(cfg, info.input_shape[0], info.num_classes)
