"""Vision Transformer for small images (Dosovitskiy et al. 2020): patches -> tokens, a class token,
learned position embeddings, the shared pre-norm encoder (regular or mHC residuals)."""

from __future__ import annotations

import torch
from torch import nn

from sweeper.models import DataInfo, ViTConfig
from sweeper.models.transformer import Encoder


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig, channels: int, height: int, width: int, num_classes: int):
        super().__init__()
        n_patches = (height // cfg.patch_size) * (width // cfg.patch_size)
        self.patchify = nn.Conv2d(channels, cfg.d_model, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.pos = nn.Parameter(torch.randn(1, n_patches + 1, cfg.d_model) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg, causal=False)
        self.head = nn.Linear(cfg.d_model, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate representation: the class token after the encoder."""
        x = self.patchify(x).flatten(2).transpose(1, 2)  # (B, patches, d_model)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos
        return self.encoder(self.drop(x))[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def build(cfg: ViTConfig, info: DataInfo) -> ViT:
    channels, height, width = info.input_shape
    return ViT(cfg, channels, height, width, info.num_classes)
