"""The verdict matrix: every cell of both direction tables, claims, and the overall gate."""

from __future__ import annotations

import pytest

from seriesgate.functional.model import Direction
from seriesgate.report.verdict import (
    ClaimVerdict,
    Evidence,
    GateInputs,
    Overall,
    RunView,
    claim_verdict,
    evidence,
    gate_verdict,
    judge_test,
)

# One status that produces each kind of evidence ("crash" = FAIL status + crashed QEMU).
STATUS = {"holds": "PASS", "fails": "FAIL", "not-run": "CANCEL", "unknown": "ERROR"}

# (baseline, patched) -> verdict, blocking; written out independently of the implementation.
FIXED = """
holds   holds   not-shown        no
holds   fails   regressed        no
holds   not-run undecided        yes
holds   unknown undecided        yes
fails   holds   confirmed        no
fails   fails   not-shown        no
fails   not-run undecided        yes
fails   unknown undecided        yes
not-run holds   confirmed        no
not-run fails   not-shown        no
not-run not-run not-run          no
not-run unknown undecided        yes
unknown holds   undecided        no
unknown fails   not-shown        no
unknown not-run undecided        yes
unknown unknown undecided        yes
"""
INVARIANT = """
holds   holds   holds-on-both    no
holds   fails   regressed        no
holds   not-run undecided        yes
holds   unknown undecided        yes
fails   holds   fixed-on-patched no
fails   fails   broken-on-both   no
fails   not-run undecided        yes
fails   unknown undecided        yes
not-run holds   undecided        no
not-run fails   undecided        yes
not-run not-run not-run          no
not-run unknown undecided        yes
unknown holds   undecided        no
unknown fails   undecided        yes
unknown not-run undecided        yes
unknown unknown undecided        yes
"""


def _cells(table: str, direction: Direction) -> list[tuple[Direction, str, str, str, bool]]:
    rows = []
    for line in table.strip().splitlines():
        b, p, verdict, blocking = line.split()
        rows.append((direction, b, p, verdict, blocking == "yes"))
    return rows


CELLS = _cells(FIXED, Direction.FIXED_BY_SERIES) + _cells(INVARIANT, Direction.HOLDS_ON_BOTH)


@pytest.mark.parametrize(("direction", "b", "p", "expected", "blocking"), CELLS)
def test_every_cell(direction: Direction, b: str, p: str, expected: str, blocking: bool) -> None:
    tv = judge_test("T.t", "c", direction, RunView(STATUS[b]), RunView(STATUS[p]))
    assert (tv.baseline.value, tv.patched.value) == (b, p)
    assert tv.verdict.value == expected
    assert tv.blocking is blocking
    assert tv.crash_fails_gate is False


def test_tables_cover_all_sixteen_cells_each() -> None:
    assert len({(d, b, p) for d, b, p, _, _ in CELLS}) == 32


@pytest.mark.parametrize(
    ("status", "crashed", "expected"),
    [
        ("PASS", False, Evidence.HOLDS),
        ("WARN", False, Evidence.HOLDS),
        ("FAIL", False, Evidence.FAILS),
        ("SKIP", False, Evidence.NOT_RUN),
        ("CANCEL", False, Evidence.NOT_RUN),
        (None, False, Evidence.NOT_RUN),
        ("ERROR", False, Evidence.UNKNOWN),
        ("INTERRUPTED", False, Evidence.UNKNOWN),
        ("ERROR", True, Evidence.FAILS),
        ("PASS", True, Evidence.FAILS),
    ],
)
def test_evidence(status: str | None, crashed: bool, expected: Evidence) -> None:
    assert evidence(status, crashed=crashed) is expected


def test_patched_crash_fails_gate_even_when_fixed_test_was_failing_on_baseline() -> None:
    tv = judge_test(
        "T.t",
        None,
        Direction.FIXED_BY_SERIES,
        RunView("FAIL"),
        RunView("ERROR", crashed=True),
    )
    assert tv.verdict is ClaimVerdict.NOT_SHOWN
    assert tv.crash_fails_gate
    gate = gate_verdict(GateInputs(functional_ran=True, tests=(tv,)))
    assert gate.result is Overall.FAIL and gate.exit_code == 1
    assert "patched QEMU crashed: T.t" in gate.reasons


def test_crash_on_both_builds_is_a_finding_not_a_gate_failure() -> None:
    tv = judge_test(
        "T.t",
        None,
        Direction.HOLDS_ON_BOTH,
        RunView("ERROR", crashed=True),
        RunView("ERROR", crashed=True),
    )
    assert tv.verdict is ClaimVerdict.BROKEN_ON_BOTH
    assert not tv.crash_fails_gate
    assert gate_verdict(GateInputs(functional_ran=True, tests=(tv,))).exit_code == 0


