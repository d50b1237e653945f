"""The trainer's config in a spec: every new field is validated at launch, with file, line and key."""

from __future__ import annotations

import glob
import textwrap

import pytest

from sweeper.errors import SpecError
from sweeper.space import expand
from sweeper.spec import load_spec, parse_spec
from tests.conftest import REPO


def spec_text(base_extra: str = "", sweep: str = "configs: {a: {}}\n") -> str:
    # Line 1 name, line 2 base:, lines 3-6 the fixed fields, extra base fields from line 7 on.
    data_line = "  # data: set below\n" if "data:" in base_extra else "  data: {name: digits}\n"
    return (
        "name: t\n"
        "base:\n"
        "  model: {name: vit, patch_size: 4, layers: 1, d_model: 16, heads: 2}\n" + data_line + ""
        "  epochs: 4\n"
        "  batch_size: 128\n" + textwrap.indent(textwrap.dedent(base_extra), "  ") + sweep
    )


def error_for(base_extra: str = "", sweep: str = "configs: {a: {}}\n") -> str:
    with pytest.raises(SpecError) as info:
        expand(parse_spec(spec_text(base_extra, sweep), file="s.yaml"))
    return str(info.value)


def trials_for(base_extra: str = "", sweep: str = "configs: {a: {}}\n"):
    return expand(parse_spec(spec_text(base_extra, sweep), file="s.yaml"))


def test_whd_that_would_never_decay_is_refused_at_its_line():
    message = error_for("schedule: {name: whd, warmup_epochs: 1, hold_epochs: 3}\n")
    assert message == (
        "s.yaml:7: base.schedule.hold_epochs: whd never decays: warmup_epochs + hold_epochs = 4 >= epochs (4)"
    )
    assert "would not reach its floor" in error_for(
        "schedule: {name: whd, hold_epochs: 1, decay_epochs: 5}\n"
    )
    assert "never decay with a floor of 1" in error_for("schedule: {name: whd, min_lr_ratio: 1.0}\n")


def test_whd_decay_check_follows_swept_epochs():
    message = error_for("schedule: {name: whd, hold_epochs: 3}\n", "grid:\n  epochs: [10, 3]\n")
    assert "whd never decays" in message and message.startswith("s.yaml:")


def test_residual_switch_and_its_typos():
    trials = trials_for(sweep="grid:\n  model.residual: [regular, mhc]\n")
    assert [t.config["model"]["residual"] for t in trials] == ["regular", "mhc"]
    assert trials[1].config["model"]["streams"] == 4  # defaults are filled into the trial's config
    assert error_for("", "grid:\n  model.residual: [mhcc]\n") == (
        "s.yaml:8: grid.model.residual: expected one of 'regular', 'mhc', got 'mhcc' (did you mean 'mhc'?)"
    )
    assert error_for("", "grid:\n  model.stream: [2]\n").startswith(
        "s.yaml:8: grid.model.stream: unknown key (did you mean 'streams'?)"
    )


def test_patch_size_must_tile_the_dataset_images():
    message = error_for(sweep="configs:\n  a: {model.patch_size: 3}\n")
    assert (
        message
        == "s.yaml:8: configs.a.model.patch_size: 3 does not tile the 8x8 images of this data (digits)"
    )


def test_shapes_of_user_files_are_checked_by_the_job_not_the_spec():
    # The file may exist only on the cluster: its shapes are checked when the job loads it.
    assert trials_for("data: {name: file, path: x.npz}\n", "configs:\n  a: {model.patch_size: 3}\n")


