"""Datasets for the built-in trainer as in-memory tensors (small data is moved to the device once), their
normalization, class weights, and batched on-device augmentation.

Layouts: images (N, C, H, W); sequences (N, lines, features) or (N, lines, channels, features); flat (N, D).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sweeper.config import AugmentConfig, DataConfig
from sweeper.errors import SweeperError
from sweeper.models import DataInfo

CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


class DataError(SweeperError):
    """A dataset is missing or not in the expected format."""


@dataclass
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    info: DataInfo
    x_test: torch.Tensor | None = None  # the test split, where the data has one apart from valid
    y_test: torch.Tensor | None = None

    def to(self, device: torch.device) -> Data:
        test = [None if t is None else t.to(device) for t in (self.x_test, self.y_test)]
        return Data(
            *(t.to(device) for t in (self.x_train, self.y_train, self.x_valid, self.y_valid)),
            self.info,
            *test,
        )


# Arrays as read from disk, by split name ("train", and optionally "valid" and "test"): (x, y).
Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def data_root(cfg: DataConfig) -> Path:
    return Path(cfg.data_root or os.environ.get("SWEEPER_DATA_ROOT", "data")).expanduser()


# -- loaders -------------------------------------------------------------------------------------------


def read_digits(cfg: DataConfig) -> tuple[Splits, DataInfo]:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes): real data, no download."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    return {"train": (x, digits.target.astype(np.int64))}, DataInfo((1, 8, 8), 10, "image")


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def read_cifar(cfg: DataConfig) -> tuple[Splits, DataInfo]:
    """CIFAR-10/100 from the python-pickle folder (as distributed by the authors and torchvision)."""
    root = data_root(cfg)
    folder = root / CIFAR_FOLDERS[cfg.name]
    if not folder.is_dir() and cfg.download:
        download_cifar(cfg.name, root)
    if not folder.is_dir():
        raise DataError(
            f"{cfg.name}: no {folder.name}/ folder under {root}; set data.data_root to the folder that holds "
            "it, or data.download: true to download it there"
        )
    if cfg.name == "cifar10":
        train_files = [folder / f"data_batch_{i}" for i in range(1, 6)]
        test_file, label_key, num_classes = folder / "test_batch", "labels", 10
    else:
        train_files, test_file, label_key, num_classes = (
            [folder / "train"],
            folder / "test",
            "fine_labels",
            100,
        )

    def read(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise DataError(f"{cfg.name}: {folder} lacks {', '.join(missing)}")
        batches = [_unpickle(f) for f in files]
        x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        return x.astype(np.float32) / 255.0, y

    splits = {"train": read(train_files), "test": read([test_file])}
    return splits, DataInfo((3, 32, 32), num_classes, "image")


def download_cifar(name: str, root: Path) -> None:
    import torchvision

    dataset = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    try:
        dataset(str(root), train=True, download=True)
    except (OSError, RuntimeError) as exc:
        raise DataError(
            f"{name}: download into {root} failed ({exc}); place the folder there by hand"
        ) from None


def read_file(cfg: DataConfig) -> tuple[Splits, DataInfo]:
    """A user's .npz or .pt file: `x`, `y` (optionally `split` with train/valid/test per sample), or
    x_train/y_train with optional x_valid/y_valid and x_test/y_test. `num_classes` is optional."""
    path = Path(cfg.path).expanduser()
    if not path.is_absolute() and cfg.data_root:
        path = data_root(cfg) / path
    if not path.is_file():
        raise DataError(f"data.path: no such file {str(path)!r}")
    arrays = _read_arrays(path)
    num_classes = int(arrays.pop("num_classes")) if "num_classes" in arrays else None
    splits = _file_splits(arrays, path)

    for x, y in splits.values():
        if len(x) != len(y):
            raise DataError(f"{path}: x and y of a split differ in length ({len(x)} and {len(y)})")
        if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise DataError(f"{path}: labels must be integers 0..num_classes-1")
    top = max(int(y.max()) for _, y in splits.values() if len(y)) + 1
    if num_classes is None:
        num_classes = top
    elif top > num_classes:
        raise DataError(f"{path}: a label is {top - 1} but num_classes is {num_classes}")

    sample_dims = splits["train"][0].ndim - 1
    kind = cfg.kind if cfg.kind != "auto" else {3: "image", 2: "sequence", 1: "flat"}.get(sample_dims)
    allowed = {"image": (2, 3), "sequence": (2, 3), "flat": range(1, 10)}
    if kind is None or sample_dims not in allowed[kind]:
        raise DataError(
            f"{path}: x has {sample_dims} dims per sample, which is not {kind or 'image, sequence or flat'} data"
        )

    def as_kind(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        if kind == "image" and x.ndim == 3:
            return x[:, None]  # (N, H, W): one channel
        return x.reshape(len(x), -1) if kind == "flat" else x

    splits = {name: (as_kind(x), y.astype(np.int64)) for name, (x, y) in splits.items()}
    return splits, DataInfo(tuple(splits["train"][0].shape[1:]), num_classes, kind)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    # The user's own data file, which may hold numpy arrays: torch's weights-only unpickler refuses those.
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(loaded, dict):
        raise DataError(f"{path}: expected a dict of arrays, got {type(loaded).__name__}")
    return {k: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in loaded.items()}


def _file_splits(arrays: dict[str, np.ndarray], path: Path) -> Splits:
    if "x" in arrays and "y" in arrays:
        x, y = arrays["x"], arrays["y"]
        if "split" not in arrays:
            return {"train": (x, y)}
        names = {"0": "train", "1": "valid", "2": "test"}
        split = np.array([names.get(s, s) for s in np.asarray(arrays["split"]).astype(str)])
        unknown = set(split) - {"train", "valid", "test"}
        if unknown or len(split) != len(x):
            raise DataError(f"{path}: `split` needs one of train, valid, test (or 0, 1, 2) per sample")
        if not (split == "train").any():
            raise DataError(f"{path}: `split` marks no sample as train")
        return {s: (x[split == s], y[split == s]) for s in ("train", "valid", "test") if (split == s).any()}
    if "x_train" in arrays and "y_train" in arrays:
        splits = {}
        for name in ("train", "valid", "test"):
            if (f"x_{name}" in arrays) != (f"y_{name}" in arrays):
                raise DataError(f"{path}: x_{name} and y_{name} come together")
            if f"x_{name}" in arrays:
                splits[name] = (arrays[f"x_{name}"], arrays[f"y_{name}"])
        return splits
    raise DataError(f"{path}: expected arrays `x` and `y` (or x_train and y_train), found {sorted(arrays)}")


READERS = {"digits": read_digits, "cifar10": read_cifar, "cifar100": read_cifar, "file": read_file}


# -- split, normalize ------------------------------------------------------------------------------------


def hold_out(
    x: np.ndarray, y: np.ndarray, cfg: DataConfig, fraction: float | None = None
) -> tuple[np.ndarray, ...]:
    """(x_train, x_valid, y_train, y_valid): a stratified split (of valid_fraction, or `fraction`) by the
    data's own seed."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    return train_test_split(
        x, y, test_size=fraction or cfg.valid_fraction, random_state=cfg.split_seed, stratify=stratify
    )


