"""Rendering every report from a summary: Markdown, HTML, JUnit, reply, bench plot, CLI."""

from __future__ import annotations

import html.parser
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import test_report_helpers as h

from seriesgate.cli import main
from seriesgate.errors import InputError
from seriesgate.functional.model import Crash, Direction
from seriesgate.report import write_reports
from seriesgate.report.bench_plot import bench_stats, load_bench
from seriesgate.report.html_report import render_html
from seriesgate.report.junit import render_junit
from seriesgate.report.markdown import escape, render_markdown
from seriesgate.report.reply import render_reply
from seriesgate.report.summary import build_summary

HOSTILE = "vdpa: <script>alert(1)</script> | `rm -rf` **bold** & $(id)"


def bench_runs() -> list[dict[str, Any]]:
    return [
        {
            "build": build,
            "guest_mem_mb": mem,
            "run": run,
            "downtime_ms": (300.0 if build == "baseline" else 120.0) + run,
            "total_ms": 1500.0 + run,
            "stop_to_resume_ms": 400.0 + run,
            "maps_in_downtime": 64 if build == "baseline" else 0,
        }
        for build in ("baseline", "patched")
        for mem in (256, 1024)
        for run in (1, 2, 3)
    ]


def summary(outcomes: list[Any] | None = None, **kw: Any) -> dict[str, Any]:
    return build_summary(
        series_set=kw.pop("series_set", h.series_set()),
        tree=h.tree(),
        builds=h.builds(),
        env=h.env(),
        functional=h.functional(outcomes if outcomes is not None else h.passing_outcomes()),
        stage_times=kw.pop("stage_times", {"build": 382.0, "functional": 240.0}),
        **kw,
    )


def regressed_summary(tmp_path: Path) -> dict[str, Any]:
    log = tmp_path / "dst.log"
    log.write_text("vhost_vdpa_dma_map ...\nqemu-system-x86_64: received signal 11\n")
    crash = Crash("qemu-system-x86_64", "SIGSEGV", ("#0 vhost_vdpa_net_load_setup",), log)
    return summary(
        [
            *h.pair("Cancel.test_cancel", "PASS", "FAIL", fail_reason="source stopped sending"),
            h.outcome("Svq.test_dest", "baseline", "PASS"),
            h.outcome("Svq.test_dest", "patched", "ERROR", crash=crash),
        ]
    )


def test_markdown_has_every_section() -> None:
    md = render_markdown(summary(bench=bench_runs()), plot=Path("bench.png"))
    for heading in (
        "# seriesgate: PASS",
        "## Patches",
        "## Builds",
        "## Claims",
        "## Tests",
        "## Findings",
        "## Downtime benchmark",
        "### What vdpa\\_sim cannot show",
        "## Environment",
        "## Stage times",
    ):
        assert heading in md, heading
    assert "| map-at-load-setup | fixed-by-series | 1 | 1 fails | 1 holds | confirmed |" in md
    assert "![downtime benchmark plot](bench.png)" in md
    assert "128 GB" in md and "Only tested with vdpa\\_sim." in md
    assert "vdpa\\_sim built with queue max 1024 (test device, not code under test)" in md
    assert "| total | 622 s |" in md


def test_stage_times_total_is_the_runs_own_once() -> None:
    # A run records its wall-clock total itself; the table must not add it to the stages.
    s = summary(stage_times={"build": 382.0, "functional": 240.0, "total": 700.0})
    md = render_markdown(s)
    assert md.count("| total |") == 1 and "| total | 700 s |" in md


def test_markdown_escapes_mail_text() -> None:
    assert escape("a | b\nc") == "a \\| b c"
    md = render_markdown(
        summary(series_set=h.series_set(cover_mbox=Path("/none"), subject=HOSTILE))
    )
    assert "<script>" not in md
    table_line = next(line for line in md.splitlines() if line.startswith("| series |"))
    assert table_line.count(" | ") == 1  # the subject's pipe did not add a column


class _Collector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_static_escaped_and_embeds_the_plot(tmp_path: Path) -> None:
    from seriesgate.report.bench_plot import plot_bench

    plot_bench(bench_runs(), tmp_path / "bench.png")
    s = summary(series_set=h.series_set(cover_mbox=Path("/none"), subject=HOSTILE))
    s["bench"] = bench_runs()
    page = render_html(s, plot=Path("bench.png"), base_dir=tmp_path)
    parser = _Collector()
    parser.feed(page)
    assert "script" not in parser.tags  # the subject's <script> is text, not a tag
    assert HOSTILE in "".join(parser.text)
    assert 'src="data:image/png;base64,iVBORw0KGgo' in page  # PNG embedded, no file link
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from a server
    assert '<p class="banner ok" id="headline">' in page


