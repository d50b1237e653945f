"""The model zoo: every model builds from its config, trains a step, and is what it claims to be."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sweeper.models import DataInfo, build_model, parse_model_config
from sweeper.models.mhc import HyperConnection, sinkhorn
from sweeper.models.transformer import Encoder, Residual
from sweeper.schema import SchemaError
from tests.conftest import REPO

DIGITS = DataInfo((1, 8, 8), 10, "image")
CIFAR = DataInfo((3, 32, 32), 10, "image")
SCANS = DataInfo((12, 16), 3, "sequence")
SCANS_2CH = DataInfo((12, 2, 16), 3, "sequence")
FLAT = DataInfo((20,), 4, "flat")

TINY_TRANSFORMER = {"layers": 2, "d_model": 16, "heads": 2, "dropout": 0.0}
CASES = [
    ({"name": "vit", "patch_size": 4, **TINY_TRANSFORMER}, DIGITS),
    ({"name": "vit", "patch_size": 8, "residual": "mhc", "streams": 3, **TINY_TRANSFORMER}, CIFAR),
    ({"name": "seq_transformer", **TINY_TRANSFORMER}, SCANS),
    ({"name": "seq_transformer", "attention": "global", "residual": "mhc", **TINY_TRANSFORMER}, SCANS_2CH),
    ({"name": "seq_transformer", "tokenizer_layers": 1, **TINY_TRANSFORMER}, DIGITS),
    ({"name": "resnet18", "width": 4}, CIFAR),
    ({"name": "mlp", "depth": 3, "width": 32, "activation": "gelu", "init": "orthogonal"}, FLAT),
    ({"name": "mlp", "depth": 0}, SCANS),
]


def batch_for(info: DataInfo, n: int = 6) -> torch.Tensor:
    return torch.randn(n, *info.input_shape)


@pytest.mark.parametrize("config,info", CASES, ids=lambda c: c["name"] if isinstance(c, dict) else "")
def test_builds_forwards_embeds_and_learns(config, info):
    torch.manual_seed(0)
    model = build_model(parse_model_config(config), info)
    x, y = batch_for(info), torch.arange(6) % info.num_classes
    logits = model(x)
    assert logits.shape == (6, info.num_classes)
    assert model.embed(x).shape[0] == 6 and model.head(model.embed(x)).shape == logits.shape
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):  # a handful of steps on one batch must lower its loss
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_resnet18_is_the_cifar_resnet18():
    model = build_model(parse_model_config({"name": "resnet18"}), CIFAR)
    # 11,173,962 parameters: the standard CIFAR ResNet-18 (3x3 stem, no max-pool).
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    assert isinstance(model.stem[0], torch.nn.Conv2d) and model.stem[0].kernel_size == (3, 3)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())


def test_sinkhorn_gives_doubly_stochastic_matrices():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, 4) * 3
    matrix = sinkhorn(logits, iters=20)
    # The last iteration normalizes columns (exact); rows are within Sinkhorn's tolerance after 20
    # iterations, as in the paper, and converge with more.
    assert (matrix >= 0).all()
    assert torch.allclose(matrix.sum(-2), torch.ones(5, 4), atol=1e-5)
    assert torch.allclose(matrix.sum(-1), torch.ones(5, 4), atol=0.05)
    assert torch.allclose(sinkhorn(logits, iters=500).sum(-1), torch.ones(5, 4), atol=1e-4)


def test_hyper_connection_coefficients_respect_the_manifold():
    torch.manual_seed(0)
    connection = HyperConnection(d_model=8, streams=4, sinkhorn_iters=20)
    with torch.no_grad():
        connection.gate.fill_(1.0)  # make the input-dependent part matter
    streams = torch.randn(2, 5, 4, 8)
    h_pre, h_post, h_res = connection.coefficients(streams)
    assert h_pre.shape == (2, 5, 4) and h_post.shape == (2, 5, 4) and h_res.shape == (2, 5, 4, 4)
    assert (h_pre >= 0).all() and (h_post >= 0).all() and (h_post <= 2).all()
    assert torch.allclose(h_res.sum(-2), torch.ones(2, 5, 4), atol=1e-5)
    assert torch.allclose(h_res.sum(-1), torch.ones(2, 5, 4), atol=0.02)
    assert h_res.std(dim=(0, 1)).max() > 0  # per-token (dynamic), not one static matrix
    out = connection(streams, torch.nn.Identity())
    expected = torch.einsum("btmn,btnd->btmd", h_res, streams) + h_post.unsqueeze(-1) * torch.einsum(
        "btn,btnd->btd", h_pre, streams
    ).unsqueeze(-2)
    assert torch.allclose(out, expected, atol=1e-5)


def test_hyper_connection_starts_close_to_a_regular_residual():
    torch.manual_seed(0)
    connection = HyperConnection(d_model=8, streams=4)
    h_pre, h_post, h_res = connection.coefficients(torch.randn(1, 3, 4, 8))
    assert torch.allclose(h_pre.sum(-1), torch.ones(1, 3), atol=0.05)  # reads the mean of the streams
    assert (h_res.diagonal(dim1=-2, dim2=-1) > 0.8).all()  # each stream mostly keeps itself


def test_residual_switch_wraps_attention_and_mlp_separately():
    regular = Encoder(parse_model_config({"name": "vit", **TINY_TRANSFORMER}))
    mhc = Encoder(parse_model_config({"name": "vit", "residual": "mhc", "streams": 2, **TINY_TRANSFORMER}))
    for block in regular.blocks:
        assert isinstance(block.attn_residual, Residual) and isinstance(block.mlp_residual, Residual)
    for block in mhc.blocks:
        assert isinstance(block.attn_residual, HyperConnection) and isinstance(
            block.mlp_residual, HyperConnection
        )
        assert block.attn_residual is not block.mlp_residual and block.attn_residual.streams == 2


@pytest.mark.parametrize("residual", ["regular", "mhc"])
def test_causal_attention_never_looks_ahead_and_global_does(residual):
    torch.manual_seed(0)
    config = {"name": "seq_transformer", "residual": residual, **TINY_TRANSFORMER}
    causal = Encoder(parse_model_config({**config, "attention": "causal"}), causal=True).eval()
    full = Encoder(parse_model_config({**config, "attention": "global"}), causal=False).eval()
    full.load_state_dict(causal.state_dict())  # same weights: only the mask differs
    tokens = torch.randn(2, 7, 16)
    changed = tokens.clone()
    changed[:, -1] = torch.randn(2, 16)  # change only the last line
    with torch.no_grad():
        assert torch.allclose(causal(tokens)[:, :-1], causal(changed)[:, :-1], atol=1e-6)
        assert not torch.allclose(full(tokens)[:, :-1], full(changed)[:, :-1], atol=1e-3)


def test_sequence_pooling_follows_attention():
    causal = build_model(parse_model_config({"name": "seq_transformer", **TINY_TRANSFORMER}), SCANS)
    full = build_model(
        parse_model_config({"name": "seq_transformer", "attention": "global", **TINY_TRANSFORMER}), SCANS
    )
    assert causal.causal and causal.pool == "last"
    assert not full.causal and full.pool == "mean"


def test_mlp_initializations():
    torch.manual_seed(0)
    model = build_model(
        parse_model_config({"name": "mlp", "depth": 1, "width": 64, "init": "orthogonal"}), FLAT
    )
    weight = model.body[0].weight  # (64, 20): orthogonal columns, scaled by the ReLU gain
    assert torch.allclose(weight.T @ weight, 2.0 * torch.eye(20), atol=1e-4)
    assert (model.body[0].bias == 0).all()
    wide = DataInfo((2000,), 2, "flat")
    kaiming = build_model(
        parse_model_config({"name": "mlp", "depth": 1, "width": 400, "init": "kaiming"}), wide
    )
    assert kaiming.body[0].weight.std().item() == pytest.approx((2.0 / 2000) ** 0.5, rel=0.05)


@pytest.mark.parametrize(
    "config,info,key",
    [
        ({"name": "vit", "patch_size": 3}, DIGITS, "patch_size"),
        ({"name": "vit"}, SCANS, "name"),
        ({"name": "resnet18"}, FLAT, "name"),
    ],
)
def test_models_refuse_data_they_cannot_read(config, info, key):
    with pytest.raises(SchemaError) as info_error:
        build_model(parse_model_config(config), info)
    assert info_error.value.key == key


def test_configs_validate_without_importing_torch():
    code = (
        "import sys; from sweeper.config import parse_train_config;"
        "parse_train_config({'model': {'name': 'seq_transformer', 'residual': 'mhc'}, 'schedule': {'name': 'whd'}});"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_mhc_residual_streams_stay_in_full_precision_under_autocast():
    encoder = Encoder(
        parse_model_config({"name": "vit", "residual": "mhc", "streams": 2, **TINY_TRANSFORMER})
    )
    streams = torch.randn(2, 5, 2, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert encoder.blocks[0](streams).dtype == torch.float32
