"""`sweeper note` on real local sweeps: the auto-filled facts, the difference between two sweeps of one
name, human text kept byte for byte, a hand-edited notebook, markdown that parses back, bad input."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from sweeper.ledger import Ledger
from tests.conftest import tiny_spec, write_spec
from tests.test_analysis import private_cache  # noqa: F401 (autouse fixture)
from tests.test_analysis_export import markdown_tables, strict_json


def facts_of(entry: str) -> dict[str, str]:
    table = markdown_tables(entry)[0]
    return {row[0].strip("*"): row[1] for row in table[1:]}


def entry_of(text: str, entry_id: str) -> str:
    start = text.index(f"<!-- sweeper:entry {entry_id} -->")
    end = text.index(f"<!-- sweeper:entry-end {entry_id} -->", start)
    return text[start:end]


def section_of(text: str, name: str) -> str:
    begin, end = f"<!-- sweeper:begin {name} -->", f"<!-- sweeper:end {name} -->"
    return text[text.index(begin) + len(begin) : text.index(end)]


def with_section(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- sweeper:begin {name} -->", f"<!-- sweeper:end {name} -->"
    return text[: text.index(begin) + len(begin)] + body + text[text.index(end) :]


def test_the_entry_is_filled_from_the_spec_provenance_and_ledger(notebook_sweep, cli, tmp_path):
    sweep = notebook_sweep
    out = cli("note", str(sweep)).stdout
    notebook = tmp_path / "EXPERIMENTS.md"
    assert f"added its entry in {notebook}" in out
    meta = json.loads((sweep / "sweep.json").read_text())
    entry_id = f"tiny/{sweep.name}"
    note = (sweep / "NOTE.md").read_text()
    entry = entry_of(notebook.read_text(), entry_id)
    facts = facts_of(entry)
    assert facts_of(entry_of(note, entry_id)) == {**facts, "path": "."}  # links relative to each file
    assert f"## tiny {sweep.name}" in entry and "A first look at weight decay." in entry
    assert facts["path"] == f"runs/tiny/{sweep.name}"
    assert facts["date"] == time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(meta["created_at"]))
    assert facts["dataset"] == "digits (test_fraction 0.2)"
    assert facts["model"] == "vit (patch_size 4, layers 1, d_model 16, heads 2, mlp_ratio 1, dropout 0)"
    assert facts["optimizer"] == "adamw, base LR 0.003 (weight_decay 0.01)"
    assert facts["schedule"] == "warmup (warmup_epochs 1)"
    assert facts["epochs"] == "2" and facts["seeds"] == "0, 1"
    assert facts["trials"] == "4: COMPLETED 4"
    assert facts["git"] == "not a git repository" and facts["SLURM jobs"] == "- (local executor)"
    assert facts["run status"].startswith("not marked")
    assert facts["compute"].endswith("GPU hours (4 attempts)")
    assert section_of(entry, "hypothesis") == "\nweight decay helps on digits\n"  # from the spec's notes
    assert "No previous sweep of this name" in entry

    # results: analyze's table (one row per config), the final metrics, one row per run; plots linked
    document = strict_json(cli("-p", str(sweep), "--format", "json", command="analyze").stdout)
    tables = markdown_tables(entry)
    results = next(t for t in tables if t[0][0] == "config" and "best valid acc (ep)" in t[0])
    assert [row[0] for row in results[1:]] == [r["name"] for r in document["rows"]]
    final = next(t for t in tables if t[0][:2] == ["config", "n"] and "test/acc" in t[0])
    assert len(final) == 3
    runs = next(t for t in tables if t[0][0] == "run dir")
    run_dirs = {p.name for p in sweep.iterdir() if (p / "metrics.parquet").exists()}
    assert {row[0] for row in runs[1:]} == run_dirs and len(runs) == 5
    assert f"Best config: {document['best']['name']}" in entry
    assert f"![curves](runs/tiny/{sweep.name}/curves.png)" in entry and (sweep / "curves.png").exists()
    assert "![curves](curves.png)" in note


def test_human_text_survives_regeneration_and_hand_edits(notebook_sweep, cli, tmp_path):
    sweep = notebook_sweep
    notebook = tmp_path / "notes" / "lab.md"
    notebook.parent.mkdir()
    notebook.write_bytes(b"# My lab book\r\n\r\nWritten by hand, CRLF and all.  \r\n")
    cli("note", str(sweep), "--notebook", str(notebook))
    text = notebook.read_bytes().decode()
    assert text.startswith("# My lab book\r\n\r\nWritten by hand, CRLF and all.  \r\n")
    entry_id = f"tiny/{sweep.name}"
    # the researcher edits: sections, and text around the entry
    observations = "\n  Seed 1 is *always* better.\t\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
    edited = with_section(text, "observations", observations)
    edited = with_section(edited, "next steps", "\n- try wd 0.3\r\n")
    edited = edited + "\n## A hand-written entry\n\nnot sweeper's.\n"
    notebook.write_bytes(edited.encode())

    # more happens: a trial is marked; the entry is regenerated in place
    trial = strict_json(cli("-p", str(sweep), "--format", "json", command="analyze").stdout)["runs"][0]
    cli("mark", str(sweep), trial["trial_id"], "partial", "--reason", "scheduler bug")
    assert "updated its entry" in cli("note", str(sweep), "--notebook", str(notebook)).stdout
    after = notebook.read_bytes().decode()
    start = after.index(f"<!-- sweeper:entry {entry_id} -->")
    end = after.index(f"<!-- sweeper:entry-end {entry_id} -->") + len(
        f"<!-- sweeper:entry-end {entry_id} -->"
    )
    old_start = edited.index(f"<!-- sweeper:entry {entry_id} -->")
    old_end = edited.index(f"<!-- sweeper:entry-end {entry_id} -->") + len(
        f"<!-- sweeper:entry-end {entry_id} -->"
    )
    assert after[:start] == edited[:old_start] and after[end:] == edited[old_end:]  # untouched outside
    assert section_of(after, "observations") == observations
    assert section_of(after, "next steps") == "\n- try wd 0.3\r\n"
    assert (
        facts_of(after[start:end])["run status"]
        == "Partially invalid: 1 partial of 4 trials (partial: scheduler bug)"
    )
    assert after.count("<!-- sweeper:entry ") == 1

    # --hypothesis / --conclusion replace their sections; the others stay
    cli("note", str(sweep), "--notebook", str(notebook), "--conclusion", "wd does not matter at 2 epochs")
    final = notebook.read_bytes().decode()
    assert section_of(final, "conclusion") == "\nwd does not matter at 2 epochs\n"
    assert section_of(final, "observations") == observations
    assert section_of(final, "hypothesis") == "\nweight decay helps on digits\n"


def test_marks_move_the_best_config_line_of_the_entry(notebook_sweep, cli, tmp_path):
    sweep = notebook_sweep
    document = strict_json(cli("-p", str(sweep), "--format", "json", command="analyze").stdout)
    best = document["best"]["name"]
    other = next(r["name"] for r in document["rows"] if r["name"] != best)
    ids = [r["trial_id"] for r in document["runs"] if r["name"] == best]
    cli("mark", str(sweep), *ids, "invalid", "--reason", "WHD scheduler never decays")
    cli("note", str(sweep))
    entry = (tmp_path / "EXPERIMENTS.md").read_text()
    assert f"Best config: {other}" in entry and f"Best config: {best}" not in entry
    assert "2 run(s) marked invalid left out: WHD scheduler never decays" in entry
    runs = next(t for t in markdown_tables(entry) if t[0][0] == "run dir")
    assert len(runs) == 5  # every run is listed, the invalid ones with their mark
    assert sum(row[4] == "invalid: WHD scheduler never decays" for row in runs[1:]) == 2
    assert "Partially invalid: 2 invalid of 4 trials" in entry


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_the_difference_from_the_previous_sweep(tmp_path, cli):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    one = "configs: {only: {}}\nseeds: [0]\n"
    tiny_spec(tmp_path, one)
    git(tmp_path, "add", "spec.yaml")
    git(tmp_path, "commit", "-qm", "first")
    cli("launch", "spec.yaml", "--executor", "local", "--set", "epochs=1")
    first = sorted((tmp_path / "runs" / "tiny").glob("2*"))[0]
    spec = (
        (tmp_path / "spec.yaml")
        .read_text()
        .replace("lr: 3e-3", "lr: 1e-3")
        .replace("warmup_epochs: 1", "warmup_epochs: 0")
    )
    (tmp_path / "spec.yaml").write_text(
        spec.replace("configs: {only: {}}", "grid: {model.dropout: [0.0, 0.1]}")
    )
    (tmp_path / "helper.py").write_text("x = 1\n")
    git(tmp_path, "add", "spec.yaml", "helper.py")
    git(tmp_path, "commit", "-qm", "second")
    (tmp_path / "helper.py").write_text("x = 2\n")  # dirty
    cli("launch", "spec.yaml", "--executor", "local", "--set", "epochs=1", "--set", "batch_size=256")
    second = (tmp_path / "runs" / "tiny" / "latest").resolve()
    assert second != first

    cli("note", "tiny")  # by name: the latest, compared with the one before
    cli("note", f"tiny/{first.name}")
    text = (tmp_path / "EXPERIMENTS.md").read_text()
    assert text.index(f"sweeper:entry tiny/{second.name}") < text.index(f"sweeper:entry tiny/{first.name}")
    entry = entry_of(text, f"tiny/{second.name}")
    difference = entry[entry.index("### Difference") : entry.index("### Results")]
    changed = [line for line in difference.splitlines() if line.startswith("- `")]
    assert changed == [  # exactly the base keys that changed, in the spec's order
        "- `optim.lr`: 0.003 -> 0.001",
        "- `schedule.warmup_epochs`: 1 -> 0",
        "- `batch_size`: 128 -> 256",
    ]
    assert f"Compared with tiny {first.name}" in difference
    assert "- varied then: configs only" in difference
    assert "- varied now: model.dropout in [0.0, 0.1]" in difference
    provenance = [json.loads((d / "provenance.json").read_text())["git"] for d in (first, second)]
    commits = [p["commit"] for p in provenance]
    assert (
        f"- code: {commits[0][:12]}..{commits[1][:12]}, 2 file(s) changed: helper.py, spec.yaml" in difference
    )
    facts = facts_of(entry)
    lines = (second / "git.diff").read_text().count("\n")
    assert facts["git"] == f"{commits[1][:12]}, dirty ({lines} lines of diff in git.diff)" and lines > 0
    assert "No previous sweep of this name" in entry_of(text, f"tiny/{first.name}")
    # --vs compares with any sweep
    cli("note", f"tiny/{first.name}", "--vs", f"tiny/{second.name}")
    reverse = entry_of((tmp_path / "EXPERIMENTS.md").read_text(), f"tiny/{first.name}")
    assert "- `optim.lr`: 0.001 -> 0.003" in reverse


def test_bad_notebook_input(notebook_sweep, cli, tmp_path):
    sweep = notebook_sweep
    (tmp_path / "book").mkdir()
    cases = [
        (("note", str(sweep), "--notebook", "book"), "--notebook book: is a directory"),
        (
            ("note", str(sweep), "--notebook", "nowhere/lab.md"),
            "--notebook nowhere/lab.md: no directory nowhere",
        ),
        (("note", "nosuchsweep"), "no sweep 'nosuchsweep'"),
        (("note", str(sweep), "--compare-by", "model.residul"), "--compare-by model.residul"),
    ]
    for args, expected in cases:
        result = cli(*args, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and expected in lines[0], result.stderr
    assert not (sweep / "NOTE.md").exists() and not (tmp_path / "EXPERIMENTS.md").exists()
    assert not (sweep / "curves.png").exists()
    # an entry whose end marker was deleted by hand is refused, the file left as it is
    cli("note", str(sweep))
    notebook = tmp_path / "EXPERIMENTS.md"
    broken = notebook.read_text().replace(f"<!-- sweeper:entry-end tiny/{sweep.name} -->", "")
    notebook.write_text(broken)
    result = cli("note", str(sweep), check=False)
    assert result.returncode == 1 and f"entry tiny/{sweep.name}: no end marker" in result.stderr
    assert "EXPERIMENTS.md:5:" in result.stderr
    assert notebook.read_text() == broken


def test_compare_by_puts_the_groups_side_by_side(notebook_sweep, cli, tmp_path):
    cli("note", str(notebook_sweep), "--compare-by", "optim.weight_decay")
    entry = (tmp_path / "EXPERIMENTS.md").read_text()
    assert "**weight_decay=0 vs weight_decay=0.1 (Δ: difference to weight_decay=0)**" in entry
    for value in ("0", "0.1"):
        block = entry[entry.index(f"#### weight_decay={value}\n") :]
        table = markdown_tables(block)[0]
        assert [row[0] for row in table[1:]] == [f"weight_decay={value}"]
        assert table[1][table[0].index("n")] == "2"


@pytest.mark.slurm
def test_the_entry_of_a_slurm_sweep_names_its_jobs(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: nbslurm
        entrypoint: jobfns:slow_counter
        base: {epochs: 2, sleep: 0.1, lr: 0.0}
        grid: {lr: [0.1, 0.2]}
        launch: {profile: local, parallelism: 2}
        """,
    )
    try:
        cli("launch", "spec.yaml", "--wait")
        sweep = (tmp_path / "runs" / "nbslurm" / "latest").resolve()
        attempts = [json.loads(line) for line in (sweep / "attempts.jsonl").read_text().splitlines()]
        array = {e["job_id"].split("_")[0] for e in attempts if e["event"] == "submitted"}
        cli("note", "nbslurm")
        facts = facts_of((tmp_path / "EXPERIMENTS.md").read_text())
        assert facts["SLURM jobs"] == ", ".join(sorted(array)) and facts["trials"] == "2: COMPLETED 2"
        assert facts["compute"].endswith("0 GPU hours (2 attempts)")
        cpus = Ledger(sweep).launched_spec().launch.slurm.cpus_per_task
        assert float(facts["compute"].split()[0]) > 0 and cpus >= 1
    finally:
        for line in (tmp_path / "runs").glob("*/*/attempts.jsonl"):
            ids = {json.loads(x)["job_id"].split("_")[0] for x in line.read_text().splitlines()}
            subprocess.run(["scancel", *sorted(ids)], capture_output=True)
