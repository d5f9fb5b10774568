"""report stage: summary.json and the reports people read (Markdown, HTML, JUnit, list reply).

Other stages call two things::

    summary = build_summary(series_set=..., tree=..., builds=..., env=..., functional=...,
                            stage_times={...}, error=None)        # seriesgate.report.summary
    paths = write_reports(summary, results_dir)                   # this module

``write_reports`` writes summary.json, report.md, report.html, junit.xml, reply.txt (and
bench.png when the summary carries bench runs) into ``out_dir``; every file is rendered from
the summary dict alone, so ``seriesgate report --from summary.json`` re-renders a finished run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REPORT_FILES = ("summary.json", "report.md", "report.html", "junit.xml", "reply.txt")
BENCH_PLOT = "bench.png"


def write_reports(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write every report for ``summary`` into ``out_dir``; return the paths written."""
    from seriesgate.report import bench_plot
    from seriesgate.report.html_report import render_html
    from seriesgate.report.junit import render_junit
    from seriesgate.report.markdown import render_markdown
    from seriesgate.report.reply import render_reply
    from seriesgate.report.summary import write_summary

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_summary(summary, out_dir / "summary.json")]
    plot: Path | None = None
    if summary.get("bench"):
        bench_plot.plot_bench(summary["bench"], out_dir / BENCH_PLOT)
        written.append(out_dir / BENCH_PLOT)
        plot = Path(BENCH_PLOT)
    texts = {
        "report.md": render_markdown(summary, plot=plot),
        "report.html": render_html(summary, plot=plot, base_dir=out_dir),
        "junit.xml": render_junit(summary),
        "reply.txt": render_reply(summary, tested_by=os.environ.get("SERIESGATE_TESTED_BY")),
    }
    for name, text in texts.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