def test_html_marks_failures(tmp_path: Path) -> None:
    page = render_html(regressed_summary(tmp_path))
    assert '<p class="banner bad" id="headline">' in page
    assert '<td class="bad">regressed</td>' in page
    # the crash, once, by signature; its frames without addresses
    assert page.count('<p class="crash">') == 1
    assert "<b>SIGSEGV in vhost_vdpa_net_load_setup: 1 test on patched</b>" in page
    assert "<pre>vhost_vdpa_net_load_setup</pre>" in page


def _cases(xml: str) -> dict[tuple[str, str], ET.Element]:
    root = ET.fromstring(xml)
    return {(c.get("classname", ""), c.get("name", "")): c for c in root.iter("testcase")}


def test_junit_passing_run() -> None:
    xml = render_junit(summary())
    root = ET.fromstring(xml)
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["apply", "build", "checkpatch", "claims", "functional"]
    assert suites["apply"].get("tests") == "11"
    assert suites["functional"].get("tests") == "6"
    cases = _cases(xml)
    fn = cases[("functional.patched.MapOrdering", "test_maps_before_stop")]
    assert fn.get("file") == "tests/functional/test_migration.py"
    assert fn.find("failure") is None
    # the fixed-by-series test failing on baseline is expected, so not red
    base = cases[("functional.baseline.MapOrdering", "test_maps_before_stop")]
    assert base.find("failure") is None
    assert "expected failure on baseline" in (base.findtext("system-out") or "")
    cp = cases[("seriesgate.checkpatch", "08/10 vdpa: add vhost_vdpa_load_setup")]
    assert cp.find("failure") is not None
    assert cp.find("failure").get("message") == "1 errors, 2 warnings"  # type: ignore[union-attr]
    posted = cases[("seriesgate.build", "posted")]
    assert (
        posted.find("failure")
        .get("message", "")
        .startswith(  # type: ignore[union-attr]
            "hw/net/virtio-net.c:3912"
        )
    )
    assert posted.get("file") == "hw/net/virtio-net.c"


def test_junit_regression_crash_and_conflict(tmp_path: Path) -> None:
    cases = _cases(render_junit(regressed_summary(tmp_path)))
    cancel = cases[("functional.patched.Cancel", "test_cancel")]
    assert cancel.find("failure").get("message") == "source stopped sending"  # type: ignore[union-attr]
    svq = cases[("functional.patched.Svq", "test_dest")]
    failure = svq.find("failure")
    assert failure is not None and failure.get("message") == "qemu-system-x86_64 died on SIGSEGV"
    assert "#0 vhost_vdpa_net_load_setup" in (failure.text or "")

    s = build_summary(series_set=h.series_set(), tree=h.tree(conflict_at=3), stage_times={})
    cases = _cases(render_junit(s))
    key = "seriesgate.apply.series.vdpa-map-at-load-setup"
    conflict = cases[(key, "03/10 vdpa: merge _begin_batch into _batch_begin_once")]
    assert conflict.find("failure") is not None
    assert conflict.get("file") == "hw/virtio/vhost-vdpa.c"
    assert "@@ -10,3 +10,4 @@" in (conflict.find("failure").text or "")  # type: ignore[union-attr]
    skipped = cases[(key, "04/10 vdpa: extract out _dma_end_batch from _listener_commit")]
    assert skipped.find("skipped") is not None


def test_junit_strips_control_characters() -> None:
    s = summary(
        [*h.pair("Cancel.test_cancel", "PASS", "FAIL", fail_reason="serial: \x1b[0m\x07 boom")]
    )
    ET.fromstring(render_junit(s))  # parses: no raw control characters


def test_reply_pass_with_and_without_tester() -> None:
    s = summary()
    text = render_reply(s)
    lines = text.splitlines()
    assert lines[0] == (
        "Subject: Re: [RFC PATCH v2 00/10] Map memory at destination .load_setup in "
        "vDPA-net migration"
    )
    assert lines[1] == f"In-Reply-To: <{h.COVER_ID}>"
    assert lines[2] == f"References: <{h.COVER_ID}>"
    assert "On Tue, 28 Nov 2023 11:42:53 +0100, Eugenio Pérez <eperezma@redhat.com>\nwrote:" in text
    assert s["headline"] in " ".join(text.split())  # wrapped at 72 columns
    assert s["headline"].startswith("PASS: no regression in 3 tests on both builds")
    assert "  05/10 fuzz(2)         ok   0/0  vdpa: factor out stop path of vhost..." in text
    assert "  map-at-load-setup: confirmed\n    FAIL -> PASS\n" in text
    assert max(len(line) for line in lines[3:]) <= 72
    assert "Tested-by" not in text  # nobody named: the tool does not sign for a person
    signed = render_reply(s, tested_by="Jane Doe <jane@example.org>")
    assert "\nTested-by: Jane Doe <jane@example.org>\n" in signed