@pytest.mark.parametrize(
    "extra,expected",
    [
        ("augment: {line_dropout: 1.5}\n", "s.yaml:7: base.augment.line_dropout: must be in [0, 1), got 1.5"),
        ("augment: {flipp: true}\n", "s.yaml:7: base.augment.flipp: unknown key (did you mean 'flip'?)"),
        (
            "eval: {metrics: [auroc, auc]}\n",
            "s.yaml:7: base.eval.metrics[1]: expected one of 'auroc', 'knn_acc', 'silhouette', got 'auc'",
        ),
        (
            "early_stopping: {metric: valid/auroc}\n",
            "s.yaml:7: base.early_stopping.metric: 'valid/auroc' is not logged; this config logs "
            "train/loss, train/acc, valid/loss, valid/acc",
        ),
        (
            "early_stopping: {patience: 0}\n",
            "s.yaml:7: base.early_stopping.patience: must be at least 1, got 0",
        ),
        (
            "class_weights: [1, 2]\n",
            "s.yaml:7: base.class_weights: digits has 10 classes, got 2 weights",
        ),
        (
            "class_weights: balanced\n",
            "s.yaml:7: base.class_weights: expected a list or one of 'auto' or null, got 'balanced'",
        ),
        (
            "precision: fp8\n",
            "s.yaml:7: base.precision: expected one of 'auto', 'fp32', 'bf16', 'fp16', got 'fp8'",
        ),
        ("average_last: 1\n", "s.yaml:7: base.average_last: must be 0 (off) or at least 2, got 1"),
        (
            "optim: {name: adamw, nesterov: true}\n",
            "s.yaml:7: base.optim.nesterov: needs `name: sgd` and a positive momentum",
        ),
        (
            "data: {name: file}\n",
            "s.yaml:7: base.data.path: data `file` needs a `path` to a .npz or .pt file",
        ),
        (
            "data: {name: digits, valid: test}\n",
            "s.yaml:7: base.data.valid: digits has no test split; use `valid: split`",
        ),
        (
            "data: {name: digits, normalize: per_line}\n",
            "s.yaml:7: base.data.normalize: expected true or false or one of",
        ),
        (
            "schedule: {name: onecycle, pct_start: 1.5}\n",
            "s.yaml:7: base.schedule.pct_start: must be in (0, 1), got 1.5",
        ),
        (
            "schedule: {name: plateau, metric: valid/f1}\n",
            "s.yaml:7: base.schedule.metric: 'valid/f1' is not logged",
        ),
    ],
)
def test_bad_training_fields_name_file_line_and_key(extra, expected):
    assert error_for(extra).startswith(expected)


def test_early_stopping_and_plateau_accept_extra_metrics():
    trials = trials_for(
        "eval: {metrics: [auroc]}\n"
        "early_stopping: {metric: valid/auroc, patience: 3}\n"
        "schedule: {name: plateau, metric: valid/loss}\n"
    )
    assert trials[0].config["early_stopping"] == {
        "metric": "valid/auroc",
        "patience": 3,
        "min_delta": 0.0,
        "mode": "auto",
    }


def test_normalize_true_and_false_mean_dataset_and_none():
    assert trials_for("data: {name: digits, normalize: true}\n")[0].config["data"]["normalize"] == "dataset"
    assert trials_for("data: {name: digits, normalize: false}\n")[0].config["data"]["normalize"] == "none"


@pytest.mark.parametrize(
    "path", sorted(glob.glob(str(REPO / "sweeps" / "*.yaml"))), ids=lambda p: p.rsplit("/", 1)[-1]
)
def test_every_shipped_sweep_is_valid(path):
    spec = load_spec(path)
    trials = expand(spec)
    assert trials and len({t.trial_id for t in trials}) == len(trials)


def test_switching_model_on_a_base_model_explains_what_to_do():
    message = error_for(sweep="configs:\n  a: {model.name: seq_transformer}\n")
    assert message.startswith(
        "s.yaml:3: base.model.patch_size: unknown key for model 'seq_transformer' (its keys: "
    )
    assert "give each config its own whole `model:`" in message


def test_a_null_optional_section_stays_off_after_the_round_trip_through_the_trial_config():
    """A trial's config is stored as plain data (`early_stopping: null` when unset); the job parses it again
    and must not turn the null into early stopping with default settings."""
    from sweeper.config import parse_train_config
    from sweeper.schema import to_dict

    stored = to_dict(parse_train_config({"epochs": 30}))
    assert stored["early_stopping"] is None
    assert parse_train_config(stored).early_stopping is None
    assert parse_train_config({"early_stopping": {}}).early_stopping.patience == 10
