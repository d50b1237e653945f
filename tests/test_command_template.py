"""The command line of a command trial: splitting, checking and expanding its placeholders."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sweeper.command_template import (
    TemplateError,
    check,
    expand,
    format_cli_value,
    placeholders,
    split_command,
    unused_swept,
)

CONFIG = {
    "model": {"name": "vit", "layers": 4, "dims": [64, 128]},
    "optim": {"name": "adamw", "lr": 0.003, "betas": {"b1": 0.9}},
    "epochs": 10,
    "seed": 99,  # a config key of a reserved name: the placeholder is the trial's seed
}
KEYS = {
    "model.name",
    "model.layers",
    "model.dims",
    "optim.name",
    "optim.lr",
    "optim.betas.b1",
    "epochs",
    "seed",
}


def test_split_command():
    assert split_command("python train.py --lr={optim.lr} 'a b' {args}") == [
        "python",
        "train.py",
        "--lr={optim.lr}",
        "a b",
        "{args}",
    ]
    assert split_command(["python", "train.py", "--epochs", 10, 0.5]) == [
        "python",
        "train.py",
        "--epochs",
        "10",
        "0.5",
    ]
    with pytest.raises(ValueError, match=r"cannot split the command .*: No closing quotation"):
        split_command("python 'train.py")
    with pytest.raises(ValueError, match=r"command\[1\] must be a string, got True"):
        split_command(["python", True])
    with pytest.raises(ValueError, match="the command is empty"):
        split_command("   ")
    with pytest.raises(ValueError, match="the command is empty"):
        split_command([])
    with pytest.raises(ValueError, match="must be a string or a list of strings, got dict"):
        split_command({"a": 1})


def test_placeholders_in_order_each_once():
    words = [
        "python",
        "{run_dir}/train.py",
        "--lr={optim.lr}",
        "{{literal}}",
        "{args}",
        "--x={optim.lr}",
        "{bad",
    ]
    assert placeholders(words) == ["run_dir", "optim.lr", "args"]
    assert placeholders(["a{ seed }b{trial_id}"]) == ["seed", "trial_id"]


def test_check_accepts_a_good_template():
    words = split_command(
        "python {run_dir}/train.py --lr={optim.lr} --seed {seed} --id={trial_id} "
        "--layers={model.layers} --b1={optim.betas.b1} {{x}} {args} {overrides}"
    )
    assert check(words, KEYS, swept=["optim.lr"]) == []
    # a swept key that is not (yet) in the config's keys is a valid placeholder
    assert check(["--wd={optim.weight_decay}"], KEYS, swept=["optim.weight_decay"]) == []


def test_check_reports_every_problem_with_its_word():
    words = [
        "python",
        "--lr={optim.lrr}",  # 1
        "--opt={optim}",  # 2
        "--args={args}",  # 3
        "x{overrides}",  # 4
        "{optim.lr",  # 5
        "lr}",  # 6
        "{}",  # 7
        "{a{b}}",  # 8
        "{nonsense}",  # 9
        "{optim.betas}",  # 10
        "{seed}{trial_id}{run_dir}",
    ]
    assert check(words, KEYS, swept=["optim.lr"]) == [
        (1, "{optim.lrr}: no such config key or placeholder (did you mean 'optim.lr'?)"),
        (2, "{optim} is a section, not a value; name one of its keys"),
        (3, "'--args={args}': {args} expands to several words; it must be a word of its own"),
        (4, "'x{overrides}': {overrides} expands to several words; it must be a word of its own"),
        (5, "'{optim.lr': '{' at position 1 is not closed; write '{{' for a literal brace"),
        (6, "'lr}': a single '}' at position 3; write '}}' for a literal brace"),
        (7, "'{}': an empty placeholder '{}'; write '{{}}' for literal braces"),
        (8, "'{a{b}}': '{' at position 1 is not closed; write '{{' for a literal brace"),
        (9, "{nonsense}: no such config key or placeholder"),
        (10, "{optim.betas} is a section, not a value; name one of its keys"),
    ]
    # a caller that also lists the sections among the keys gets the same answer
    assert check(["{optim}"], KEYS | {"optim", "model"}, swept=[]) == [
        (0, "{optim} is a section, not a value; name one of its keys")
    ]
    assert check(["{rundir}"], KEYS, swept=[]) == [
        (0, "{rundir}: no such config key or placeholder (did you mean 'run_dir'?)")
    ]


def test_expand():
    words = split_command(
        "python {run_dir}/train.py --lr={optim.lr} --seed {seed} --id={trial_id} --layers={model.layers} "
        "--dims={model.dims} {{not}}{{{epochs}}} {args} -- {overrides}"
    )
    params = {"optim.lr": 0.001, "model.name": "resnet", "model.pretrained": True, "optim.wd": None}
    argv = expand(words, CONFIG, params, seed=7, trial_id="t0003", run_dir="/runs/t0003")
    assert argv == [
        "python",
        "/runs/t0003/train.py",
        "--lr=0.001",  # the swept value wins over the config's
        "--seed",
        "7",  # the trial's seed, not the config key `seed`
        "--id=t0003",
        "--layers=4",
        "--dims=[64,128]",
        "{not}{10}",
        "--optim.lr=0.001",
        "--model.name=resnet",
        "--model.pretrained=true",
        "--optim.wd=null",
        "--",
        "optim.lr=0.001",
        "model.name=resnet",
        "model.pretrained=true",
        "optim.wd=null",
    ]
    assert expand(["run", "{args}", "{overrides}"], CONFIG, {}, 0, "t", "/r") == ["run"]


def test_expand_refuses_what_check_reports():
    with pytest.raises(TemplateError, match="no such config key or placeholder"):
        expand(["{optim.nope}"], CONFIG, {}, 0, "t", "/r")
    with pytest.raises(TemplateError, match="is a section, not a value"):
        expand(["{optim.betas}"], CONFIG, {}, 0, "t", "/r")
    with pytest.raises(TemplateError, match="must be a word of its own"):
        expand(["--a={args}"], CONFIG, {}, 0, "t", "/r")
    with pytest.raises(ValueError, match="is not closed"):
        expand(["{epochs"], CONFIG, {}, 0, "t", "/r")


def test_expanded_args_reach_a_real_program():
    """The words reach the program unchanged (no shell), and argparse takes `--optim.lr=0.001`."""
    program = "import json, sys; print(json.dumps(sys.argv[1:]))"
    words = [sys.executable, "-c", program, "--lr={optim.lr}", "{args}", "a b;$HOME"]
    params = {"optim.lr": 1e-4, "model.layers": 2, "model.name": "vit b/16"}
    argv = expand(words, CONFIG, params, seed=1, trial_id="t1", run_dir="/r")
    received = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    assert received == [
        "--lr=0.0001",
        "--optim.lr=0.0001",
        "--model.layers=2",
        "--model.name=vit b/16",
        "a b;$HOME",
    ]
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float)
    parser.add_argument("--optim.lr", type=float)
    parser.add_argument("--model.layers", type=int)
    parser.add_argument("--model.name")
    ns, rest = parser.parse_known_args(received)
    assert vars(ns) == {"lr": 1e-4, "optim.lr": 1e-4, "model.layers": 2, "model.name": "vit b/16"}
    assert rest == ["a b;$HOME"]


@pytest.mark.parametrize(
    "value, text",
    [
        (1e-3, "0.001"),
        (0.1, "0.1"),
        (1e-5, "1e-05"),
        (3e-4, "0.0003"),
        (2.5e10, "25000000000.0"),
        (3.0, "3.0"),
        (1 / 3, "0.3333333333333333"),
        (-0.0, "-0.0"),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (5, "5"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ("adamw", "adamw"),
        ("a b", "a b"),
        ("", ""),
        ([1, 2], "[1,2]"),
        ([0.001, "adamw", True, None], "[0.001,adamw,true,null]"),
        (["a b", "x,y", "", "it's"], "['a b','x,y','','it\\'s']"),
        (["1", "2.5", "true", "Null", "nan", "v1.0"], "['1','2.5','true','Null','nan',v1.0]"),
        ((64, [1, 2]), "[64,[1,2]]"),
        ({"b1": 0.9, "name": "x"}, "{b1:0.9,name:x}"),
        (np.float64(0.1), "0.1"),
        (np.float32(0.5), "0.5"),
        (np.int64(3), "3"),
        (np.bool_(True), "true"),
    ],
)
def test_format_cli_value(value, text):
    assert format_cli_value(value) == text


@given(st.floats(allow_nan=False))
def test_format_cli_value_floats_read_back_exactly(x):
    assert float(format_cli_value(x)) == x


def test_unused_swept():
    assert unused_swept(["python", "t.py", "--lr={optim.lr}"], ["optim.lr", "model.layers"]) == [
        "model.layers"
    ]
    assert unused_swept(["python", "t.py", "{overrides}"], ["optim.lr", "model.layers"]) == []
    assert unused_swept(["python", "t.py", "--cfg={run_dir}/config.yaml"], ["optim.lr"]) == ["optim.lr"]