def test_reply_failure_never_offers_tested_by(tmp_path: Path) -> None:
    text = render_reply(regressed_summary(tmp_path), tested_by="Jane Doe <jane@example.org>")
    assert "Tested-by" not in text
    assert (
        "FAIL: the patched QEMU crashes in 1 of 2 migration tests (SIGSEGV in "
        "vhost_vdpa_net_load_setup); 2 tests regressed."
    ) in text.replace("\n", " ")
    # a regression without a crash is named; the crashed one is counted in its crash block
    assert "Regressed (pass on baseline, fail on patched): Cancel.test_cancel\n" in text
    assert "Crash: SIGSEGV in vhost_vdpa_net_load_setup in 1 test on patched (QEMU;\n1 of" in text
    assert "\n    vhost_vdpa_net_load_setup\n" in text
    assert str(tmp_path) not in text  # the crash log's path stays out of a mail


def test_bench_stats_and_loading(tmp_path: Path) -> None:
    stats = bench_stats(bench_runs())
    first = stats[0]
    assert (first["build"], first["guest_mem_mb"], first["runs"]) == ("baseline", 256, 3)
    assert first["downtime_ms"] == {"median": 302.0, "min": 301.0, "max": 303.0}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench_runs()))
    assert load_bench(path) == bench_runs()
    path.write_text(json.dumps([{"build": "baseline"}]))
    with pytest.raises(InputError, match="lacks guest_mem_mb, run, downtime_ms"):
        load_bench(path)


def test_bench_of_a_real_run_shows_guest_pause_and_failed_runs() -> None:
    # `seriesgate bench --runs 3` on the default series (2026-11-26): baseline's guest
    # pause grows with guest RAM while query-migrate's downtime does not; patched crashes.
    runs = load_bench(Path(__file__).parent / "data" / "report" / "bench-rfc-v2-2026-11-26.json")
    stats = {(s["build"], s["guest_mem_mb"]): s for s in bench_stats(runs)}
    base = [stats[("baseline", mem)] for mem in (256, 1024, 2048)]
    pauses = [s["guest_pause_ms"]["median"] for s in base]
    assert pauses == sorted(pauses) and pauses[-1] > 5000
    assert all(s["downtime_ms"]["max"] < 500 for s in base)
    assert all(s["maps_in_downtime"]["median"] == 2 for s in base)
    patched = [stats[("patched", mem)] for mem in (256, 1024, 2048)]
    assert all(s["failed"] == 3 and "guest_pause_ms" not in s for s in patched)
    md = render_markdown(summary(bench=runs))
    assert "guest pause (STOP → destination completed)" in md
    # That run's source saw only the broken pipe (the bench now names the crash instead).
    assert "| 3: bench migration ended failed: Unable to write to socket: Broken pipe |" in md