def test_flaky_is_reported_in_the_note() -> None:
    tv = judge_test(
        "T.t", None, Direction.HOLDS_ON_BOTH, RunView("PASS"), RunView("PASS", flaky=True)
    )
    assert tv.verdict is ClaimVerdict.HOLDS_ON_BOTH
    assert "flaky on patched" in tv.note


def _tv(direction: Direction, b: str, p: str, name: str = "T.t") -> object:
    return judge_test(name, "c", direction, RunView(STATUS[b]), RunView(STATUS[p]))


FX, INV = Direction.FIXED_BY_SERIES, Direction.HOLDS_ON_BOTH


@pytest.mark.parametrize(
    ("tests", "expected"),
    [
        ([(FX, "fails", "holds"), (INV, "holds", "holds")], "confirmed"),
        ([(FX, "fails", "holds"), (FX, "holds", "holds")], "not-shown"),
        ([(FX, "fails", "holds"), (FX, "not-run", "not-run")], "confirmed"),
        ([(FX, "fails", "holds"), (INV, "holds", "fails")], "regressed"),
        ([(FX, "fails", "holds"), (INV, "holds", "unknown")], "undecided"),
        ([(FX, "fails", "holds"), (FX, "unknown", "holds")], "undecided"),
        ([(FX, "fails", "holds"), (INV, "fails", "fails")], "confirmed"),
        ([(INV, "holds", "holds"), (INV, "fails", "fails")], "broken-on-both"),
        ([(INV, "holds", "holds"), (INV, "fails", "holds")], "fixed-on-patched"),
        ([(INV, "holds", "holds"), (INV, "not-run", "not-run")], "holds-on-both"),
        ([(INV, "not-run", "not-run")], "not-run"),
        ([(FX, "not-run", "not-run")], "not-run"),
        ([], "not-run"),
    ],
)
def test_claim_aggregation(tests: list[tuple[Direction, str, str]], expected: str) -> None:
    verdicts = [_tv(d, b, p, f"T.t{i}") for i, (d, b, p) in enumerate(tests)]
    assert claim_verdict(verdicts).value == expected  # type: ignore[arg-type]


def test_gate_pass() -> None:
    tv = judge_test("T.t", "c", FX, RunView("FAIL"), RunView("PASS"))
    g = gate_verdict(
        GateInputs(patched_build_ok=True, baseline_build_ok=True, functional_ran=True, tests=(tv,))
    )
    assert (g.result, g.exit_code, g.reasons, g.undecided) == (Overall.PASS, 0, (), ())
    assert g.headline() == "PASS"


@pytest.mark.parametrize(
    ("inputs", "code", "word"),
    [
        (GateInputs(series_conflicts=("03/10 x",)), 1, "conflict: 03/10 x"),
        (GateInputs(patched_build_ok=False, baseline_build_ok=True), 1, "patched build fails"),
        (GateInputs(baseline_build_ok=False, patched_build_ok=True), 2, "baseline build fails"),
        (GateInputs(other_conflicts=("prereq 01/13 y",)), 2, "not part of the series"),
        (GateInputs(patched_build_ok=True, baseline_build_ok=True), 2, "did not run"),
        (GateInputs(functional_ran=True), 2, "no functional test ran"),
        (GateInputs(functional_ran=True, error="test VM failed to boot"), 2, "test VM"),
    ],
)
def test_gate_fail_and_undecided(inputs: GateInputs, code: int, word: str) -> None:
    g = gate_verdict(inputs)
    assert g.exit_code == code
    assert word in g.headline()


def test_regression_wins_over_undecided_and_error() -> None:
    reg = judge_test("A.a", None, INV, RunView("PASS"), RunView("FAIL"))
    unk = judge_test("B.b", None, INV, RunView("PASS"), RunView("ERROR"))
    g = gate_verdict(GateInputs(functional_ran=True, tests=(reg, unk), error="interrupted"))
    assert g.result is Overall.FAIL and g.exit_code == 1
    assert g.reasons == ("regressed: A.a",)
    assert "undecided: B.b" in g.undecided and g.undecided[0] == "error: interrupted"


def test_blocking_undecided_makes_run_undecided() -> None:
    ok = judge_test("A.a", None, INV, RunView("PASS"), RunView("PASS"))
    unk = judge_test("B.b", None, INV, RunView("PASS"), RunView("INTERRUPTED"))
    g = gate_verdict(GateInputs(functional_ran=True, tests=(ok, unk)))
    assert (g.result, g.exit_code) == (Overall.UNDECIDED, 2)
    assert g.headline() == "UNDECIDED: undecided: B.b"


def test_non_blocking_undecided_does_not_stop_a_pass() -> None:
    tv = judge_test("A.a", "c", FX, RunView("ERROR"), RunView("PASS"))
    assert tv.verdict is ClaimVerdict.UNDECIDED and not tv.blocking
    assert gate_verdict(GateInputs(functional_ran=True, tests=(tv,))).exit_code == 0
