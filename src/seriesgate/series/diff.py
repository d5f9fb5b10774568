"""Parse unified diffs (as in git format-patch mails) into files and hunks.

Used for a patch's files and diffstat, to spot a truncated mail (a hunk that
ends before its header's line counts are met), and by the apply ladder's
per-hunk already-present test.

>>> d = parse_diff("--- a/x\\n+++ b/x\\n@@ -1,2 +1,2 @@\\n a\\n-b\\n+c\\n")
>>> [(f.path, len(f.hunks), f.added, f.removed) for f in d]
[('x', 1, 1, 1)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class DiffError(ValueError):
    """The diff text is malformed (e.g. a truncated hunk)."""


@dataclass
class Hunk:
    """One ``@@`` hunk: its lines with their ``' '``, ``'-'``, ``'+'`` markers."""

    old_start: int
    old_count: int
    new_start: int
    new_count: int
    lines: list[tuple[str, str]] = field(default_factory=list)  # (marker, text)
    header: str = ""

    @property
    def old_side(self) -> list[str]:
        """Context and removed lines: the text the hunk expects to find."""
        return [t for m, t in self.lines if m in " -"]

    @property
    def new_side(self) -> list[str]:
        """Context and added lines: the text after the hunk applied."""
        return [t for m, t in self.lines if m in " +"]

    @property
    def added(self) -> list[str]:
        return [t for m, t in self.lines if m == "+"]

    @property
    def removed(self) -> list[str]:
        return [t for m, t in self.lines if m == "-"]

    def text(self) -> str:
        """The hunk as it appears in the patch."""
        return "\n".join([self.header, *(m + t for m, t in self.lines)])


@dataclass
class FileDiff:
    """All hunks of one file in a diff."""

    old_path: str | None  # None when the file is created
    new_path: str | None  # None when the file is deleted
    hunks: list[Hunk] = field(default_factory=list)
    binary: bool = False

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or "?"

    @property
    def created(self) -> bool:
        return self.old_path is None

    @property
    def deleted(self) -> bool:
        return self.new_path is None

    @property
    def added(self) -> int:
        return sum(len(h.added) for h in self.hunks)

    @property
    def removed(self) -> int:
        return sum(len(h.removed) for h in self.hunks)


def _strip_prefix(name: str) -> str | None:
    name = name.split("\t", 1)[0].strip()
    if name == "/dev/null":
        return None
    if name.startswith(("a/", "b/")):
        return name[2:]
    return name


def parse_diff(text: str) -> list[FileDiff]:
    """Parse every file diff in ``text`` (mail text around the diff is skipped).

    Raises DiffError when a hunk is cut short (fewer lines than its header
    announces), which is what a truncated mail looks like.
    """
    files: list[FileDiff] = []
    lines = text.splitlines()
    i = 0
    current: FileDiff | None = None
    git_old: str | None = None
    git_new: str | None = None
    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git "):
            parts = line[len("diff --git ") :].split(" b/", 1)
            git_old = _strip_prefix(parts[0])
            git_new = parts[1] if len(parts) == 2 else git_old
            current = FileDiff(git_old, git_new)
            files.append(current)
            i += 1
            continue
        if line.startswith("new file mode") and current is not None:
            current.old_path = None
        elif line.startswith("deleted file mode") and current is not None:
            current.new_path = None
        elif line.startswith("Binary files ") or line == "GIT binary patch":
            if current is not None:
                current.binary = True
        elif line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            old = _strip_prefix(line[4:])
            new = _strip_prefix(lines[i + 1][4:])
            if current is None or current.hunks or git_old is None:
                current = FileDiff(old, new)
                files.append(current)
            else:
                current.old_path, current.new_path = old, new
            git_old = None
            i += 2
            continue
        elif line.startswith("@@ ") and current is not None:
            i = _parse_hunk(lines, i, current)
            continue
        i += 1
    return files


def _parse_hunk(lines: list[str], i: int, current: FileDiff) -> int:
    match = HUNK_HEADER.match(lines[i])
    if not match:
        raise DiffError(f"malformed hunk header in {current.path}: {lines[i][:80]}")
    old_count = int(match.group(2)) if match.group(2) is not None else 1
    new_count = int(match.group(4)) if match.group(4) is not None else 1
    hunk = Hunk(int(match.group(1)), old_count, int(match.group(3)), new_count, header=lines[i])
    current.hunks.append(hunk)
    i += 1
    old_seen = new_seen = 0
    while old_seen < old_count or new_seen < new_count:
        if i >= len(lines):
            raise DiffError(
                f"hunk {len(current.hunks)} of {current.path} ends after "
                f"{old_seen}/{old_count} old and {new_seen}/{new_count} new lines"
            )
        line = lines[i]
        if line.startswith("\\"):  # "\ No newline at end of file"
            i += 1
            continue
        marker, body = (line[:1], line[1:]) if line else (" ", "")
        if marker == " ":
            old_seen += 1
            new_seen += 1
        elif marker == "-":
            old_seen += 1
        elif marker == "+":
            new_seen += 1
        else:
            raise DiffError(
                f"hunk {len(current.hunks)} of {current.path} is cut short at "
                f"{old_seen}/{old_count} old and {new_seen}/{new_count} new lines"
            )
        hunk.lines.append((marker, body))
        i += 1
    return i