def test_write_reports_and_rerender_via_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = summary(bench=bench_runs())
    written = write_reports(s, tmp_path / "run")
    names = sorted(p.name for p in written)
    assert names == [
        "bench.png",
        "junit.xml",
        "reply.txt",
        "report.html",
        "report.md",
        "summary.json",
    ]
    assert (tmp_path / "run" / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "again"
    code = main(
        ["-q", "report", "--from", str(tmp_path / "run" / "summary.json"), "--out", str(out)]
    )
    assert code == 0
    assert (out / "report.md").read_text() == (tmp_path / "run" / "report.md").read_text()
    assert capsys.readouterr().out.strip() == s["headline"]
    assert s["headline"].startswith("PASS: ")


def test_cli_exit_code_follows_verdict(tmp_path: Path) -> None:
    write_reports(regressed_summary(tmp_path), tmp_path / "run")
    assert main(["-q", "report", "--from", str(tmp_path / "run" / "summary.json")]) == 1
    assert main(["-q", "report", "--from", str(tmp_path / "nope.json")]) == 2


def test_cli_merges_partial_summaries(tmp_path: Path) -> None:
    outcomes = h.passing_outcomes()
    for build in ("baseline", "patched"):
        part = summary([o for o in outcomes if o.build == build])
        write_reports(part, tmp_path / build)
    args = ["-q", "report", "--out", str(tmp_path / "merged")]
    for build in ("baseline", "patched"):
        args += ["--from", str(tmp_path / build / "summary.json")]
    assert main(args) == 0
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert len(merged["tests"]) == 6
    assert {c["claim"]: c["verdict"] for c in merged["claims"]}["map-at-load-setup"] == "confirmed"


def test_direction_shown_as_invariant() -> None:
    md = render_markdown(
        summary([*h.pair("A.b", "PASS", "PASS", direction=Direction.HOLDS_ON_BOTH)])
    )
    assert "| A.b | - | invariant | PASS 12.5 s | PASS 12.5 s | holds-on-both |" in md


def test_bench_printed_summary_is_the_reports_statistics_rounded() -> None:
    from seriesgate.bench import format_summary, summarize

    runs = load_bench(Path(__file__).parent / "data" / "report" / "bench-rfc-v2-2026-11-26.json")
    printed = {(e["build"], e["guest_mem_mb"]): e for e in summarize(runs)}
    for s in bench_stats(runs):
        e = printed[(s["build"], s["guest_mem_mb"])]
        assert e["runs"] == s["runs"] and e["failed_runs"] == s["failed"]
        assert e.get("downtime_ms") == (
            {k: round(v, 1) for k, v in s["downtime_ms"].items()} if "downtime_ms" in s else None
        )
    assert printed[("patched", 2048)]["failed_runs"] == 3
    table = format_summary(summarize(runs))
    assert table.splitlines()[0].split()[:2] == ["build", "MiB"] and len(table.splitlines()) == 7


def test_report_says_which_tests_were_selected() -> None:
    gate = {**summary(), "test_selection": ["quick", "core", "claim"]}
    assert "Tests selected: tags quick, core, claim" in render_markdown(gate)
    everything = {**summary(), "test_selection": []}
    assert "Tests selected: all tests" in render_markdown(everything)
    assert "Tests selected" not in render_markdown(summary())  # older summaries: nothing said


def _bench_args(**flags: Any) -> Any:
    import argparse

    return argparse.Namespace(
        **(
            {"baseline": None, "patched": None, "repaired": None, "no_repaired": False}
            | {"firmware": []}
            | flags
        )
    )


def test_bench_measures_the_repaired_build_when_the_run_built_one(tmp_path: Path) -> None:
    from seriesgate.bench import resolve_builds

    binaries = {}
    for build in ("baseline", "patched", "repaired"):
        binaries[build] = tmp_path / build / "qemu-system-x86_64"
        binaries[build].parent.mkdir()
        binaries[build].write_text("#!/bin/sh\n")
        binaries[build].chmod(0o755)
    # The shape of a real run's build.json (runF, 2026-12-07): every build, patch-10 failed.
    found = {
        "complete": True,
        "firmware_dirs": ["/usr/share/qemu"],
        "builds": {
            **{b: {"binary": str(p)} for b, p in binaries.items()},
            "patch-10": {"binary": None},
        },
    }
    got, firmware = resolve_builds(_bench_args(), found)
    assert list(got) == ["baseline", "patched", "repaired"] and firmware == ["/usr/share/qemu"]
    assert list(resolve_builds(_bench_args(no_repaired=True), found)[0]) == [
        "baseline",
        "patched",
    ]
    # A series without repairs: no repaired build, no error.
    del found["builds"]["repaired"]
    assert list(resolve_builds(_bench_args(), found)[0]) == ["baseline", "patched"]
    # Asked for explicitly but not there: one line naming it.
    with pytest.raises(InputError, match="no repaired QEMU binary"):
        resolve_builds(_bench_args(repaired=tmp_path / "nope"), found)


def test_bench_plot_and_table_show_all_three_builds(tmp_path: Path) -> None:
    from seriesgate.report.bench_plot import build_label, plot_bench

    # `seriesgate bench` on baseline, patched and repaired (2026-12-07): the posted series
    # crashes every run; the repaired build halves the guest pause but crashed twice
    # (08/10's cleanup loop, docs/findings.md §3d).
    data = Path(__file__).parent / "data" / "report" / "bench-rfc-v2-repaired-2026-12-07.json"
    runs = load_bench(data)
    stats = {(s["build"], s["guest_mem_mb"]): s for s in bench_stats(runs)}
    assert build_label("patched", list(stats.values())) == "patched: 9 of 9 runs failed"
    assert build_label("repaired", list(stats.values())) == (
        "repaired (our repair): 2 of 9 runs failed"
    )
    for mem in (256, 1024, 2048):
        base, rep = stats[("baseline", mem)], stats[("repaired", mem)]
        assert rep["guest_pause_ms"]["median"] < base["guest_pause_ms"]["median"] / 2 + 1
        assert rep["maps_in_downtime"]["median"] >= 1  # maps stay in the downtime
    assert "SIGSEGV" in stats[("repaired", 1024)]["first_error"]
    plot = plot_bench(runs, tmp_path / "bench.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = render_markdown(summary(bench=runs))
    assert "| 256 MB | repaired (our repair) | 3 |" in md
