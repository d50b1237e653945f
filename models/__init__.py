"""The model zoo: a registry from `model.name` in a sweep spec to a config dataclass and a builder.

Config dataclasses live here (no torch import) so that a spec can be validated in the launcher in
milliseconds; each model file is imported only when a job builds the model. Every model has
`embed(x)` (the penultimate representation, used by kNN / silhouette metrics) and `head`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from sweeper.schema import SchemaError, did_you_mean, from_dict


@dataclass
class DataInfo:
    """What a model needs to know about its input: (channels, height, width) for images, (lines, features)
    or (lines, channels, features) for sequences, (features,) for flat vectors."""

    input_shape: tuple[int, ...]
    num_classes: int
    kind: Literal["image", "sequence", "flat"] = "image"


@dataclass
class TransformerConfig:
    """Fields shared by the transformer models. `residual: mhc` replaces each block's two residual
    connections by manifold-constrained hyper-connections over `streams` parallel residual streams."""

    name: str = ""
    layers: int = 4
    d_model: int = 64
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    residual: Literal["regular", "mhc"] = "regular"
    streams: int = 4  # mhc only: number of parallel residual streams
    sinkhorn_iters: int = 20  # mhc only: Sinkhorn-Knopp iterations making the mixing doubly stochastic

    def validate(self) -> None:
        if min(self.layers, self.d_model, self.heads) < 1:
            raise SchemaError("", "layers, d_model and heads must be positive")
        if self.d_model % self.heads:
            raise SchemaError("heads", f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.mlp_ratio <= 0:
            raise SchemaError("mlp_ratio", f"must be positive, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise SchemaError("dropout", f"must be in [0, 1), got {self.dropout}")
        if self.streams < 1:
            raise SchemaError("streams", f"must be at least 1, got {self.streams}")
        if self.sinkhorn_iters < 1:
            raise SchemaError("sinkhorn_iters", f"must be at least 1, got {self.sinkhorn_iters}")


@dataclass
class ViTConfig(TransformerConfig):
    name: Literal["vit"] = "vit"
    patch_size: int = 2

    def validate(self) -> None:
        super().validate()
        if self.patch_size < 1:
            raise SchemaError("patch_size", f"must be positive, got {self.patch_size}")


@dataclass
class SeqTransformerConfig(TransformerConfig):
    """A CNN tokenizer turns every scan line into one token; a transformer reads the tokens. Images are
    read as sequences of their rows."""

    name: Literal["seq_transformer"] = "seq_transformer"
    attention: Literal["causal", "global"] = "causal"
    pool: Literal["auto", "last", "mean"] = "auto"  # auto: last token if causal, mean if global
    tokenizer_channels: int = 32
    tokenizer_layers: int = 2  # stride-2 convolutions along each line
    tokenizer_kernel: int = 3

    def validate(self) -> None:
        super().validate()
        if min(self.tokenizer_channels, self.tokenizer_layers, self.tokenizer_kernel) < 1:
            raise SchemaError(
                "", "tokenizer_channels, tokenizer_layers and tokenizer_kernel must be positive"
            )


@dataclass
class ResNetConfig:
    """ResNet-18 with the CIFAR stem (3x3 conv, no max-pool) for 32x32 images."""

    name: Literal["resnet18"] = "resnet18"
    width: int = 64  # channels of the first stage (64 in the paper); the stages use 1, 2, 4, 8 times this

    def validate(self) -> None:
        if self.width < 1:
            raise SchemaError("width", f"must be positive, got {self.width}")


@dataclass
class MLPConfig:
    name: Literal["mlp"] = "mlp"
    depth: int = 2  # hidden layers
    width: int = 256
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    init: Literal["default", "kaiming", "xavier", "orthogonal"] = "default"
    dropout: float = 0.0

    def validate(self) -> None:
        if self.depth < 0 or self.width < 1:
            raise SchemaError("", "depth must be >= 0 and width >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise SchemaError("dropout", f"must be in [0, 1), got {self.dropout}")


@dataclass
class ModelEntry:
    config: type
    builder: str  # "module:function", imported lazily
    kinds: tuple[str, ...]  # the data kinds it reads

    def build(self, config: Any, info: DataInfo):
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)(config, info)


MODELS: dict[str, ModelEntry] = {
    "vit": ModelEntry(ViTConfig, "sweeper.models.vit:build", ("image",)),
    "seq_transformer": ModelEntry(
        SeqTransformerConfig, "sweeper.models.seq_transformer:build", ("sequence", "image")
    ),
    "resnet18": ModelEntry(ResNetConfig, "sweeper.models.resnet:build", ("image",)),
    "mlp": ModelEntry(MLPConfig, "sweeper.models.mlp:build", ("flat", "image", "sequence")),
}


def parse_model_config(data: Any, key: str = "model") -> Any:
    """Validate a `model:` mapping into its config dataclass (chosen by `name`)."""
    if not isinstance(data, dict):
        raise SchemaError(key, f"expected a mapping with a 'name' (one of {', '.join(MODELS)})")
    name = data.get("name")
    if name not in MODELS:
        hint = did_you_mean(str(name), MODELS) if name is not None else ""
        raise SchemaError(f"{key}.name", f"unknown model {name!r}{hint}; known models: {', '.join(MODELS)}")
    try:
        return from_dict(MODELS[name].config, data, key)
    except SchemaError as exc:
        if exc.message.startswith("unknown key") and "did you mean" not in exc.message:
            fields = ", ".join(f for f in MODELS[name].config.__dataclass_fields__ if f != "name")
            raise SchemaError(
                exc.key,
                f"unknown key for model {name!r} (its keys: {fields}); "
                "to compare different models, give each config its own whole `model:`",
            ) from None
        raise


def check_input(config: Any, info: DataInfo) -> None:
    """Raise SchemaError (key relative to `model`) if the model cannot read this data; called when a spec
    is validated for the built-in datasets, and when a job builds the model."""
    entry = MODELS[config.name]
    if info.kind not in entry.kinds:
        raise SchemaError(
            "name", f"{config.name} reads {' or '.join(entry.kinds)} data, this data is {info.kind}"
        )
    if config.name == "vit":
        _, height, width = info.input_shape
        if height % config.patch_size or width % config.patch_size:
            raise SchemaError(
                "patch_size", f"{config.patch_size} does not tile the {height}x{width} images of this data"
            )


def build_model(config: Any, info: DataInfo):
    check_input(config, info)
    return MODELS[config.name].build(config, info)
