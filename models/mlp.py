"""Multi-layer perceptron for flat features (images and sequences are flattened)."""

from __future__ import annotations

import math

import torch
from torch import nn

from sweeper.models import DataInfo, MLPConfig

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def initialize(layer: nn.Linear, init: str, activation: str) -> None:
    """`default` keeps PyTorch's own initialization."""
    if init == "default":
        return
    if init == "kaiming":
        nonlinearity = "relu" if activation in ("relu", "gelu", "silu") else "tanh"
        nn.init.kaiming_normal_(layer.weight, nonlinearity=nonlinearity)
    elif init == "xavier":
        nn.init.xavier_uniform_(
            layer.weight, gain=nn.init.calculate_gain("tanh" if activation == "tanh" else "relu")
        )
    elif init == "orthogonal":
        nn.init.orthogonal_(layer.weight, gain=math.sqrt(2.0) if activation != "tanh" else 5.0 / 3.0)
    nn.init.zeros_(layer.bias)


class MLP(nn.Module):
    def __init__(self, cfg: MLPConfig, in_features: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(cfg.depth):
            linear = nn.Linear(width, cfg.width)
            initialize(linear, cfg.init, cfg.activation)
            layers += [linear, ACTIVATIONS[cfg.activation](), nn.Dropout(cfg.dropout)]
            width = cfg.width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def build(cfg: MLPConfig, info: DataInfo) -> MLP:
    return MLP(cfg, math.prod(info.input_shape), info.num_classes)
