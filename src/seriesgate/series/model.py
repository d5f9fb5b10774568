"""Typed result of the series stage: what b4 fetched, with its prerequisites."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FileStat:
    path: str
    added: int
    removed: int


@dataclass(frozen=True)
class Patch:
    """One patch mail of a series."""

    index: int  # 1-based position in its series ("02/10" -> 2)
    total: int
    subject: str  # without the "[PATCH ...]" prefix
    message_id: str  # without angle brackets
    author: str  # "Name <email>"
    date: str  # the mail's Date: header, as posted
    files: tuple[str, ...]
    diffstat: tuple[FileStat, ...]
    trailers: tuple[tuple[str, str], ...] = ()  # (name, value), e.g. ("Signed-off-by", "...")
    mbox: Path | None = None  # this patch alone, am-ready


@dataclass(frozen=True)
class Series:
    """One posted series (cover letter + patches), as b4 produced it."""

    name: str  # filesystem-safe slug
    message_id: str  # the cover letter's (or first patch's) message-id
    version: int
    subject: str  # cover subject without the prefix
    author: str
    cover: str  # cover letter body ("" when the series has none)
    patches: tuple[Patch, ...]
    mbox: Path  # am-ready mbox of the whole series (b4 am output)
    source: str  # "mbox:/path/file.mbox" or "lore"
    based_on: tuple[str, ...] = ()  # message-ids from Based-on: lines and the manifest


@dataclass(frozen=True)
class SeriesSet:
    """The series under test and, in application order, what it depends on."""

    target: Series
    prerequisites: tuple[Series, ...] = ()
    manifest: Path | None = None  # patches/<name>/series.toml when one applied
    base: str | None = None  # base spec requested by the manifest, e.g. "debian:qemu/trixie"
    fixups: tuple[Path, ...] = field(default_factory=tuple)  # patches/<name>/fixups/*.patch
    repairs: tuple[Path, ...] = field(default_factory=tuple)  # patches/<name>/repairs/*.patch

    @property
    def all_series(self) -> tuple[Series, ...]:
        return (*self.prerequisites, self.target)
