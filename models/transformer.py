"""The transformer encoder shared by ViT and the sequence transformer: pre-norm blocks whose two residual
connections (around attention and around the MLP) are either regular (`x + f(x)`) or mHC hyper-connections
(models/mhc.py), chosen by `residual:` in the model config."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sweeper.models import TransformerConfig
from sweeper.models.mhc import HyperConnection


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float, causal: bool):
        super().__init__()
        self.heads, self.causal, self.dropout = heads, causal, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, d_model = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=self.causal)
        return self.drop(self.proj(y.transpose(1, 2).reshape(batch, tokens, d_model)))


class MLP(nn.Module):
    def __init__(self, d_model: int, mlp_ratio: float, dropout: float):
        super().__init__()
        hidden = int(d_model * mlp_ratio)
        self.net = nn.Sequential(
            nn.Linear(d_model, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PreNorm(nn.Module):
    def __init__(self, d_model: int, fn: nn.Module):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(d_model), fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Residual(nn.Module):
    """The regular residual connection, with the same call signature as HyperConnection."""

    def forward(self, x: torch.Tensor, branch: nn.Module) -> torch.Tensor:
        return x + branch(x)


def residual(cfg: TransformerConfig) -> nn.Module:
    if cfg.residual == "mhc":
        return HyperConnection(cfg.d_model, cfg.streams, cfg.sinkhorn_iters)
    return Residual()


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig, causal: bool):
        super().__init__()
        self.attn = PreNorm(cfg.d_model, SelfAttention(cfg.d_model, cfg.heads, cfg.dropout, causal))
        self.mlp = PreNorm(cfg.d_model, MLP(cfg.d_model, cfg.mlp_ratio, cfg.dropout))
        self.attn_residual, self.mlp_residual = residual(cfg), residual(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn_residual(x, self.attn)
        return self.mlp_residual(x, self.mlp)


class Encoder(nn.Module):
    """(batch, tokens, d_model) -> (batch, tokens, d_model), final LayerNorm included."""

    def __init__(self, cfg: TransformerConfig, causal: bool = False):
        super().__init__()
        self.streams = cfg.streams if cfg.residual == "mhc" else 0  # 0: one plain residual stream
        self.blocks = nn.ModuleList(Block(cfg, causal) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.streams:  # hyper-connections carry n copies of the residual stream: (B, T, n, d)
            x = x.unsqueeze(2).expand(-1, -1, self.streams, -1).contiguous()
        for block in self.blocks:
            x = block(x)
        if self.streams:
            x = x.mean(dim=2)
        return self.norm(x)
