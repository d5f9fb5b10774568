"""Typed result of the build stage: baseline and patched QEMU binaries, per-patch builds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CompilerError:
    file: str
    line: int
    message: str


@dataclass(frozen=True)
class BuildResult:
    """One build directory at one commit."""

    name: str  # "baseline", "patched", "posted", "repaired" or "patch-03"
    commit: str
    build_dir: Path
    configure_line: tuple[str, ...]
    ok: bool
    wall_time: float
    compile_steps: int  # ninja edges actually run
    binary: Path | None  # qemu-system-x86_64 when ok
    log: Path
    errors: tuple[CompilerError, ...] = ()
    cached: bool = False  # taken from the binary store: this tree was built before


@dataclass(frozen=True)
class PatchBuild:
    index: int
    subject: str
    commit: str
    builds: bool
    errors: tuple[CompilerError, ...] = ()
    log: Path | None = None
    binary: Path | None = None  # kept per commit when it builds: bisect runs tests on it


@dataclass(frozen=True)
class CheckpatchResult:
    index: int
    subject: str
    errors: int
    warnings: int
    messages: tuple[str, ...] = ()  # "ERROR: ..." / "WARNING: ..." first lines


@dataclass(frozen=True)
class BuildSet:
    baseline: BuildResult  # base + prerequisites
    patched: BuildResult  # + series + fixups
    posted: BuildResult | None  # + series as posted, without fixups
    each_patch: tuple[PatchBuild, ...]
    checkpatch: tuple[CheckpatchResult, ...]
    firmware_dirs: tuple[Path, ...]  # pass to QEMU with -L
    build_json: Path | None = None  # out_dir/build.json
    # + series + fixups + repairs (seriesgate's own fixes, not the author's series); None when
    # the tree has no repaired commit
    repaired: BuildResult | None = None