def normalize(
    x_train: np.ndarray, x_valid: np.ndarray, mode: str, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """dataset: per channel with training statistics (images: over N, H, W; sequences: over N, lines and
    features, per channel; flat: per feature); sample: per sample; line: per line (the last axis)."""
    if mode == "none":
        return x_train, x_valid
    if mode in ("sample", "line"):
        axes = tuple(range(1, x_train.ndim)) if mode == "sample" else (-1,)
        return tuple(
            _standardize(x, x.mean(axis=axes, keepdims=True), x.std(axis=axes, keepdims=True))
            for x in (x_train, x_valid)
        )  # type: ignore[return-value]
    if kind == "image":
        axes = (0, 2, 3)
    elif kind == "sequence":
        axes = (0, 1, 3) if x_train.ndim == 4 else (0, 1, 2)
    else:
        axes = (0,)
    mean, std = x_train.mean(axis=axes, keepdims=True), x_train.std(axis=axes, keepdims=True)
    return _standardize(x_train, mean, std), _standardize(x_valid, mean, std)


def _standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x - mean) / (std + 1e-6)).astype(np.float32)


def load_data(cfg: DataConfig) -> Data:
    splits, info = READERS[cfg.name](cfg)
    if cfg.valid == "test":
        if "test" not in splits:
            raise DataError(f"data.valid is test, but {cfg.path or cfg.name} has no test split")
        (x_train, y_train), (x_valid, y_valid) = splits["train"], splits["test"]
    elif "valid" in splits:
        (x_train, y_train), (x_valid, y_valid) = splits["train"], splits["valid"]
    else:
        x_train, x_valid, y_train, y_valid = hold_out(*splits["train"], cfg)
    test = splits.get("test") if cfg.valid != "test" else None
    if test is None and cfg.test_fraction:  # held out of train (valid stays as it is), by the fixed seed
        x_train, x_test, y_train, y_test = hold_out(x_train, y_train, cfg, cfg.test_fraction)
        test = (x_test, y_test)
    if test is not None:  # normalized as valid is (dataset statistics: of the training split)
        test = (normalize(x_train, test[0], str(cfg.normalize), info.kind)[1], test[1])
    x_train, x_valid = normalize(x_train, x_valid, str(cfg.normalize), info.kind)
    arrays = (x_train, y_train, x_valid, y_valid, *(test or ()))
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    return Data(*tensors[:4], info, *tensors[4:])


