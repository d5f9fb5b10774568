"""report.html: the report blocks as one static, self-contained page (opens from disk).

Every text comes from mail or logs, so every text is escaped; the bench plot and the migration
timelines are embedded as data: URIs so the file can be copied alone (links to the run's logs,
e.g. the full gdb output of a crash, are relative to the results directory). The headline is
``#headline``, each crash signature a ``p.crash``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any
from urllib.parse import quote

from seriesgate.report.document import (
    Block,
    Bullets,
    Heading,
    Image,
    Links,
    Para,
    Pre,
    Table,
    build_document,
)

_VERDICT_CLASS = {
    "pass": "ok",
    "fail": "bad",
    "undecided": "warn",
    "confirmed": "ok",
    "holds-on-both": "ok",
    "regressed": "bad",
    "broken-on-both": "warn",
    "not-shown": "warn",
    "fixed-on-patched": "warn",
    "conflict": "bad",
    "NO": "bad",
}

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:78em;color:#222;padding:0 1em}
h1{font-size:1.4em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f3f3f3}pre{background:#f7f7f7;border:1px solid #ddd;padding:.6em;
overflow:auto;max-height:30em;font-size:.85em}
.ok{background:#e3f5e1}.bad{background:#fbe0e0}.warn{background:#fff4d6}
.banner{padding:.6em 1em;font-size:1.15em;border:1px solid #bbb}
.crash{background:#fbe0e0;padding:.3em .6em;border-left:4px solid #c33}
"""


def _cell(text: str, tag: str = "td") -> str:
    cls = _VERDICT_CLASS.get(text) or _VERDICT_CLASS.get(text.split(" ", 1)[0])
    attr = f' class="{cls}"' if cls else ""
    return f"<{tag}{attr}>{html.escape(text)}</{tag}>"


def _image(path: Path, alt: str, base_dir: Path | None) -> str:
    full = path if path.is_absolute() or base_dir is None else base_dir / path
    try:
        data = base64.b64encode(full.read_bytes()).decode("ascii")
    except OSError:
        return f"<p>(plot missing: {html.escape(str(path))})</p>"
    return (
        f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'
    )


def render_blocks(
    blocks: list[Block], *, title: str, verdict: str, base_dir: Path | None = None
) -> str:
    body: list[str] = []
    for i, b in enumerate(blocks):
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            if b.kind == "headline" or (b.strong and i == 1):
                cls = _VERDICT_CLASS.get(verdict, "warn")
                body.append(
                    f'<p class="banner {cls}" id="headline"><b>{html.escape(b.text)}</b></p>'
                )
            elif b.kind:
                body.append(f'<p class="{html.escape(b.kind)}"><b>{html.escape(b.text)}</b></p>')
            elif b.strong:
                body.append(f"<p><b>{html.escape(b.text)}</b></p>")
            else:
                body.append(f"<p>{html.escape(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(_cell(h, "th") for h in b.headers)
            rows = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif isinstance(b, Pre):
            body.append(f"<pre>{html.escape(b.text)}</pre>")
        elif isinstance(b, Bullets):
            items = "".join(f"<li>{html.escape(i)}</li>" for i in b.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(b, Image):
            body.append(_image(b.path, b.alt, base_dir))
        elif isinstance(b, Links):
            items = "".join(
                f'<li><a href="{html.escape(quote(target))}">{html.escape(text)}</a></li>'
                for text, target in b.items
            )
            body.append(f"<ul>{items}</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def render_html(
    summary: dict[str, Any],
    *,
    plot: Path | None = None,
    base_dir: Path | None = None,
    timelines: dict[str, Path] | None = None,
) -> str:
    """report.html text; ``plot`` and ``timelines`` (relative to ``base_dir``) are embedded
    when they exist."""
    blocks = build_document(summary, plot=plot, timelines=timelines, base_dir=base_dir)
    title = f"seriesgate {summary['overall']['verdict'].upper()}: {summary['series']['subject']}"
    return render_blocks(
        blocks, title=title, verdict=summary["overall"]["verdict"], base_dir=base_dir
    )
