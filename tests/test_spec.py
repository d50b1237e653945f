"""Spec validation: every bad input is one SpecError naming file, line and key; good specs load."""

from __future__ import annotations

import pytest

from sweeper.errors import SpecError
from sweeper.space import expand
from sweeper.spec import load_spec, parse_spec
from tests.conftest import REPO, TINY_BASE


def errors_for(text: str, overrides=()) -> str:
    with pytest.raises(SpecError) as info:
        expand(parse_spec(text, file="s.yaml", overrides=overrides))
    return str(info.value)


def test_reference_spec_loads():
    spec = load_spec(REPO / "sweeps" / "reg.yaml")
    assert spec.name == "reg"
    assert list(spec.configs) == [
        "no_wd_control",
        "baseline",
        "wd05_drop10",
        "wd10_drop15",
        "wd01_drop15",
        "wd05_drop15",
        "wd01_drop20",
        "wd05_drop20",
    ]
    assert spec.configs["wd10_drop15"] == {"optim.weight_decay": 0.1, "model.dropout": 0.15}
    assert spec.base["optim"]["lr"] == 2e-3  # `2e-3` is a float, not YAML 1.1's string


def test_unknown_key_in_base_names_line_and_suggests():
    text = "name: t\n" + TINY_BASE.replace("batch_size: 128", "batch_sise: 128") + "configs: {a: {}}\n"
    message = errors_for(text)
    assert message.startswith("s.yaml:9: base.batch_sise: unknown key (did you mean 'batch_size'?)"), message


def test_unknown_top_level_key():
    message = errors_for("name: t\nbase: {epochs: 1}\ngird: {optim.lr: [1]}\n")
    assert message == "s.yaml:3: gird: unknown key (did you mean 'grid'?)"


def test_wrong_type_points_at_its_line():
    text = "name: t\n" + TINY_BASE.replace("epochs: 2", "epochs: two") + "configs: {a: {}}\n"
    assert errors_for(text) == "s.yaml:8: base.epochs: expected an integer, got 'two'"


def test_empty_grid_list():
    message = errors_for("name: t\nbase: {epochs: 1}\ngrid:\n  optim.lr: []\n")
    assert message == "s.yaml:4: grid.optim.lr: empty list: the grid would have no points"


def test_seeds_only_is_a_multi_seed_run():
    trials = expand(parse_spec("name: t\n" + TINY_BASE + "seeds: [0, 1, 2]\n", file="s.yaml"))
    assert [t.trial_id for t in trials] == ["base-s0", "base-s1", "base-s2"]
    assert {t.name for t in trials} == {"base"} and all(t.params == {} for t in trials)


def test_unknown_model_lists_known_ones():
    text = "name: t\n" + TINY_BASE.replace("name: vit", "name: vitt") + "configs: {a: {}}\n"
    message = errors_for(text)
    assert "s.yaml:4: base.model.name: unknown model 'vitt' (did you mean 'vit'?)" in message


def test_unknown_swept_key_points_at_grid_line_with_full_path_hint():
    text = "name: t\n" + TINY_BASE + "grid:\n  weight_decay: [0.1]\n"
    assert (
        errors_for(text) == "s.yaml:11: grid.weight_decay: unknown key (did you mean 'optim.weight_decay'?)"
    )


def test_swept_key_in_named_config():
    text = "name: t\n" + TINY_BASE + "configs:\n  a: {model.dropot: 0.1}\n"
    message = errors_for(text)
    assert message.startswith("s.yaml:11: configs.a.model.dropot: unknown key (did you mean 'dropout'?)"), (
        message
    )


def test_wrong_value_type_in_grid():
    text = "name: t\n" + TINY_BASE + "grid:\n  optim.lr: [0.1, fast]\n"
    assert errors_for(text) == "s.yaml:11: grid.optim.lr: expected a number, got 'fast'"


def test_model_constraint():
    message = errors_for("name: t\n" + TINY_BASE + "grid:\n  model.heads: [3]\n")
    assert "grid.model.heads" in message and "divisible" in message


def test_override_errors_name_set():
    text = "name: t\n" + TINY_BASE + "configs: {a: {}}\n"
    assert errors_for(text, ["epochs=abc"]) == "--set: base.epochs: expected an integer, got 'abc'"
    assert errors_for(text, ["nokey"]).startswith("--set: expected KEY=VALUE")


def test_sweep_name_cannot_escape_runs_dir():
    message = errors_for("name: ../../etc\nbase: {epochs: 1}\nconfigs: {a: {}}\n")
    assert message.startswith("s.yaml:1: name: '../../etc' must be letters")


def test_invalid_yaml_and_object_tags():
    assert errors_for("name: [t\n").startswith("s.yaml:2: invalid YAML")
    message = errors_for("name: t\nbase: !!python/object/apply:os.system ['echo hi']\n")
    assert message.startswith("s.yaml:2: invalid YAML: tag not allowed")


def test_duplicate_key():
    assert errors_for("name: t\nname: u\nbase: {}\n") == "s.yaml:2: name: duplicate key"


def test_top_level_not_a_mapping():
    assert "expected a mapping" in errors_for("- a\n- b\n")


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")


def test_entrypoint_module_must_exist():
    message = errors_for("name: t\nentrypoint: no_such_pkg.train:main\nbase: {epochs: 1}\nconfigs: {a: {}}\n")
    assert (
        message
        == "s.yaml:2: entrypoint: cannot find module 'no_such_pkg.train' (is it installed or on PYTHONPATH?)"
    )
