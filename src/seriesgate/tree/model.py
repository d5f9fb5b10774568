"""Typed result of the tree stage: a git repo with base, prerequisites, series, fixups, repairs."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Verdict(StrEnum):
    CLEAN = "clean"
    THREE_WAY = "3way"
    FUZZ = "fuzz"  # rendered "fuzz(N)" with ApplyResult.fuzz
    ALREADY_PRESENT = "already-present"
    CONFLICT = "conflict"
    NOT_TRIED = "not-tried"  # after an earlier conflict


class Role(StrEnum):
    PREREQUISITE = "prerequisite"
    SERIES = "series"
    FIXUP = "fixup"  # adaptation of the series to a newer base (part of "patched")
    REPAIR = "repair"  # seriesgate's fix of the series' own defect (only in "repaired")


@dataclass(frozen=True)
class FailingHunk:
    file: str
    hunk: int  # 1-based hunk number in that file
    text: str  # the hunk, quoted


@dataclass(frozen=True)
class ApplyResult:
    role: Role
    series: str  # Series.name the patch belongs to ("fixups", "repairs" for local patches)
    index: int
    total: int
    subject: str
    message_id: str
    verdict: Verdict
    fuzz: int = 0  # max fuzz factor used (FUZZ only)
    offsets: tuple[str, ...] = ()  # "file: hunk #N at line L (offset K)"
    files: tuple[str, ...] = ()
    failing_hunks: tuple[FailingHunk, ...] = ()
    commit: str | None = None  # commit created for it (None: already present / conflict)
    evidence: str = ""  # why already-present / conflict was decided

    @property
    def label(self) -> str:
        return f"fuzz({self.fuzz})" if self.verdict is Verdict.FUZZ else str(self.verdict)


@dataclass(frozen=True)
class BaseTree:
    spec: str  # "debian:qemu/trixie", "git:URL@REF", "dir:PATH"
    version: str  # exact: Debian version, git sha, or "dir"
    source_dir: Path  # pristine unpacked source (cache)


@dataclass(frozen=True)
class AppliedTree:
    """The work tree after the apply ladder; every step is a commit."""

    base: BaseTree
    repo: Path  # git work tree
    base_commit: str  # pristine base
    baseline_commit: str  # base + prerequisites  (what "baseline" builds)
    series_commit: str  # + the series as posted
    fixup_commit: str  # + local fixups           (what "patched" builds)
    results: tuple[ApplyResult, ...]
    # + repairs (what "repaired" builds); None: the series has no repairs, or one of them
    # (or anything before them) did not apply
    repair_commit: str | None = None

    @property
    def conflict(self) -> ApplyResult | None:
        """The first patch of the series as gated (prerequisites, series, fixups) that
        does not apply; a repair that does not apply is ``repair_conflict``."""
        return next(
            (
                r
                for r in self.results
                if r.verdict is Verdict.CONFLICT and r.role is not Role.REPAIR
            ),
            None,
        )

    @property
    def repair_conflict(self) -> ApplyResult | None:
        """The first repair that does not apply (then there is no repaired tree)."""
        return next(
            (r for r in self.results if r.verdict is Verdict.CONFLICT and r.role is Role.REPAIR),
            None,
        )

    def repair_results(self) -> tuple[ApplyResult, ...]:
        return tuple(r for r in self.results if r.role is Role.REPAIR)

    def series_results(self) -> tuple[ApplyResult, ...]:
        return tuple(r for r in self.results if r.role is Role.SERIES)
