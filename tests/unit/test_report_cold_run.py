"""Every report of a real run of the default series, re-rendered from its captured results.

Data: ``tests/unit/data/report/cold-run/`` — the summary.json of a cold ``make run`` of the
default series (2026-12-07, RFC v2 on Debian's QEMU 10.0.13, test VM with nested KVM), with
the results directory's own prefix taken off its paths (they are relative to the results
directory; the machine's other paths, e.g. the QEMU binaries' cache, are left as recorded),
plus, from that run's test directories: both builds' files of
MigrationMapOrdering.test_maps_before_switchover (migration record, destination trace, crash
record, gdb output, measurements) and the gdb output of every crash. Those two runs' timelines
are not in the summary: rendering extracts them from the captured files.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from seriesgate.report import write_reports
from seriesgate.report.migration_timeline import extract, image_name
from seriesgate.report.summary import load_summary

DATA = Path(__file__).parent / "data" / "report" / "cold-run"
ORDERING = "MigrationMapOrdering.test_maps_before_switchover"
HEADLINE = (
    "FAIL: the patched destination crashes on every incoming migration (SIGSEGV in "
    "virtio_net_load_setup; first bad patch 10/10); 4 tests regressed, claims: 2 not shown, "
    "1 broken on both builds, 1 regressed."
)
MACHINE_PATHS = ("/work", "/root", "/tmp", "/home", "/usr", ".cache", str(Path.home()))


def render(run: Path, url: str | None = None) -> Path:
    """Copy the captured results to ``run`` and render every report there."""
    shutil.copytree(DATA, run)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SERIESGATE_TESTED_BY", raising=False)
        if url is None:
            mp.delenv("SERIESGATE_RESULTS_URL", raising=False)
        else:
            mp.setenv("SERIESGATE_RESULTS_URL", url)
        write_reports(load_summary(run / "summary.json"), run)
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("cold") / "run")


def body(reply: str) -> list[str]:
    """The reply's lines after its mail headers."""
    lines = reply.splitlines()
    return lines[lines.index("") + 1 :]


