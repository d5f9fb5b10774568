"""report.html of a real run in headless Chromium: what a reader's browser shows.

Renders the captured cold run of the default series (``data/report/cold-run``, see
test_report_cold_run.py) and opens report.html in headless Chromium over the DevTools
protocol: the headline, the crash block and the migration timeline pictures must be there
and decoded, and the page must raise no console error, exception or failed load. The
screenshot is kept as ``results/browser-check/report.png`` in the checkout.

Chromium is installed by ``ci/setup-host.sh`` (``make check`` runs it first); without it
this test fails rather than skips, unless ``SERIESGATE_NO_BROWSER=1`` says so on purpose.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from seriesgate.report import write_reports
from seriesgate.report.browser import check_page, find_chromium
from seriesgate.report.migration_timeline import image_name
from seriesgate.report.summary import load_summary

DATA = Path(__file__).parent / "data" / "report" / "cold-run"
SCREENSHOT = Path(__file__).resolve().parents[2] / "results" / "browser-check" / "report.png"

if os.environ.get("SERIESGATE_NO_BROWSER") == "1":
    pytest.skip("SERIESGATE_NO_BROWSER=1: no browser check", allow_module_level=True)


@pytest.fixture(autouse=True)
def _chromium() -> None:
    assert find_chromium(), "no chromium on PATH: bash ci/setup-host.sh installs it"


def test_real_report_in_chromium(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(DATA, run)
    summary = load_summary(run / "summary.json")
    write_reports(summary, run)
    seen = check_page(run / "report.html", screenshot=SCREENSHOT)
    assert seen.errors == []
    assert seen.headline == summary["headline"]
    assert seen.headline.startswith("FAIL: the patched destination crashes")
    assert len(seen.crashes) == len(summary["crash_groups"]) == 1
    assert seen.crashes[0].startswith("SIGSEGV in virtio_net_load_setup: 7 tests on patched")
    assert seen.broken_images() == []
    alts = {i["alt"] for i in seen.images}
    assert "migration timeline of MigrationMapOrdering.test_maps_before_switchover" in alts
    assert all(i["width"] >= 600 for i in seen.images)
    assert (run / image_name("MigrationMapOrdering.test_maps_before_switchover")).is_file()
    shot = SCREENSHOT.read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 50_000


def test_the_check_sees_what_is_wrong_with_a_page(tmp_path: Path) -> None:
    # the same checks fail on a page with a console error, an exception and a missing image
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>broken</title></head><body>"
        '<p id="headline">FAIL: something.</p><img alt="lost plot" src="lost.png">'
        '<script>console.error("rendering went wrong"); null.x;</script></body></html>'
    )
    seen = check_page(page)
    assert seen.headline == "FAIL: something." and seen.crashes == []
    assert "console.error: rendering went wrong" in seen.errors
    assert any(e.startswith("uncaught exception: TypeError") for e in seen.errors)
    assert any("ERR_FILE_NOT_FOUND" in e for e in seen.errors)
    assert seen.broken_images() == ["lost plot"]
