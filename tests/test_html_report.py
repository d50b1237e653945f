"""`analyze --format html` (and `sweeper note --html`) opened in headless Chromium: it loads with no console
error and no request to anything but itself, one table row per run, sorting by a header works; a page that
does reach the network or throws is caught by the same checks. The screenshot is kept as an artifact
($SWEEPER_TEST_ARTIFACTS, default test-artifacts/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chromium import Browser, find_chromium, open_page
from tests.conftest import REPO
from tests.test_analysis import private_cache  # noqa: F401 (autouse fixture)
from tests.test_analysis_export import PNG_SIGNATURE, strict_json


@pytest.fixture
def browser(tmp_path):
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no chromium (CI installs it: .ci/run)")
        pytest.skip("no chromium here (apt-get install chromium)")
    opened = Browser(binary, tmp_path / "profile")
    yield opened
    opened.close()


def artifacts() -> Path:
    directory = Path(os.environ.get("SWEEPER_TEST_ARTIFACTS", REPO / "test-artifacts"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def offline(page, path: Path) -> list[str]:
    """The requests other than the page itself and its inlined (data:) figures."""
    own = path.resolve().as_uri()
    return [url for url in page.requests if url != own and not url.startswith("data:")]


def column(page, index: int) -> list[str]:
    return page.evaluate(
        f"Array.from(document.querySelectorAll('#runs tbody tr')).map(r => r.cells[{index}].textContent)"
    )


def test_the_html_report_in_chromium(notebook_sweep, cli, tmp_path, browser):
    sweep = notebook_sweep
    document = strict_json(cli("-p", str(sweep), "--format", "json", "--no-group", command="analyze").stdout)
    trials = [r["trial_id"] for r in document["runs"]]
    cli("mark", str(sweep), trials[0], "invalid", "--reason", "wrong data split")
    cli("mark", str(sweep), trials[1], "partial", "--reason", "scheduler bug")
    html = cli("-p", str(sweep), "--format", "html", command="analyze").stdout
    assert "http://" not in html and "https://" not in html and "<link" not in html
    report = tmp_path / "report.html"
    report.write_text(html)

    page = open_page(browser, report)
    assert page.errors == []
    assert offline(page, report) == []
    assert page.evaluate("document.querySelectorAll('#runs tbody tr').length") == 4  # one row per run
    assert page.evaluate("document.querySelectorAll('#runs tbody tr.invalid').length") == 1
    assert page.evaluate("document.querySelectorAll('#runs tbody tr.partial').length") == 1
    run_dirs = {os.path.basename(r["run_dir"]) for r in document["runs"]}
    assert set(column(page, 0)) == run_dirs
    headers = page.evaluate("Array.from(document.querySelectorAll('#runs th')).map(h => h.dataset.key)")
    objective = headers.index("objective")
    values = {os.path.basename(r["run_dir"]): r["objective"] for r in document["runs"]}
    for order in ("desc", "asc"):  # a click sorts by the column, the next one reverses it
        page.evaluate("document.querySelector('#runs th[data-key=objective]').click()")
        shown = [values[name] for name in column(page, 0)]
        assert shown == sorted(shown, reverse=order == "desc")
        assert page.evaluate("document.querySelector('#runs th[data-key=objective]').dataset.order") == order
    assert "test/acc" in headers and len(column(page, objective)) == 4
    text = page.evaluate("document.body.innerText")
    for part in ("Learning curves", "Effects", "Validity marks", "Provenance", "wrong data split"):
        assert part in text
    assert page.evaluate("document.querySelectorAll('img').length") >= 1
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    shot = artifacts() / "html_report.png"
    page.screenshot(shot)
    assert shot.read_bytes()[:8] == PNG_SIGNATURE

    # sweeper note --html: the same page in the sweep dir, linked from the entry
    cli("note", str(sweep), "--html")
    assert (sweep / "report.html").exists()
    assert f"[HTML report](runs/tiny/{sweep.name}/report.html)" in (tmp_path / "EXPERIMENTS.md").read_text()
    again = open_page(browser, sweep / "report.html")
    assert again.errors == [] and offline(again, sweep / "report.html") == []
    assert again.evaluate("document.querySelectorAll('#runs tbody tr').length") == 4


def test_the_checks_catch_a_page_that_reaches_out_or_throws(tmp_path, browser):
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><script src="http://192.0.2.1/x.js"></script></head><body>'
        '<img src="https://example.invalid/y.png"><img src="other.png">'
        "<script>console.error('broken'); undefinedFunction();</script></body></html>"
    )
    page = open_page(browser, bad)
    reached = offline(page, bad)
    assert "http://192.0.2.1/x.js" in reached and "https://example.invalid/y.png" in reached
    assert (tmp_path / "other.png").as_uri() in reached
    assert any("broken" in e for e in page.errors) and any("undefinedFunction" in e for e in page.errors)