def test_headline_everywhere(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert summary["headline"] == HEADLINE
    assert summary["overall"]["headline"] == HEADLINE and summary["overall"]["exit_code"] == 1
    assert f"**{HEADLINE.replace('_', chr(92) + '_')}**" in (run / "report.md").read_text()
    assert f'id="headline"><b>{HEADLINE}</b>' in (run / "report.html").read_text()
    assert HEADLINE in " ".join((run / "reply.txt").read_text().split())


def test_reply_is_short_and_carries_no_machine_path(run: Path) -> None:
    reply = (run / "reply.txt").read_text()
    lines = reply.splitlines()
    assert len(lines) <= 60, len(lines)
    assert all(len(line) <= 72 for line in body(reply)), max(body(reply), key=len)
    for path in MACHINE_PATHS:
        assert path not in reply, path
    # no command line, no trace tail, no addresses
    assert "-machine" not in reply and "-trace" not in reply and "qemu-system" not in reply
    assert not re.search(r"\d+@\d+\.\d+:", reply)
    assert not re.search(r"0x[0-9a-f]{6,}", reply)
    # the claims with the number each turns on, baseline -> patched
    assert "  map-at-load-setup: not-shown\n" in reply
    assert "    guest-RAM maps in the downtime window: 2 of 2 -> crash\n" in reply
    assert "    max QMP round trip while mapping: 4044 ms -> crash\n" in reply
    assert "    status-bit problems: 2 -> 2\n" in reply
    # the crash once, with its first bad patch and QEMU-relative frames
    assert reply.count("Crash: ") == 1
    assert "Crash: SIGSEGV in virtio_net_load_setup in 7 tests on patched" in reply
    assert "first bad patch 10/10:" in " ".join(reply.split("\n"))
    assert "\n    virtio_net_load_setup hw/net/virtio-net.c:4038\n" in reply
    assert "Environment: vdpa_sim in a test VM, kernel 6.12.118+deb12-amd64" in reply
    assert "Tested-by" not in reply  # the gate fails


def test_reply_links_the_published_results(tmp_path: Path) -> None:
    url = "https://ci.example.org/jobs/42/artifacts/results"
    reply = (render(tmp_path / "run", url) / "reply.txt").read_text()
    assert len(reply.splitlines()) <= 60
    assert f"Report, logs and backtraces: {url}/report.html\n" in reply
    gdb = re.search(rf"  gdb: {re.escape(url)}/(\S+)\n", reply)
    assert gdb is not None
    assert (tmp_path / "run" / gdb.group(1)).is_file()  # the link is into the results
    assert all(len(ln) <= 72 for ln in body(reply) if url not in ln)


def test_one_crash_block_for_the_seven_crashing_tests(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["crashes"]) == 7
    (group,) = summary["crash_groups"]
    assert (group["signal"], group["culprit"], group["vms"]) == (
        "SIGSEGV",
        "virtio_net_load_setup",
        ["destination"],
    )
    assert group["frames"] == [
        "qemu_get_subqueue net/net.c:355",
        "virtio_net_load_setup hw/net/virtio-net.c:4038",
        "qemu_loadvm_state_setup migration/savevm.c:2843",
    ]
    assert not any("??" in f or "0x" in f for f in group["backtrace"])
    assert group["first_bad_patch"] == "10/10"
    md = (run / "report.md").read_text()
    assert md.count("SIGSEGV in virtio\\_net\\_load\\_setup: 7 tests on patched") == 1
    links = re.findall(r"\]\((functional/[^)]+\.gdb\.txt)\)", md)
    assert len(links) == 7 and all((run / link).is_file() for link in links)
    html = (run / "report.html").read_text()
    assert html.count('<p class="crash">') == 1


def test_timeline_of_map_ordering_on_both_builds(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    runs = {t["build"]: t for t in summary["tests"] if t["name"] == ORDERING}
    base = runs["baseline"]["timeline"]
    patched = runs["patched"]["timeline"]
    assert base == extract(run / runs["baseline"]["logdir"])  # from the captured files
    # baseline: both guest-RAM maps on the main thread, after RESUME, inside the downtime
    mk = base["markers"]
    assert mk["stop"] < mk["resume"] < mk["driver_ok"] <= mk["completed"] == base["end"]
    assert [m["thread"] for m in base["maps"]] == ["main", "main"]
    assert all(mk["resume"] < m["start"] < mk["completed"] for m in base["maps"])
    assert sum(m["size"] for m in base["maps"]) >= 256 << 20
    # patched: the destination died in load_setup, before any map; its picture ends there
    assert patched["maps"] == [] and patched["status"] == "crashed"
    assert patched["crash"] == {
        "signal": "SIGSEGV",
        "at": patched["end"],
        "vm": "destination",
        "after": "loadvm_state_setup",
    }
    assert 0 < patched["end"] < 2.0
    png = run / image_name(ORDERING)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (run / "report.md").read_text()
    assert f"]({image_name(ORDERING)})" in md
    html = (run / "report.html").read_text()
    assert f'alt="migration timeline of {ORDERING}" src="data:image/png;base64,' in html


def test_measurements_read_as_values(run: Path) -> None:
    md = (run / "report.md").read_text()
    table = md[md.index("### Measurements") : md.index("## Migration timelines")]
    assert "traffic 1 20/20 frames" in table
    assert "maps in downtime 2 of 2" in table
    assert "guest pause 936 ms" in table
    assert "crashed: SIGSEGV (destination)" in table
    assert "=[" not in table and "_1=" not in table


def test_cli_rerenders_and_prints_the_headline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from seriesgate.cli import main

    shutil.copytree(DATA, tmp_path / "run")
    assert main(["-q", "report", "--from", str(tmp_path / "run" / "summary.json")]) == 1
    assert capsys.readouterr().out.strip() == HEADLINE
