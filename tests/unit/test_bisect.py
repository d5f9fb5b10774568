"""The bisect search over per-patch builds (pure: the probe stands in for a test run)."""

from __future__ import annotations

from dataclasses import replace
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


def test_bisect_of_a_crash_counts_other_failures_as_good(tmp_path: Path) -> None:
    # CI dry run 12: patched crashed (SIGSEGV) while the builds of patches 6 and 7 failed
    # the same test on a counter race: the crash came with a later patch.
    from types import SimpleNamespace
    from typing import Any, cast

    from seriesgate.functional.bisect import bisect_regressions, same_failure
    from seriesgate.functional.model import Crash

    segv = Crash("qemu-system-x86_64", "SIGSEGV", ("#0 qemu_get_subqueue",))
    patched = replace(outcome("M.test", "patched", Status.FAIL), crash=segv, fail_reason="SIGSEGV")
    res = FunctionalResults(
        outcomes=(outcome("M.test", "baseline", Status.PASS), patched), job_dirs=()
    )

    def runner(binary: Path, test_id: str, env: Any, results_dir: Path, fw: Any) -> TestOutcome:
        index = int(binary.name)
        if index <= 5:
            return outcome("M.test", "probe", Status.PASS)
        if index <= 8:
            return replace(outcome("M.test", "probe", Status.FAIL), fail_reason="race")
        return replace(outcome("M.test", "probe", Status.FAIL), crash=segv)

    builds = cast(Any, SimpleNamespace(each_patch=tuple(patches(10)), firmware_dirs=()))
    found = bisect_regressions(builds, cast(Any, None), res, results_dir=tmp_path, runner=runner)
    assert found[0]["first_bad_patch_index"] == 9
    assert found[0]["evidence"]["failed_differently"]  # the race was seen and said so
    assert all(d["index"] in (6, 7, 8) for d in found[0]["evidence"]["failed_differently"])
    # Without a crash on patched, any failure is the regression.
    plain = outcome("M.test", "patched", Status.FAIL)
    assert same_failure(plain, outcome("M.test", "probe", Status.ERROR))
    assert not same_failure(patched, outcome("M.test", "probe", Status.FAIL))


def test_tests_crashing_in_the_same_place_are_bisected_once(tmp_path: Path) -> None:
    """Dry run 13: every patched migration test crashed in virtio_net_load_setup; one bisect
    answers for all of them, a different crash or failure is bisected on its own."""
    from types import SimpleNamespace
    from typing import Any, cast

    from seriesgate.functional.bisect import bisect_regressions
    from seriesgate.functional.model import Crash

    def segv(address: str) -> Crash:  # the same code path, other addresses per process
        return Crash(
            "q",
            "SIGSEGV",
            (
                f"#0  {address} in qemu_get_subqueue (nic=0x0) at ../src/net/net.c:355",
                f"#1  {address} in virtio_net_load_setup (f=<optimized out>) at v.c:4038",
            ),
        )

    other = Crash("q", "SIGABRT", ("#0  0x1 in abort ()",))
    names = {"A.test": segv("0x55c4"), "B.test": segv("0x5644"), "C.test": other, "D.test": None}
    outcomes: list[TestOutcome] = []
    for name, crash in names.items():
        outcomes.append(outcome(name, "baseline", Status.PASS))
        outcomes.append(replace(outcome(name, "patched", Status.FAIL), crash=crash))
    probed: list[str] = []

    def runner(binary: Path, test_id: str, env: Any, results_dir: Path, fw: Any) -> TestOutcome:
        name = test_id.rsplit(":", 1)[-1]
        probed.append(name)
        crash = names[name] if int(binary.name) >= 10 else None
        status = Status.FAIL if crash or (name == "D.test" and int(binary.name) >= 3) else None
        return replace(outcome(name, "probe", status or Status.PASS), crash=crash)

    builds = cast(Any, SimpleNamespace(each_patch=tuple(patches(10)), firmware_dirs=()))
    res = FunctionalResults(outcomes=tuple(outcomes), job_dirs=())
    found = {
        f["test"]: f
        for f in bisect_regressions(
            builds, cast(Any, None), res, results_dir=tmp_path, runner=runner
        )
    }
    assert found["A.test"]["first_bad_patch_index"] == 10
    assert found["B.test"]["first_bad_patch_index"] == 10
    assert found["B.test"]["evidence"]["same_crash_as"] == "A.test"
    assert (
        found["C.test"]["first_bad_patch_index"] == 10 and "probes" in found["C.test"]["evidence"]
    )
    assert found["D.test"]["first_bad_patch_index"] == 3
    assert "B.test" not in probed and {"A.test", "C.test", "D.test"} <= set(probed)
