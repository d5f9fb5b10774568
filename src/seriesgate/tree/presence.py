"""Is a patch already in the tree? A per-hunk test that survives later upstream changes.

A strict reverse-apply of a whole patch fails as soon as one hunk's context
changed after the patch was merged. Instead each hunk is judged on its own:

- **present (exact)**: the hunk's post-image (context + added lines) appears
  verbatim in the file;
- **absent**: the hunk's pre-image (context + removed lines) appears verbatim
  (the patch would still apply there), or the file does not exist;
- **present (moved on)**: every significant added line is in the file and
  the significant removed lines are mostly (> 50 %) gone — the change is
  there, but code around it changed later upstream;
- **present (weak)**: the pre-image is gone and the hunk's lines were all
  changed again by a later patch of the same series ("superseded"), or it only
  removes lines its patch moves elsewhere ("moved");
- otherwise **absent**.

Lines judged "added" skip those a later patch of the same series removes
again; lines judged "removed" skip those the same patch (or a later one of
its series) adds back elsewhere: merged series rework their own code.
"Significant" lines carry at least 4 non-blank characters including a letter
or digit (``}``, ``});`` or a blank line prove nothing).

THRESHOLD: a patch is already present when at least ``PRESENT_THRESHOLD``
(75 %) of its hunks are present and at least one of them is present by its
own lines (exact or moved on, not only weak). A patch that was never applied
has (nearly) no hunk present — its pre-images are still there; a merged patch
whose surroundings moved on later keeps most of them. On Debian's QEMU
10.0.13 the merged prerequisite's patches score 80-100 %, the unmerged RFC
patches 0 %.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from seriesgate.series.diff import FileDiff, Hunk

PRESENT_THRESHOLD = 0.75
# Present, but only by the absence of counter-evidence; a patch needs one stronger hunk.
WEAK = frozenset({"superseded", "moved"})
SIGNIFICANT = re.compile(r"[A-Za-z0-9_]")


@dataclass(frozen=True)
class HunkPresence:
    file: str
    hunk: int  # 1-based within its file
    present: bool
    how: str  # "exact", "moved-on", "pre-image found", "file absent", "added lines missing", ...


@dataclass(frozen=True)
class PatchPresence:
    hunks: tuple[HunkPresence, ...]

    @property
    def present(self) -> int:
        return sum(1 for h in self.hunks if h.present)

    @property
    def exact(self) -> int:
        return sum(1 for h in self.hunks if h.how == "exact")

    @property
    def strong(self) -> int:
        """Hunks with positive evidence of their own (not only superseded)."""
        return sum(1 for h in self.hunks if h.present and h.how not in WEAK)

    @property
    def already_present(self) -> bool:
        total = len(self.hunks)
        return total > 0 and self.strong > 0 and self.present >= PRESENT_THRESHOLD * total

    def summary(self) -> str:
        """E.g. ``12/14 hunks present (10 exact, 2 changed later); not present: ...``."""
        total = len(self.hunks)
        moved = sum(1 for h in self.hunks if h.how == "moved-on")
        weak = sum(1 for h in self.hunks if h.how in WEAK)
        parts = [f"{self.exact} exact", f"{moved} context changed later"]
        if weak:
            parts.append(f"{weak} changed again by a later patch of the series")
        text = f"{self.present}/{total} hunks present ({', '.join(parts)})"
        missing = [h for h in self.hunks if not h.present]
        if missing:
            shown = "; ".join(f"{h.file} hunk {h.hunk}: {h.how}" for h in missing[:3])
            more = f"; +{len(missing) - 3} more" if len(missing) > 3 else ""
            text += f"; not present: {shown}{more}"
        return text


def _norm(lines: list[str]) -> list[str]:
    return [line.rstrip() for line in lines]


def _contains(haystack: list[str], needle: list[str]) -> bool:
    """Is ``needle`` a contiguous run of ``haystack``?"""
    if not needle:
        return True
    first = needle[0]
    size = len(needle)
    for start, line in enumerate(haystack):
        if line == first and haystack[start : start + size] == needle:
            return True
    return False


def _significant(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= 4 and bool(SIGNIFICANT.search(stripped))


@dataclass(frozen=True)
class SeriesContext:
    """What the other patches of the same series do, so a hunk is judged fairly.

    A line one patch adds may be changed again by a later patch of its own
    series (merged series change their own code as they go), and a line a
    patch removes may be moved elsewhere by the same patch or added back later.
    """

    moved_in_patch: frozenset[str] = frozenset()  # significant lines this patch also adds
    removed_later: frozenset[str] = frozenset()  # removed by a later patch of the series
    added_later: frozenset[str] = frozenset()  # added by a later patch of the series


def significant_lines(lines: list[str]) -> frozenset[str]:
    return frozenset(line.strip() for line in lines if _significant(line))


def hunk_presence(
    file_lines: list[str] | None, hunk: Hunk, context: SeriesContext | None = None
) -> tuple[bool, str]:
    """Decide one hunk against the current file content (None: file absent)."""
    ctx = context or SeriesContext()
    new_side = _norm(hunk.new_side)
    old_side = _norm(hunk.old_side)
    if file_lines is None:
        return (not new_side, "file deleted" if not new_side else "file absent")
    lines = _norm(file_lines)
    if new_side and _contains(lines, new_side):
        return True, "exact"
    if old_side and _contains(lines, old_side):
        return False, "pre-image found (would still apply)"
    stripped = {line.strip() for line in lines}
    added = [a.strip() for a in hunk.added if _significant(a)]
    surviving = [a for a in added if a not in ctx.removed_later]
    removed = [
        r.strip()
        for r in hunk.removed
        if _significant(r)
        and r.strip() not in ctx.moved_in_patch
        and r.strip() not in ctx.added_later
        and r.strip() not in added
    ]
    missing = [a for a in surviving if a not in stripped]
    if missing:
        return False, f"{len(missing)}/{len(surviving)} added lines missing"
    still = [r for r in removed if r in stripped]
    if removed and len(still) * 2 > len(removed):
        return False, f"{len(still)}/{len(removed)} removed lines still there"
    if surviving or removed:
        return True, "moved-on"
    if added:
        return True, "superseded"  # every added line was changed again later in its series
    if any(_significant(r) for r in hunk.removed):
        return True, "moved"  # it only removes lines this patch (or a later one) puts elsewhere
    return False, "no significant lines to judge"


def patch_presence(
    repo: Path, files: list[FileDiff], context: SeriesContext | None = None
) -> PatchPresence:
    """Judge every hunk of a patch against the work tree at ``repo``."""
    ctx = context or SeriesContext()
    ctx = SeriesContext(
        moved_in_patch=significant_lines([a for f in files for h in f.hunks for a in h.added]),
        removed_later=ctx.removed_later,
        added_later=ctx.added_later,
    )
    results: list[HunkPresence] = []
    for diff in files:
        if diff.binary:
            continue
        path = repo / diff.path
        if diff.deleted and diff.old_path is not None:
            path = repo / diff.old_path
            gone = not path.exists()
            results.append(
                HunkPresence(diff.path, 1, gone, "file deleted" if gone else "file kept")
            )
            continue
        content: list[str] | None = None
        if path.is_file():
            content = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for number, hunk in enumerate(diff.hunks, 1):
            present, how = hunk_presence(content, hunk, ctx)
            results.append(HunkPresence(diff.path, number, present, how))
    return PatchPresence(tuple(results))
