"""Where a result came from: git commit, branch, dirty diff, command line, versions (sweeper's own commit
too), host, packages."""

from __future__ import annotations

import getpass
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

MAX_UNTRACKED = 50
MAX_UNTRACKED_BYTES = 256 * 1024


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_info(cwd: str | Path = ".") -> tuple[dict[str, Any] | None, str]:
    """(git facts, full diff of tracked changes + untracked file list), or (None, '') outside a repository."""
    cwd = Path(cwd)
    root = _git(["rev-parse", "--show-toplevel"], cwd)
    if root is None:
        return None, ""
    commit = (_git(["rev-parse", "HEAD"], cwd) or "").strip() or None
    branch = (_git(["rev-parse", "--abbrev-ref", "HEAD"], cwd) or "").strip() or None
    status = _git(["status", "--porcelain", "--untracked-files=all"], cwd) or ""
    untracked = [line[3:] for line in status.splitlines() if line.startswith("??")]
    diff = _git(["diff", "HEAD", "--binary"], cwd) if commit else _git(["diff", "--cached", "--binary"], cwd)
    diff = diff or ""
    for name in untracked[:MAX_UNTRACKED]:
        path = Path(root.strip()) / name
        if path.is_file() and path.stat().st_size <= MAX_UNTRACKED_BYTES:
            # --no-index exits 1 when the files differ, which they always do here
            out = subprocess.run(
                ["git", "diff", "--no-index", "--binary", "/dev/null", name],
                cwd=root.strip(),
                capture_output=True,
                text=True,
                errors="replace",
                timeout=30,
            )
            diff += out.stdout
        else:
            diff += f"# untracked, not included: {name}\n"
    diff += "".join(f"# untracked, not included: {name}\n" for name in untracked[MAX_UNTRACKED:])
    info = {
        "root": root.strip(),
        "commit": commit,
        "branch": branch,
        "dirty": bool(status.strip()),
        "changed_files": [line[3:] for line in status.splitlines()],
    }
    return info, diff


def torch_versions() -> dict[str, str | None]:
    """torch and CUDA versions read from torch/version.py, without importing torch (seconds saved)."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return {"torch": None, "cuda": None}
    cuda = None
    spec = importlib.util.find_spec("torch")  # finds the package without running it
    if spec is not None and spec.origin:
        try:
            text = (Path(spec.origin).parent / "version.py").read_text()
            match = re.search(r"^cuda\s*(?::\s*\S+)?\s*=\s*['\"]?([\w.]+)", text, re.M)
            cuda = match.group(1) if match and match.group(1) != "None" else None
        except OSError:
            pass
    return {"torch": version, "cuda": cuda}


def packages() -> list[str]:
    """`pip freeze` equivalent, from installed metadata (no subprocess). A `<name>-<version>.dist-info` dir
    names both (the standard layout), which is 10x faster than parsing every METADATA file."""
    names = {}
    for dist in importlib.metadata.distributions():
        folder = getattr(dist, "_path", None)
        stem = (
            folder.name[: -len(".dist-info")]
            if folder is not None and folder.name.endswith(".dist-info")
            else ""
        )
        if stem.count("-") == 1:
            name, version = stem.split("-")
            name = name.replace("_", "-")
        else:
            name, version = dist.metadata.get("Name"), dist.version
        if name:
            names.setdefault(name.lower().replace("_", "-"), f"{name}=={version}")
    return sorted(names.values(), key=str.lower)


def sweeper_code() -> dict[str, Any]:
    """sweeper's own code: its version, and the commit it was installed from (the user's repo is another
    one, or none). An editable or local install names its source dir in `direct_url.json` (PEP 610): its
    `git rev-parse HEAD` and whether tracked files differ; a VCS install records `vcs_info.commit_id`."""
    code: dict[str, Any] = {"version": None, "source": None, "commit": None, "dirty": None}
    # The installed one: a checkout's own `sweeper.egg-info` (found first when launched from the checkout)
    # has no direct_url.json.
    found = list(importlib.metadata.distributions(name="sweeper"))
    dist = next((d for d in found if d.read_text("direct_url.json")), found[0] if found else None)
    if dist is None:  # run from a checkout on sys.path, not installed
        from sweeper import __version__

        code.update(version=__version__, source=str(Path(__file__).resolve().parent.parent))
    else:
        code["version"] = dist.version
        try:
            direct = json.loads(dist.read_text("direct_url.json") or "{}")
        except ValueError:
            direct = {}
        url, vcs = direct.get("url") or "", direct.get("vcs_info") or {}
        if vcs:
            return {**code, "source": url, "commit": vcs.get("commit_id")}
        if url.startswith("file://"):
            code["source"] = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
    if code["source"] and Path(code["source"]).is_dir():
        source = Path(code["source"])
        commit = (_git(["rev-parse", "HEAD"], source) or "").strip() or None
        if commit:
            changes = _git(["status", "--porcelain", "--untracked-files=no"], source)
            code.update(commit=commit, dirty=None if changes is None else bool(changes.strip()))
    return code


def collect(argv: list[str] | None = None, cwd: str | Path = ".") -> tuple[dict[str, Any], str]:
    git, diff = git_info(cwd)
    info = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": argv if argv is not None else sys.argv,
        "cwd": str(Path(cwd).resolve()),
        "user": _user(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        **torch_versions(),
        "sweeper": sweeper_code(),
        "git": git,
        "packages": packages(),
    }
    return info, diff


def slurm_environment() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("SLURM_")}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
