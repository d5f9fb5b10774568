"""report stage: summary.json and the reports people read (Markdown, HTML, JUnit, list reply).

Other stages call two things::

    summary = build_summary(series_set=..., tree=..., builds=..., env=..., functional=...,
                            stage_times={...}, error=None)        # seriesgate.report.summary
    paths = write_reports(summary, results_dir)                   # this module

``write_reports`` writes summary.json, report.md, report.html, junit.xml, reply.txt (and
bench.png when the summary carries bench runs, ``timeline-<test>.png`` per migration test)
into ``out_dir``; every file is rendered from the summary dict alone, so ``seriesgate report
--from summary.json`` re-renders a finished run. It derives the verdicts again first (facts
added after :func:`build_summary`, such as the pipeline's bisect, reach the headline and the
crash groups) and extracts the migration timelines that an older summary lacks from the
tests' directories, when they are still there.

``$SERIESGATE_RESULTS_URL`` (optional): where CI publishes the results directory; reply.txt
then links the report there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REPORT_FILES = ("summary.json", "report.md", "report.html", "junit.xml", "reply.txt")
BENCH_PLOT = "bench.png"


def write_reports(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write every report for ``summary`` into ``out_dir``; return the paths written."""
    from seriesgate.report import bench_plot, migration_timeline
    from seriesgate.report.html_report import render_html
    from seriesgate.report.junit import render_junit
    from seriesgate.report.markdown import render_markdown
    from seriesgate.report.reply import render_reply
    from seriesgate.report.summary import derive, write_summary

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    migration_timeline.fill(summary, out_dir)
    derive(summary)
    written = [write_summary(summary, out_dir / "summary.json")]
    plot: Path | None = None
    if summary.get("bench"):
        bench_plot.plot_bench(summary["bench"], out_dir / BENCH_PLOT)
        written.append(out_dir / BENCH_PLOT)
        plot = Path(BENCH_PLOT)
    timelines = migration_timeline.plot_all(summary, out_dir)
    written += [out_dir / p for p in timelines.values()]
    texts = {
        "report.md": render_markdown(summary, plot=plot, timelines=timelines, base_dir=out_dir),
        "report.html": render_html(summary, plot=plot, base_dir=out_dir, timelines=timelines),
        "junit.xml": render_junit(summary),
        "reply.txt": render_reply(
            summary,
            tested_by=os.environ.get("SERIESGATE_TESTED_BY"),
            results_url=os.environ.get("SERIESGATE_RESULTS_URL") or None,
            base_dir=out_dir,
        ),
    }
    for name, text in texts.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
