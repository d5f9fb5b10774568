"""Typed result of the functional stage: Avocado outcomes per test and build.

Conventions every functional test follows (so the report can build the verdict matrix):

- Avocado tags (``:avocado: tags=``): tier ``quick``/``core``/``slow``, areas (``vdpa``,
  ``svq``, ``cvq``, ``migration``, ``ordering``), the series claim checked (``claim:<name>``, e.g.
  ``claim:status-bits``, ``claim:svq-iova-tree``, ``claim:map-at-load-setup``,
  ``claim:map-in-thread``) and the expected direction (``expect:<Direction value>``).
- A test writes what it measured to ``measurements.json`` in its Avocado ``outputdir``
  (flat JSON object: numbers, strings, lists), so reports show numbers, not just PASS/FAIL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Direction(StrEnum):
    """What a test is expected to show, baseline versus patched."""

    HOLDS_ON_BOTH = "holds-on-both"  # an invariant: must pass on baseline and patched
    FIXED_BY_SERIES = "fixed-by-series"  # fails or is not shown on baseline, holds on patched


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    SKIP = "SKIP"
    CANCEL = "CANCEL"
    INTERRUPTED = "INTERRUPTED"
    WARN = "WARN"


@dataclass(frozen=True)
class Crash:
    """The QEMU under test died on a signal."""

    binary: str
    signal: str  # "SIGSEGV"
    frames: tuple[str, ...] = ()  # top backtrace frames, when gdb/core gave them
    log: Path | None = None


@dataclass(frozen=True)
class TestOutcome:
    __test__ = False  # not a pytest test class, whatever its name

    test_id: str  # Avocado id, e.g. "tests/functional/test_boot.py:BootTraffic.test_traffic"
    name: str  # short name: "BootTraffic.test_traffic"
    build: str  # "baseline" | "patched"
    status: Status
    time: float
    tags: tuple[str, ...]
    claim: str | None  # from "claim:..." tag
    direction: Direction  # from "expect:..." tag (default HOLDS_ON_BOTH)
    fail_reason: str = ""
    logdir: Path | None = None
    attempts: int = 1  # 2 when retried
    flaky: bool = False  # failed, then passed on retry
    retry_note: str = ""  # why a failure was (not) retried ("not retried: same on both builds")
    measurements: dict[str, Any] = field(default_factory=dict)
    crash: Crash | None = None


@dataclass(frozen=True)
class FunctionalResults:
    outcomes: tuple[TestOutcome, ...]
    job_dirs: tuple[Path, ...]  # Avocado job result directories
    env: dict[str, Any] = field(default_factory=dict)  # testenv facts for the report
