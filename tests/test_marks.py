"""Validity marks through the real CLI on a real local sweep: the ledger, status, analyze's rankings."""

from __future__ import annotations

import json

import pytest

from tests.test_analysis import private_cache  # noqa: F401 (autouse fixture)
from tests.test_analysis_export import strict_json


def analyze_json(cli, sweep_dir, *more):
    return strict_json(cli("-p", str(sweep_dir), "--format", "json", *more, command="analyze").stdout)


def test_marks_go_to_the_ledger_status_and_analyze(notebook_sweep, cli):
    sweep = notebook_sweep
    before = analyze_json(cli, sweep)
    best = before["best"]["name"]
    best_ids = [r["trial_id"] for r in before["runs"] if r["name"] == best]
    other = next(r["name"] for r in before["rows"] if r["name"] != best)

    out = cli("mark", str(sweep), *best_ids, "invalid", "--reason", "WHD scheduler never decays").stdout
    assert f"marked 2 trial(s) invalid: {', '.join(best_ids)}" in out
    events = [json.loads(line) for line in (sweep / "attempts.jsonl").read_text().splitlines()]
    marked = [e for e in events if e["event"] == "marked"]
    assert [e["trial_id"] for e in marked] == best_ids
    assert all(e["validity"] == "invalid" and e["reason"] == "WHD scheduler never decays" for e in marked)
    assert all(e["user"] and e["time"] > 0 for e in marked)

    status = json.loads(cli("status", str(sweep), "--format", "json").stdout)
    trials = {t["trial_id"]: t for t in status["trials"]}
    assert trials[best_ids[0]]["mark"] == "invalid"
    assert trials[best_ids[0]]["mark_reason"] == "WHD scheduler never decays"
    assert trials[best_ids[0]]["state"] == "COMPLETED" and trials[best_ids[0]]["attempt"] == 1
    assert "invalid: WHD scheduler never decays" in cli("status", str(sweep)).stdout

    # the best config moves to the other one; effects and means leave the invalid runs out, a note says so
    after = analyze_json(cli, sweep)
    assert after["best"]["name"] == other
    assert [r["name"] for r in after["rows"]] == [other]
    assert after["effects"]["runs_used"] == 2 and len(after["runs"]) == 2
    (note,) = [n for n in after["notes"] if "marked invalid" in n]
    assert note.startswith("2 run(s) marked invalid left out: WHD scheduler never decays")
    overview = json.loads(cli("status", "--format", "json").stdout)["sweeps"][0]
    assert overview["best"] == pytest.approx(after["best"]["objective_mean"])  # the same best as analyze
    table = cli("-p", str(sweep), command="analyze").stdout
    assert f"Best config: {other}" in table and "2 run(s) marked invalid left out" in table

    # --include-invalid: everything counts again, the mark shown in its column
    included = analyze_json(cli, sweep, "--include-invalid")
    assert included["best"]["name"] == best and included["best"]["marks"] == {"invalid": 2}
    assert {r["mark"] for r in included["runs"] if r["name"] == best} == {"invalid"}
    assert "2 run(s) marked invalid are included" in " ".join(included["notes"])
    wide = cli("-p", str(sweep), "--include-invalid", "--wide", "--no-group", command="analyze").stdout
    header = next(line for line in wide.splitlines() if " config " in line)
    assert "mark" in header and wide.count("invalid") >= 2


def test_partial_runs_are_counted_and_flagged(notebook_sweep, cli):
    sweep = notebook_sweep
    ids = [r["trial_id"] for r in analyze_json(cli, sweep)["runs"]]
    cli("mark", str(sweep), ids[0], "PARTIAL", "--reason", "scheduler bug after epoch 1")
    document = analyze_json(cli, sweep, "--no-group")
    assert len(document["runs"]) == 4 and document["effects"]["runs_used"] == 4
    flagged = {r["trial_id"]: r["mark"] for r in document["runs"]}
    assert flagged[ids[0]] == "partial" and flagged[ids[1]] is None
    assert not [n for n in document["notes"] if "invalid" in n]
    grouped = analyze_json(cli, sweep)
    row = next(r for r in grouped["rows"] if r["marks"])
    assert row["marks"] == {"partial": 1} and row["n"] == 2
    markdown = cli("-p", str(sweep), "--format", "markdown", command="analyze").stdout
    assert "partial 1/2" in markdown
    # a later mark replaces the earlier one
    cli("mark", str(sweep), ids[0], "valid")
    assert {r["mark"] for r in analyze_json(cli, sweep, "--no-group")["runs"]} == {"valid", None}


def test_marking_the_whole_sweep(notebook_sweep, cli):
    sweep = notebook_sweep
    assert "marked 4 trial(s) invalid" in cli("mark", str(sweep), "invalid", "--reason", "wrong data").stdout
    document = analyze_json(cli, sweep, "--include-invalid")
    assert {r["mark"] for r in document["runs"]} == {"invalid"}
    left = analyze_json(cli, sweep)
    assert left["rows"] == [] and left["best"] is None
    assert "4 run(s) marked invalid left out: wrong data" in left["notes"][0]


def test_bad_marks_are_one_line_and_write_nothing(notebook_sweep, cli):
    sweep = notebook_sweep
    ledger = (sweep / "attempts.jsonl").read_bytes()
    trial = analyze_json(cli, sweep)["runs"][0]["trial_id"]
    cases = [
        (("mark", str(sweep), trial[:-1] + "9", "invalid", "--reason", "x"), "no trial"),
        (("mark", str(sweep), trial, "bogus", "--reason", "x"), "'bogus': not a validity"),
        (("mark", str(sweep), trial, "invald", "--reason", "x"), "did you mean 'invalid'"),
        (("mark", str(sweep), trial, "invalid"), "say why with --reason"),
        (("mark", str(sweep)), "give the mark"),
    ]
    for args, expected in cases:
        result = cli(*args, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and expected in lines[0], result.stderr
        assert "Traceback" not in result.stderr
    unknown = cli("mark", str(sweep), trial.replace("-s", "-x"), "invalid", "--reason", "x", check=False)
    assert f"did you mean '{trial}'" in unknown.stderr
    assert (sweep / "attempts.jsonl").read_bytes() == ledger
