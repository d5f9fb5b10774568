"""report.md: the report blocks as GitHub/GitLab-flavoured Markdown."""

from __future__ import annotations

import re
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

_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def escape(text: str) -> str:
    """Text from a mail as literal Markdown: no markup, no HTML, one line."""
    return _INLINE_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def render_blocks(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {escape(b.text)}")
        elif isinstance(b, Para):
            out.append(f"**{escape(b.text)}**" if b.strong else escape(b.text))
        elif isinstance(b, Table):
            out.append("| " + " | ".join(escape(h) or " " for h in b.headers) + " |")
            out[-1] += "\n|" + "|".join("---" for _ in b.headers) + "|"
            for row in b.rows:
                out[-1] += "\n| " + " | ".join(escape(c) for c in row) + " |"
        elif isinstance(b, Pre):
            fence = _fence(b.text)
            out.append(f"{fence}\n{b.text.rstrip()}\n{fence}")
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {escape(i)}" for i in b.items))
        elif isinstance(b, Image):
            target = quote(Path(b.path).as_posix())
            out.append(f"![{escape(b.alt)}]({target})")
        elif isinstance(b, Links):
            out.append("\n".join(f"- [{escape(t)}]({quote(h)})" for t, h in b.items))
    return "\n\n".join(out) + "\n"


def render_markdown(
    summary: dict[str, Any],
    *,
    plot: Path | None = None,
    timelines: dict[str, Path] | None = None,
    base_dir: Path | None = None,
) -> str:
    """report.md text for a summary (``plot``, ``timelines``: PNG paths relative to the
    report; ``base_dir``: the report's directory, for links to the run's files)."""
    return render_blocks(build_document(summary, plot=plot, timelines=timelines, base_dir=base_dir))
