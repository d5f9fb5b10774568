"""The bisect search over per-patch builds (pure: the probe stands in for a test run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from seriesgate.build.model import PatchBuild
from seriesgate.functional.bisect import first_bad, regressions
from seriesgate.functional.model import Direction, FunctionalResults, Status, TestOutcome


def patches(n: int, unbuilt: tuple[int, ...] = ()) -> list[PatchBuild]:
    return [
        PatchBuild(i, f"patch {i}", f"c{i}", i not in unbuilt,
                   binary=None if i in unbuilt else Path(f"/b/{i}"))
        for i in range(1, n + 1)
    ]  # fmt: skip


@pytest.mark.parametrize("bad_from", range(1, 11))
def test_finds_first_bad_with_log_probes(bad_from: int) -> None:
    calls: list[int] = []

    def probe(p: PatchBuild) -> tuple[bool, str]:
        calls.append(p.index)
        return p.index < bad_from, ""

    result = first_bad(patches(10), probe)
    assert result.first_bad == bad_from
    assert result.last_good == bad_from - 1
    assert len(calls) <= 4  # ceil(log2(11))
    assert result.skipped == []


def test_only_the_full_series_fails() -> None:
    # Every per-patch build passes: the failure needs something only "patched" has (fixups).
    result = first_bad(patches(4), lambda p: (True, ""))
    assert result.first_bad is None
    assert result.last_good == 4


def test_unbuilt_patches_make_a_range() -> None:
    # Patch 5 does not build; the test fails from 5 on: first probed bad is 6, range 5..6.
    result = first_bad(patches(8, unbuilt=(5,)), lambda p: (p.index < 5, ""))
    assert result.last_good == 4
    assert result.first_bad == 6
    assert result.skipped == [5]


def outcome(test: str, build: str, status: Status) -> TestOutcome:
    return TestOutcome(
        test_id=f"tests/functional/t.py:{test}", name=test, build=build, status=status,
        time=1.0, tags=(), claim=None, direction=Direction.HOLDS_ON_BOTH,
    )  # fmt: skip


def test_regressions_are_pass_then_fail() -> None:
    res = FunctionalResults(
        outcomes=(
            outcome("A.test", "baseline", Status.PASS),
            outcome("A.test", "patched", Status.FAIL),
            outcome("B.test", "baseline", Status.FAIL),
            outcome("B.test", "patched", Status.FAIL),
            outcome("C.test", "baseline", Status.PASS),
            outcome("C.test", "patched", Status.PASS),
            outcome("D.test", "baseline", Status.PASS),
            outcome("D.test", "patched", Status.ERROR),
        ),
        job_dirs=(),
    )
    assert [o.name for o in regressions(res)] == ["A.test", "D.test"]
