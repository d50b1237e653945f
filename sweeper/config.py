"""The built-in trainer's configuration: the schema of a spec's `base:` block, validated without torch.

Every field has a default, so a spec only names what it changes. Checks that need two fields (a WHD
schedule that would never decay, a ViT patch that does not tile the dataset's images) are made here too,
so they fail at launch with the spec's file and line instead of in a job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from sweeper.models import DataInfo, check_input, parse_model_config
from sweeper.schema import SchemaError, from_dict

# Shapes of the built-in datasets, so model/data mismatches are caught when the spec is validated.
KNOWN_DATA: dict[str, DataInfo] = {
    "digits": DataInfo(input_shape=(1, 8, 8), num_classes=10, kind="image"),
    "cifar10": DataInfo(input_shape=(3, 32, 32), num_classes=10, kind="image"),
    "cifar100": DataInfo(input_shape=(3, 32, 32), num_classes=100, kind="image"),
}


@dataclass
class DataConfig:
    """`digits` is bundled with scikit-learn; `cifar10`/`cifar100` read the standard python-pickle folders
    (cifar-10-batches-py, cifar-100-python) under `data_root`; `file` reads a .npz or .pt file at `path`
    holding `x`, `y` (optionally `split`, or x_train/y_train/x_valid/y_valid/x_test/y_test)."""

    name: Literal["digits", "cifar10", "cifar100", "file"] = "digits"
    data_root: str | None = None  # default: $SWEEPER_DATA_ROOT, else ./data
    path: str | None = None  # `file` only; relative paths are taken from data_root, else the launch directory
    kind: Literal["auto", "image", "sequence", "flat"] = (
        "auto"  # `file` only; auto: by the number of dims of x
    )
    download: bool = False  # cifar only: download into data_root if the folder is missing
    valid: Literal["split", "test"] = "split"  # split: hold out valid_fraction of train; test: the test split
    valid_fraction: float = 0.2
    # held out of the training split where the data has no test split: for the final test evaluation
    test_fraction: float = 0.0
    # The train/valid split is fixed by its own seed, not the trial's, so every run sees the same split.
    split_seed: int = 0
    # dataset: per-channel (per-feature) statistics of the training split; sample: each sample mean 0 /
    # std 1; line: each line (the last axis: an image row, a scan line) mean 0 / std 1. true = dataset.
    normalize: bool | Literal["none", "dataset", "sample", "line"] = True

    def validate(self) -> None:
        if isinstance(self.normalize, bool):
            self.normalize = "dataset" if self.normalize else "none"
        if self.valid == "split" and not 0.0 < self.valid_fraction < 1.0:
            raise SchemaError("valid_fraction", f"must be between 0 and 1, got {self.valid_fraction}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise SchemaError("test_fraction", f"must be at least 0 and below 1, got {self.test_fraction}")
        if self.name == "file" and not self.path:
            raise SchemaError("path", "data `file` needs a `path` to a .npz or .pt file")
        if self.path and not self.path.endswith((".npz", ".pt", ".pth")):
            raise SchemaError("path", f"expected a .npz or .pt file, got {self.path!r}")
        if self.name == "digits" and self.valid == "test":
            raise SchemaError("valid", "digits has no test split; use `valid: split`")


@dataclass
class AugmentConfig:
    """Applied on the fly to training batches (on the device), never to the validation split."""

    flip: bool = False  # images: mirror left-right; sequences: mirror every line
    crop_padding: int = 0  # images: random crop of the original size after zero-padding this many pixels
    noise_std: float = 0.0  # gaussian noise added to the (normalized) inputs
    line_dropout: float = 0.0  # each line (sequence step, image row) is zeroed with this probability

    def validate(self) -> None:
        if self.crop_padding < 0 or self.noise_std < 0:
            raise SchemaError("", "crop_padding and noise_std must be >= 0")
        if not 0.0 <= self.line_dropout < 1.0:
            raise SchemaError("line_dropout", f"must be in [0, 1), got {self.line_dropout}")

    @property
    def active(self) -> bool:
        return self.flip or self.crop_padding > 0 or self.noise_std > 0 or self.line_dropout > 0


@dataclass
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3  # the peak learning rate; schedules multiply it
    weight_decay: float = 0.01  # not applied to biases and norm weights
    betas: tuple[float, float] = (0.9, 0.999)  # adamw
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd

    def validate(self) -> None:
        if self.lr <= 0:
            raise SchemaError("lr", f"must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise SchemaError("weight_decay", f"must be >= 0, got {self.weight_decay}")
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise SchemaError("nesterov", "needs `name: sgd` and a positive momentum")


@dataclass
class ScheduleConfig:
    """LR schedule, as a multiplier of optim.lr over (fractional) epochs. See sweeper/schedules.py.

    constant; warmup (linear warmup, then constant); cosine (warmup, cosine to the floor at the last
    epoch); whd (warmup, hold at the peak, decay to the floor); plateau (warmup, then ReduceLROnPlateau on
    `metric`); onecycle (cosine up to the peak at pct_start, then down to peak/(div_factor*final_div_factor)).
    Fields a schedule does not use are ignored, so one base can compare schedules.
    """

    name: Literal["constant", "warmup", "cosine", "whd", "plateau", "onecycle"] = "warmup"
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0  # the floor of cosine / whd / plateau, as a fraction of optim.lr
    # whd
    hold_epochs: float = 0.0
    decay_epochs: float | None = None  # default: decay until the last epoch
    decay_shape: Literal["cosine", "linear"] = "cosine"
    # plateau (torch.optim.lr_scheduler.ReduceLROnPlateau's rule, stepped once per epoch)
    metric: str | None = None  # default: the sweep's objective
    mode: Literal["auto", "max", "min"] = "auto"  # auto: min for losses and errors
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4  # relative
    cooldown: int = 0
    # onecycle
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def validate(self) -> None:
        if self.warmup_epochs < 0 or self.hold_epochs < 0:
            raise SchemaError("", "warmup_epochs and hold_epochs must be >= 0")
        if self.decay_epochs is not None and self.decay_epochs <= 0:
            raise SchemaError("decay_epochs", f"must be positive, got {self.decay_epochs}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise SchemaError("min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        if self.name in ("whd", "cosine") and self.min_lr_ratio >= 1.0:
            raise SchemaError(
                "min_lr_ratio", f"{self.name} would never decay with a floor of {self.min_lr_ratio}"
            )
        if not 0.0 < self.factor < 1.0:
            raise SchemaError("factor", f"must be in (0, 1), got {self.factor}")
        if self.patience < 0 or self.cooldown < 0 or self.threshold < 0:
            raise SchemaError("", "patience, cooldown and threshold must be >= 0")
        if not 0.0 < self.pct_start < 1.0:
            raise SchemaError("pct_start", f"must be in (0, 1), got {self.pct_start}")
        if self.div_factor < 1.0 or self.final_div_factor < 1.0:
            raise SchemaError("", "div_factor and final_div_factor must be >= 1")

    def check_epochs(self, epochs: int) -> None:
        """Schedules that must decay have to start decaying before the last epoch."""
        if self.name == "cosine" and self.warmup_epochs >= epochs:
            raise SchemaError("warmup_epochs", f"cosine never decays: warmup_epochs >= epochs ({epochs})")
        if self.name == "whd":
            decay_start = self.warmup_epochs + self.hold_epochs
            if decay_start >= epochs:
                raise SchemaError(
                    "hold_epochs",
                    f"whd never decays: warmup_epochs + hold_epochs = {decay_start:g} >= epochs ({epochs})",
                )
            if self.decay_epochs is not None and decay_start + self.decay_epochs > epochs:
                raise SchemaError(
                    "decay_epochs",
                    f"whd would not reach its floor: warmup + hold + decay = "
                    f"{decay_start + self.decay_epochs:g} > epochs ({epochs})",
                )


EvalMetric = Literal["auroc", "knn_acc", "silhouette"]
EVAL_METRICS = get_args(EvalMetric)


@dataclass
class EvalConfig:
    """Extra metrics on the validation split, as `valid/<metric>` columns: auroc (macro, one-vs-rest),
    knn_acc (k-nearest-neighbour accuracy of the penultimate embeddings, fit on the training split),
    silhouette (of the validation embeddings, labels as clusters). Loss and accuracy are always logged."""

    metrics: list[EvalMetric] = field(default_factory=list)
    every: int = 1  # compute the extra metrics every N epochs (and at the last one); null in other rows
    knn_k: int = 5
    max_samples: int = 5000  # embeddings used for knn / silhouette are subsampled to this many (fixed seed)
    batch_size: int = 512

    def validate(self) -> None:
        if len(set(self.metrics)) != len(self.metrics):
            raise SchemaError("metrics", "lists a metric twice")
        if min(self.every, self.knn_k, self.max_samples, self.batch_size) < 1:
            raise SchemaError("", "every, knn_k, max_samples and batch_size must be at least 1")


@dataclass
class EarlyStoppingConfig:
    """Stop when `metric` has not improved by `min_delta` for `patience` epochs. The run ends COMPLETED,
    with a note in status.json saying when and why."""

    metric: str | None = None  # default: the sweep's objective (valid/acc)
    patience: int = 10
    min_delta: float = 0.0
    mode: Literal["auto", "max", "min"] = "auto"  # auto: min for losses and errors

    def validate(self) -> None:
        if self.patience < 1:
            raise SchemaError("patience", f"must be at least 1, got {self.patience}")
        if self.min_delta < 0:
            raise SchemaError("min_delta", f"must be >= 0, got {self.min_delta}")


@dataclass
class TrainConfig:
    model: Any = field(default_factory=lambda: {"name": "vit"})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    early_stopping: EarlyStoppingConfig | None = None
    epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 autocast on CUDA (fp16 + loss scaling where bf16 is missing), fp32 on CPU
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    grad_clip: float | None = None  # max global gradient norm
    label_smoothing: float = 0.0
    class_weights: list[float] | Literal["auto"] | None = None  # auto: inverse label frequency (balanced)
    average_last: int = 0  # >1: also evaluate the average of the last k epochs' weights (averaged.pt)

    def validate(self) -> None:
        self.model = parse_model_config(self.model)
        if self.epochs < 1:
            raise SchemaError("epochs", f"must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise SchemaError("batch_size", f"must be at least 1, got {self.batch_size}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise SchemaError("label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise SchemaError("grad_clip", f"must be positive, got {self.grad_clip}")
        if self.average_last < 0 or self.average_last == 1:
            raise SchemaError("average_last", f"must be 0 (off) or at least 2, got {self.average_last}")
        if self.average_last > self.epochs:
            raise SchemaError("average_last", f"averages more epochs than the run has ({self.epochs})")
        if isinstance(self.class_weights, list) and any(w <= 0 for w in self.class_weights):
            raise SchemaError("class_weights", "weights must be positive")
        for key, metric in (
            ("early_stopping.metric", self.early_stopping.metric if self.early_stopping else None),
            ("schedule.metric", self.schedule.metric if self.schedule.name == "plateau" else None),
        ):
            if metric is not None and metric not in logged_metrics(self):
                raise SchemaError(
                    key, f"{metric!r} is not logged; this config logs {', '.join(logged_metrics(self))}"
                )
        try:
            self.schedule.check_epochs(self.epochs)
        except SchemaError as exc:
            raise SchemaError(f"schedule.{exc.key}", exc.message) from None
        known = KNOWN_DATA.get(self.data.name)
        if known is not None:
            try:
                check_input(self.model, known)
            except SchemaError as exc:
                raise SchemaError(f"model.{exc.key}", f"{exc.message} ({self.data.name})") from None
            if isinstance(self.class_weights, list) and len(self.class_weights) != known.num_classes:
                raise SchemaError(
                    "class_weights",
                    f"{self.data.name} has {known.num_classes} classes, got {len(self.class_weights)} weights",
                )


def logged_metrics(cfg: TrainConfig) -> list[str]:
    """The metric columns the built-in trainer writes for this config."""
    names = ["train/loss", "train/acc", "valid/loss", "valid/acc"] + [f"valid/{m}" for m in cfg.eval.metrics]
    if cfg.average_last:
        names += ["valid/avg_loss", "valid/avg_acc"]
    return names


def parse_train_config(data: dict) -> TrainConfig:
    return from_dict(TrainConfig, data)
