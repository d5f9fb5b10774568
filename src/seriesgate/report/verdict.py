"""The verdict matrix: per test, per claim, and for the whole run. Pure logic, no I/O.

A functional test runs on the **baseline** (base + prerequisites) and on the **patched** build
(+ series + fixups). Each run is reduced to one :class:`Evidence`:

=========  ==========================================================================
HOLDS      PASS or WARN (a pass on retry still holds; it is reported ``flaky``)
FAILS      FAIL, or any status when the QEMU under test crashed (died on a signal)
NOT_RUN    SKIP or CANCEL: the test decided it does not apply (e.g. a trace event the
           baseline lacks), or no result at all for a build that never ran tests
UNKNOWN    ERROR without a crash, INTERRUPTED (runner timeout): the machinery, not
           the QEMU under test, may be at fault; or the test ran on one build only
=========  ==========================================================================

Per-test verdict (rows: baseline, columns: patched).

``expect:fixed-by-series`` — the claim fails or is not shown on baseline, holds on patched:

==========  ============  ============  ==========  ==========
baseline    HOLDS         FAILS         NOT_RUN     UNKNOWN
==========  ============  ============  ==========  ==========
HOLDS       not-shown     regressed     undecided*  undecided*
FAILS       confirmed     not-shown     undecided*  undecided*
NOT_RUN     confirmed     not-shown     not-run     undecided*
UNKNOWN     undecided     not-shown     undecided*  undecided*
==========  ============  ============  ==========  ==========

- HOLDS/HOLDS is ``not-shown``: the test cannot tell the builds apart, so it shows nothing
  about the series (the property already held before it).
- FAILS/FAILS (and NOT_RUN/FAILS) is ``not-shown``: the series does not make it hold.
- UNKNOWN/HOLDS is ``undecided`` but not blocking: the patched build is fine, we just cannot
  say whether the baseline lacked the property.

``expect:holds-on-both`` — an invariant, must pass on baseline and patched:

==========  ================  ==============  ==========  ==========
baseline    HOLDS             FAILS           NOT_RUN     UNKNOWN
==========  ================  ==============  ==========  ==========
HOLDS       holds-on-both     regressed       undecided*  undecided*
FAILS       fixed-on-patched  broken-on-both  undecided*  undecided*
NOT_RUN     undecided         undecided*      not-run     undecided*
UNKNOWN     undecided         undecided*      undecided*  undecided*
==========  ================  ==============  ==========  ==========

- FAILS/FAILS is ``broken-on-both``: a defect already in the baseline, a FINDING to report,
  not a regression of the series.
- FAILS/HOLDS is ``fixed-on-patched`` (not among the issue's five names; the series happens to
  cure a baseline defect — also a finding, never hidden, never gating).
- NOT_RUN|UNKNOWN/FAILS is blocking ``undecided``: the patched build breaks an invariant, and
  without the baseline we cannot tell a regression from an old defect.

``*`` marks blocking cells: the run cannot pass (exit 2) because the patched side of the test,
or the comparison, is unknown. ``not-run`` on both builds is reported and does not block.

Crashes: a crash of the patched QEMU fails the gate (exit 1) unless the same test crashed the
baseline QEMU too (then it is ``broken-on-both``: a finding).

Per-claim verdict, over the claim's tests (tests without a ``claim:`` tag gate the run the same
way but appear only in the test table): ``regressed`` if any test regressed; else ``undecided``
if any is blocking-undecided; else, when the claim has ``fixed-by-series`` tests that ran:
``confirmed`` if all of them are confirmed, otherwise ``not-shown``; else (only invariants):
``broken-on-both`` > ``fixed-on-patched`` > ``undecided`` > ``holds-on-both`` > ``not-run``.

Overall (exit code): 1 (``fail``) for any of: a conflict of a series patch, a failed patched
build, a regression, a crash of the patched QEMU. Else 2 (``undecided``) for any of: an
infrastructure error, a prerequisite or local fixup that does not apply, a failed baseline
build, functional tests that did not run, a blocking-undecided test. Else 0 (``pass``).
A decisive failure wins over "could not decide": a regression seen is a regression.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from seriesgate.errors import EXIT_GATE_FAILS, EXIT_PASS, EXIT_UNDECIDED
from seriesgate.functional.model import Direction, Status


class Evidence(StrEnum):
    """What one run of one test shows about the property it checks."""

    HOLDS = "holds"
    FAILS = "fails"
    NOT_RUN = "not-run"
    UNKNOWN = "unknown"


class ClaimVerdict(StrEnum):
    CONFIRMED = "confirmed"
    NOT_SHOWN = "not-shown"
    REGRESSED = "regressed"
    HOLDS_ON_BOTH = "holds-on-both"
    BROKEN_ON_BOTH = "broken-on-both"
    FIXED_ON_PATCHED = "fixed-on-patched"
    NOT_RUN = "not-run"
    UNDECIDED = "undecided"


class Overall(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    UNDECIDED = "undecided"


EXIT_CODES = {
    Overall.PASS: EXIT_PASS,
    Overall.FAIL: EXIT_GATE_FAILS,
    Overall.UNDECIDED: EXIT_UNDECIDED,
}

_HOLDING = {Status.PASS.value, Status.WARN.value}
_NOT_RUN = {Status.SKIP.value, Status.CANCEL.value}


def evidence(status: str | None, *, crashed: bool = False) -> Evidence:
    """Reduce one Avocado status (None: no result) to what it shows."""
    if crashed:
        return Evidence.FAILS
    if status is None:
        return Evidence.NOT_RUN
    if status in _HOLDING:
        return Evidence.HOLDS
    if status == Status.FAIL.value:
        return Evidence.FAILS
    if status in _NOT_RUN:
        return Evidence.NOT_RUN
    return Evidence.UNKNOWN  # ERROR, INTERRUPTED, anything new


H, F, N, U = Evidence.HOLDS, Evidence.FAILS, Evidence.NOT_RUN, Evidence.UNKNOWN
V = ClaimVerdict

# (baseline, patched) -> (verdict, blocking)
FIXED_BY_SERIES_TABLE: dict[tuple[Evidence, Evidence], tuple[ClaimVerdict, bool]] = {
    (H, H): (V.NOT_SHOWN, False),
    (H, F): (V.REGRESSED, False),
    (H, N): (V.UNDECIDED, True),
    (H, U): (V.UNDECIDED, True),
    (F, H): (V.CONFIRMED, False),
    (F, F): (V.NOT_SHOWN, False),
    (F, N): (V.UNDECIDED, True),
    (F, U): (V.UNDECIDED, True),
    (N, H): (V.CONFIRMED, False),
    (N, F): (V.NOT_SHOWN, False),
    (N, N): (V.NOT_RUN, False),
    (N, U): (V.UNDECIDED, True),
    (U, H): (V.UNDECIDED, False),
    (U, F): (V.NOT_SHOWN, False),
    (U, N): (V.UNDECIDED, True),
    (U, U): (V.UNDECIDED, True),
}

HOLDS_ON_BOTH_TABLE: dict[tuple[Evidence, Evidence], tuple[ClaimVerdict, bool]] = {
    (H, H): (V.HOLDS_ON_BOTH, False),
    (H, F): (V.REGRESSED, False),
    (H, N): (V.UNDECIDED, True),
    (H, U): (V.UNDECIDED, True),
    (F, H): (V.FIXED_ON_PATCHED, False),
    (F, F): (V.BROKEN_ON_BOTH, False),
    (F, N): (V.UNDECIDED, True),
    (F, U): (V.UNDECIDED, True),
    (N, H): (V.UNDECIDED, False),
    (N, F): (V.UNDECIDED, True),
    (N, N): (V.NOT_RUN, False),
    (N, U): (V.UNDECIDED, True),
    (U, H): (V.UNDECIDED, False),
    (U, F): (V.UNDECIDED, True),
    (U, N): (V.UNDECIDED, True),
    (U, U): (V.UNDECIDED, True),
}


@dataclass(frozen=True)
class RunView:
    """One test on one build, as the verdict logic needs it (from summary.json's tests)."""

    status: str | None  # None: the test has no result on this build
    crashed: bool = False
    flaky: bool = False


@dataclass(frozen=True)
class TestVerdict:
    """The verdict of one test over both builds."""

    __test__ = False  # not a pytest test class despite the name

    name: str
    claim: str | None
    direction: Direction
    baseline: Evidence
    patched: Evidence
    verdict: ClaimVerdict
    blocking: bool  # the run cannot pass while this is unknown
    crash_fails_gate: bool  # patched QEMU crashed, baseline did not
    note: str


def judge_test(
    name: str,
    claim: str | None,
    direction: Direction | str,
    baseline: RunView,
    patched: RunView,
) -> TestVerdict:
    """The verdict of one test from its runs on both builds (see the module tables)."""
    direction = Direction(direction)
    b = evidence(baseline.status, crashed=baseline.crashed)
    p = evidence(patched.status, crashed=patched.crashed)
    table = FIXED_BY_SERIES_TABLE if direction is Direction.FIXED_BY_SERIES else HOLDS_ON_BOTH_TABLE
    verdict, blocking = table[(b, p)]
    crash_fails_gate = patched.crashed and not baseline.crashed
    notes = []
    if verdict is V.NOT_SHOWN and (b, p) == (H, H):
        notes.append("holds on baseline too: the test cannot tell the builds apart")
    elif verdict is V.NOT_SHOWN:
        notes.append("does not hold on patched")
    elif verdict is V.BROKEN_ON_BOTH:
        notes.append("baseline defect (finding), not a regression of the series")
    elif verdict is V.FIXED_ON_PATCHED:
        notes.append("invariant fails on baseline only (finding)")
    if patched.crashed:
        notes.append("patched QEMU crashed" + (" (baseline too)" if baseline.crashed else ""))
    elif baseline.crashed:
        notes.append("baseline QEMU crashed")
    for build, run in (("baseline", baseline), ("patched", patched)):
        if run.flaky:
            notes.append(f"flaky on {build} (passed on retry)")
    return TestVerdict(
        name=name,
        claim=claim,
        direction=direction,
        baseline=b,
        patched=p,
        verdict=verdict,
        blocking=blocking,
        crash_fails_gate=crash_fails_gate,
        note="; ".join(notes),
    )


_INVARIANT_ORDER = (V.BROKEN_ON_BOTH, V.FIXED_ON_PATCHED, V.UNDECIDED, V.HOLDS_ON_BOTH, V.NOT_RUN)


def claim_verdict(tests: Sequence[TestVerdict]) -> ClaimVerdict:
    """The verdict of one claim over all of its tests (see the module docstring)."""
    if not tests:
        return V.NOT_RUN
    verdicts = [t.verdict for t in tests]
    if V.REGRESSED in verdicts:
        return V.REGRESSED
    if any(t.blocking for t in tests):
        return V.UNDECIDED
    fixed = [t.verdict for t in tests if t.direction is Direction.FIXED_BY_SERIES]
    fixed = [v for v in fixed if v is not V.NOT_RUN]
    if fixed:
        if all(v is V.CONFIRMED for v in fixed):
            return V.CONFIRMED
        if V.NOT_SHOWN in fixed:
            return V.NOT_SHOWN
        return V.UNDECIDED
    return next(v for v in _INVARIANT_ORDER if v in verdicts or v is V.NOT_RUN)


@dataclass(frozen=True)
class GateInputs:
    """Everything the overall verdict depends on, flattened from the stage results."""

    series_conflicts: tuple[str, ...] = ()  # "03/10 subject"
    other_conflicts: tuple[str, ...] = ()  # prerequisites, fixups
    patched_build_ok: bool | None = None  # None: build stage did not run
    baseline_build_ok: bool | None = None
    functional_ran: bool = False
    tests: tuple[TestVerdict, ...] = ()
    error: str | None = None  # infrastructure error that stopped the run


@dataclass(frozen=True)
class GateVerdict:
    result: Overall
    exit_code: int
    reasons: tuple[str, ...]  # why the gate fails
    undecided: tuple[str, ...] = field(default_factory=tuple)  # why it could not decide

    def headline(self) -> str:
        """One line: ``PASS``, ``FAIL: reason; reason`` or ``UNDECIDED: reason``."""
        why = self.reasons if self.result is Overall.FAIL else self.undecided
        word = self.result.value.upper()
        return f"{word}: {'; '.join(why)}" if why else word


def gate_verdict(inputs: GateInputs) -> GateVerdict:
    """The overall verdict and exit code (see the module docstring)."""
    fails: list[str] = []
    unsure: list[str] = []
    fails += [f"conflict: {c}" for c in inputs.series_conflicts]
    unsure += [f"does not apply (not part of the series): {c}" for c in inputs.other_conflicts]
    if inputs.patched_build_ok is False:
        fails.append("patched build fails")
    if inputs.baseline_build_ok is False:
        unsure.append("baseline build fails: nothing to compare against")
    fails += [f"regressed: {t.name}" for t in inputs.tests if t.verdict is V.REGRESSED]
    fails += [f"patched QEMU crashed: {t.name}" for t in inputs.tests if t.crash_fails_gate]
    unsure += [f"undecided: {t.name}" for t in inputs.tests if t.blocking]
    if inputs.error:
        unsure.insert(0, f"error: {inputs.error}")
    if not fails and not unsure:
        if not inputs.functional_ran:
            unsure.append("functional tests did not run")
        elif all(t.verdict is V.NOT_RUN for t in inputs.tests):
            unsure.append("no functional test ran on both builds")
    if fails:
        result = Overall.FAIL
    elif unsure:
        result = Overall.UNDECIDED
    else:
        result = Overall.PASS
    return GateVerdict(result, EXIT_CODES[result], tuple(_dedup(fails)), tuple(_dedup(unsure)))


def _dedup(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