def class_weights(
    weights: list[float] | str | None, y_train: torch.Tensor, num_classes: int
) -> torch.Tensor | None:
    """Cross-entropy weights: given, or `auto` = n / (classes * count) (scikit-learn's "balanced")."""
    if weights is None:
        return None
    if weights == "auto":
        counts = torch.bincount(y_train, minlength=num_classes).float()
        return len(y_train) / (num_classes * counts.clamp(min=1))
    if len(weights) != num_classes:
        raise DataError(f"class_weights has {len(weights)} weights but the data has {num_classes} classes")
    return torch.tensor(weights, dtype=torch.float32, device=y_train.device)


# -- augmentation ------------------------------------------------------------------------------------------


class Augment:
    """Random transforms of a training batch, on the batch's device, drawn from one seeded generator (its
    state goes into the checkpoint, so a resumed run draws the same augmentations)."""

    def __init__(self, cfg: AugmentConfig, kind: str, device: torch.device, seed: int):
        if cfg.crop_padding and kind != "image":
            raise DataError(f"augment.crop_padding applies to images; this data is {kind}")
        self.cfg, self.kind = cfg, kind
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        cfg, g, batch = self.cfg, self.generator, len(x)
        if cfg.flip:  # the last axis: image columns, or the points of every line
            flip = torch.rand(batch, device=x.device, generator=g) < 0.5
            x = torch.where(flip.view(-1, *[1] * (x.ndim - 1)), x.flip(-1), x)
        if cfg.crop_padding:
            x = self.random_crop(x, cfg.crop_padding)
        if cfg.line_dropout:
            line_axis = 2 if self.kind == "image" else 1
            shape = [batch] + [x.shape[d] if d == line_axis else 1 for d in range(1, x.ndim)]
            keep = torch.rand(shape, device=x.device, generator=g) >= cfg.line_dropout
            x = x * keep
        if cfg.noise_std:
            x = x + cfg.noise_std * torch.randn(x.shape, device=x.device, generator=g, dtype=x.dtype)
        return x

    def random_crop(self, x: torch.Tensor, pad: int) -> torch.Tensor:
        batch, channels, height, width = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        dy, dx = torch.randint(0, 2 * pad + 1, (2, batch), device=x.device, generator=self.generator)
        rows = (torch.arange(height, device=x.device) + dy[:, None])[:, None, :, None]
        cols = (torch.arange(width, device=x.device) + dx[:, None])[:, None, None, :]
        samples = torch.arange(batch, device=x.device)[:, None, None, None]
        return padded[samples, torch.arange(channels, device=x.device)[None, :, None, None], rows, cols]
