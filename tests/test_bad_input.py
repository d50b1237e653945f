"""Bad input: one clear line, a non-zero exit, nothing written. Plus a property test over generated specs."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeper.errors import SpecError, SweeperError
from sweeper.space import expand
from sweeper.spec import parse_spec
from tests.conftest import TINY_BASE, tiny_spec, write_spec

CASES = {
    "malformed YAML": ("name: t\nbase: {epochs: 2\nconfigs: {a: {}}\n", "spec.yaml:3: invalid YAML"),
    "unknown key": (
        "name: t\nbase: {epochs: 2}\nconfig: {a: {}}\n",
        "spec.yaml:3: config: unknown key (did you mean 'configs'?)",
    ),
    "wrong type": (
        "name: t\nbase: {epochs: 2}\nseeds: zero\nconfigs: {a: {}}\n",
        "spec.yaml:3: seeds: expected a list",
    ),
    "empty grid": (
        "name: t\nbase: {epochs: 2}\ngrid: {optim.lr: []}\n",
        "spec.yaml:3: grid.optim.lr: empty list",
    ),
    "traversal in name": (
        "name: ../../outside\nbase: {epochs: 2}\nconfigs: {a: {}}\n",
        "spec.yaml:1: name: '../../outside' must be",
    ),
    "traversal in config name": (
        "name: t\nbase: {epochs: 2}\nconfigs: {../x: {}}\n",
        "spec.yaml:3: configs.../x: config names are",
    ),
    "object tag": (
        "name: t\nbase: !!python/object/apply:os.system [touch pwned]\nconfigs: {a: {}}\n",
        "spec.yaml:2: invalid YAML: tag not allowed",
    ),
    "python name tag": (
        "name: !!python/name:os.system\nbase: {}\nconfigs: {a: {}}\n",
        "spec.yaml:1: invalid YAML: tag not allowed",
    ),
    "not a mapping": ("just a string\n", "spec.yaml:1: expected a mapping"),
    "empty file": ("", "spec.yaml:1: expected a mapping"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_spec_gives_one_line_and_writes_nothing(tmp_path, cli, case):
    text, expected = CASES[case]
    write_spec(tmp_path, text)
    result = cli("launch", "spec.yaml", "--executor", "local", check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("name=../../etc", "--set: name: '../../etc' must be"),
        ("name=a/b", "--set: name: 'a/b' must be"),
        ("configs.a.optim.lr=fast", "--set: configs.a.optim.lr: expected a number"),
        ("epochs", "--set: expected KEY=VALUE"),
        ("base.optim=3", "--set: base.optim: expected a mapping"),
        ("base.optim.lr.x=3", "--set: base.optim.lr: is 0.003, not a mapping"),
    ],
)
def test_bad_override(tmp_path, cli, override, expected):
    tiny_spec(tmp_path, "configs: {a: {}}\n")
    result = cli("launch", "spec.yaml", "--executor", "local", "--set", override, check=False)
    assert result.returncode == 1 and result.stderr.startswith(f"error: {expected}"), result.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_executor_and_missing_file(tmp_path, cli):
    result = cli("launch", "nope.yaml", "--executor", "local", check=False)
    assert result.returncode == 1 and result.stderr.strip() == "error: nope.yaml: no such file"
    tiny_spec(tmp_path, "configs: {a: {}}\n")
    result = cli("launch", "spec.yaml", "--executor", "cloud", check=False)
    assert result.returncode == 2 and "Invalid value for '--executor'" in result.stderr


def test_status_and_retry_of_unknown_sweep(tmp_path, cli):
    for args in (("status", "nosuch"), ("retry", "nosuch"), ("cancel", "nosuch"), ("dashboard", "nosuch")):
        result = cli(*args, check=False)
        assert (
            result.returncode == 1
            and "no sweep 'nosuch'" in result.stderr
            and "Traceback" not in result.stderr
        )


# -- property test: any spec either validates or fails with a SweeperError ------------------------------------
KEYS = [
    "name",
    "base",
    "configs",
    "grid",
    "seeds",
    "launch",
    "objective",
    "search",
    "entrypoint",
    "description",
    "x",
]
SUB_KEYS = [
    "epochs",
    "model",
    "optim",
    "lr",
    "name",
    "layers",
    "dropout",
    "optim.lr",
    "model.dropout",
    "params",
    "parallelism",
    "slurm",
    "metric",
    "type",
    "low",
    "high",
    "choices",
    "sampler",
    "pruner",
    "n_trials",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(string.ascii_letters + "./_-", max_size=12),
    st.sampled_from(["vit", "mlp", "adamw", "tpe", "float"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.sampled_from(SUB_KEYS), children, max_size=4)
    ),
    max_leaves=12,
)
specs = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_every_generated_spec_validates_or_fails_cleanly(data):
    import yaml

    text = yaml.safe_dump(data)
    try:
        expand(parse_spec(text, file="gen.yaml", check_entrypoint=False))
    except SweeperError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_parser(text):
    try:
        expand(parse_spec(text, file="gen.yaml", check_entrypoint=False))
    except SweeperError:
        pass


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["optim.lr", "model.dropout", "epochs", "model.layers", "batch_size", "optim.name"]),
        st.lists(scalars, min_size=1, max_size=3),
        min_size=1,
        max_size=3,
    )
)
def test_generated_grids_over_the_real_trainer(grid):
    import yaml

    text = "name: g\n" + TINY_BASE + yaml.safe_dump({"grid": grid})
    try:
        trials = expand(parse_spec(text, file="gen.yaml"))
    except SpecError:
        return
    assert trials and all(t.config["seed"] == 0 for t in trials)


def test_a_scalar_that_only_looks_like_a_float_is_a_string():
    """Found by the generated specs: `name: ._` matches YAML 1.1's float pattern and crashed PyYAML."""
    from sweeper import yamlio

    data, _ = yamlio.load("a: ._\nb: 1_.\nc: 1e-3\nd: .5\n")
    assert data == {"a": "._", "b": 1.0, "c": 0.001, "d": 0.5}
