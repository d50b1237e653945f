"""The wheel as a user gets it: built from the checkout's files, installed (not editable) into a fresh venv
first alone and then with sweeper[all], run from a directory outside the checkout that has its own
`models` package and `analyze.py`: the base install refuses a trainer sweep in one line naming the extra,
the full one runs a local sweep, `status` and `analyze`, and finds the shipped `local` profile."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_BASE

pytestmark = pytest.mark.slow


def checkout_files() -> list[str]:
    """What a clone of this checkout holds (tracked and untracked files git does not ignore)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in out.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((REPO / name).read_bytes())
    dist = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist)]
    subprocess.run([*pip, str(source)], check=True, capture_output=True)
    (found,) = dist.glob("sweeper-*.whl")
    return found


def test_the_wheel_holds_every_module_and_the_profiles_under_one_top_level_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(REPO)) for p in (REPO / "sweeper").rglob("*.py")}
    expected |= {f"sweeper/{p.relative_to(REPO)}" for p in (REPO / "models").glob("*.py")}
    expected |= {f"sweeper/cluster_profiles/{p.name}" for p in (REPO / "slurm" / "profiles").glob("*.yaml")}
    assert "sweeper/analysis/report.py" in expected and "sweeper/models/vit.py" in expected
    assert expected <= names, sorted(expected - names)
    assert {n.split("/")[0] for n in names} == {"sweeper", wheel.name.split("-py3")[0] + ".dist-info"}
    info = wheel.name.split("-py3")[0] + ".dist-info"
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "analyze = sweeper.analyze_cli:main" in entry_points
    requires = [
        line.split(": ", 1)[1]
        for line in zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode().splitlines()
        if line.startswith("Requires-Dist:") and 'extra == "dev"' not in line
    ]
    assert not [r for r in requires if "==" in r.split(";")[0]], requires  # ranges, not pins, for the library
    assert 'psycopg>=3.1; extra == "postgres"' in requires  # the driver, not its binary build
    assert not [r for r in requires if "torch" in r and "extra" not in r]  # torch only with [train]


def run(argv: list[str], cwd: Path, venv: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin", COLUMNS="200")
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_a_fresh_venv_with_the_wheel_runs_a_sweep_from_outside_the_checkout(wheel, tmp_path):
    venv, work = tmp_path / "venv", tmp_path / "project"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    work.mkdir()
    # A user's project: its own `models` package and `analyze.py` must not shadow sweeper's.
    (work / "models").mkdir()
    (work / "models" / "__init__.py").write_text("")
    (work / "analyze.py").write_text("raise SystemExit('the user analyze.py ran')\n")
    (work / "spec.yaml").write_text(
        "name: wheeltiny\n" + TINY_BASE + "configs:\n  a: {optim.weight_decay: 0.0}\n"
        "  b: {optim.weight_decay: 0.1}\nlaunch: {profile: local}\n"
    )

    run([*pip, str(wheel)], work, venv)  # the base install: launch, status, analyze; no torch
    refused = run(["sweeper", "launch", "spec.yaml", "--executor", "local"], work, venv, check=False)
    assert refused.returncode != 0
    lines = [line for line in (refused.stdout + refused.stderr).splitlines() if line.strip()]
    assert (
        len(lines) == 1 and "needs sweeper[train]" in lines[0] and "pip install 'sweeper[train]'" in lines[0]
    )
    assert not (work / "runs").exists()

    run([*pip, "-c", str(REPO / "constraints.txt"), "torch", "torchvision"], work, venv)  # from local disk
    run([*pip, f"{wheel}[all]"], work, venv)
    site = run(
        [str(venv / "bin" / "python"), "-c", "import sweeper, sys; print(sweeper.__file__)"], tmp_path, venv
    )
    assert site.stdout.startswith(str(venv)), site.stdout  # the installed copy, not the checkout
    packages = Path(site.stdout.strip()).parent.parent
    assert not (packages / "models").exists() and not (packages / "analyze.py").exists()

    launched = run(["sweeper", "launch", "spec.yaml", "--executor", "local"], work, venv)
    assert "COMPLETED 2" in launched.stdout
    status = run(["sweeper", "status", "wheeltiny"], work, venv).stdout
    assert "a-s0" in status and "COMPLETED 2" in status
    report = run(
        ["analyze", "--checkpoints-path", "runs/wheeltiny/latest", "--plot", "curves.png"], work, venv
    )
    assert "Best config: a" in report.stdout or "Best config: b" in report.stdout
    assert (work / "curves.png").stat().st_size > 0
    spec = (work / "runs" / "wheeltiny" / "latest" / "spec.yaml").read_text()
    assert "partition: debug" in spec  # the shipped `local` profile was found in the wheel
