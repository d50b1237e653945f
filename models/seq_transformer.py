"""Sequence classifier for scan-line data: a small CNN turns each line into one token, a transformer reads
the lines in order. `attention: causal` is the "sequential transformer" (line t sees lines <= t, the
prediction is read from the last line); `attention: global` is the same encoder without the mask (mean
over lines). Input (B, lines, features) or (B, lines, channels, features); images are read row by row."""

from __future__ import annotations

import torch
from torch import nn

from sweeper.models import DataInfo, SeqTransformerConfig
from sweeper.models.transformer import Encoder


class LineTokenizer(nn.Module):
    """(B*L, channels, features) -> (B*L, d_model): stride-2 1-d convolutions along the line, then a linear map."""

    def __init__(self, cfg: SeqTransformerConfig, channels: int, features: int):
        super().__init__()
        layers: list[nn.Module] = []
        length = features
        for i in range(cfg.tokenizer_layers):
            in_channels = channels if i == 0 else cfg.tokenizer_channels
            pad = cfg.tokenizer_kernel // 2
            layers += [
                nn.Conv1d(in_channels, cfg.tokenizer_channels, cfg.tokenizer_kernel, 2, pad),
                nn.GELU(),
            ]
            length = (length + 2 * pad - cfg.tokenizer_kernel) // 2 + 1  # >= 1: lines never vanish
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(cfg.tokenizer_channels * length, cfg.d_model)

    def forward(self, lines: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(lines).flatten(1))


class SeqTransformer(nn.Module):
    def __init__(
        self,
        cfg: SeqTransformerConfig,
        lines: int,
        channels: int,
        features: int,
        num_classes: int,
        image: bool,
    ):
        super().__init__()
        self.image = image
        self.causal = cfg.attention == "causal"
        self.pool = cfg.pool if cfg.pool != "auto" else ("last" if self.causal else "mean")
        self.tokenizer = LineTokenizer(cfg, channels, features)
        self.pos = nn.Parameter(torch.randn(1, lines, cfg.d_model) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg, causal=self.causal)
        self.head = nn.Linear(cfg.d_model, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.image:  # (B, C, H, W): the rows are the lines
            x = x.transpose(1, 2)
        if x.ndim == 3:  # (B, L, F): one channel per line
            x = x.unsqueeze(2)
        batch, lines = x.shape[:2]
        tokens = self.tokenizer(x.flatten(0, 1)).view(batch, lines, -1)
        h = self.encoder(self.drop(tokens + self.pos))
        return h[:, -1] if self.pool == "last" else h.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def build(cfg: SeqTransformerConfig, info: DataInfo) -> SeqTransformer:
    if info.kind == "image":
        channels, height, width = info.input_shape
        lines, features = height, width
    elif len(info.input_shape) == 2:
        (lines, features), channels = info.input_shape, 1
    else:
        lines, channels, features = info.input_shape
    return SeqTransformer(cfg, lines, channels, features, info.num_classes, image=info.kind == "image")
