"""Which failed tests to run again: only where a second attempt could change the verdict.

Pure logic, no I/O. The builds are compared with the baseline (``reference``): a test that
fails on one side only may be a flake, so the failing side runs again; a test that fails on
both builds the same way (same status, same crash signature) gives the same verdict whatever
a second attempt says on one side, so it is not retried; except a claim's test (expected
to fail on baseline, ``expect:fixed-by-series``) failing on a variant too: its retry
decides between "not shown" and "confirmed". Crashes with one signature (signal
and top frames) are retried at most once per build and signature: a signature that crashed
two or more tests of one build is reproduced already, and none of them runs again; one that
crashed a single test is retried once. Either way the signature counts as reproduced for the
rest of the run: later groups (other test-VM boots) do not retry it again.

>>> from seriesgate.functional.model import Direction, Status, TestOutcome
>>> def o(build, status, name="T.test_a"):
...     return TestOutcome(name, name, build, status, 1.0, (), None, Direction.HOLDS_ON_BOTH)
>>> [(d.build, d.retry) for d in decide([o("baseline", Status.PASS), o("patched", Status.FAIL)])]
[('baseline', False), ('patched', True)]
>>> decide([o("baseline", Status.FAIL), o("patched", Status.FAIL)])[1].note
'not retried: same on both builds'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from seriesgate.functional.bisect import crash_signature
from seriesgate.functional.model import Direction, Status, TestOutcome

REFERENCE_BUILD = "baseline"
FAILED = frozenset({Status.FAIL, Status.ERROR, Status.INTERRUPTED})


@dataclass(frozen=True)
class RetryDecision:
    """Whether one test of one build runs again, and why (the note is shown in reports)."""

    test_id: str
    build: str
    retry: bool
    note: str  # "" for a test that passed


@dataclass(frozen=True)
class ReproducedCrash:
    """A crash signature of one build seen twice: its test crashed again when retried, or
    it crashed ``tests`` (two or more) tests of the build on their first attempt."""

    build: str
    signature: tuple[str, ...]
    test: str  # short name of the (first) test it crashed
    tests: int = 1  # first-attempt tests it crashed; 1: reproduced by a retry instead

    def to_json(self) -> dict[str, Any]:
        return {
            "build": self.build,
            "signature": list(self.signature),
            "test": self.test,
            "tests": self.tests,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReproducedCrash:
        signature = tuple(str(s) for s in data["signature"])
        return cls(str(data["build"]), signature, str(data["test"]), int(data.get("tests", 1)))

    def evidence(self) -> str:
        """Why it counts as reproduced, for the note of a test not retried because of it."""
        if self.tests > 1:
            return f"which crashed {self.tests} tests of this build"
        return "which crashed again on its retry"


def _failed(o: TestOutcome | None) -> bool:
    return o is not None and (o.status in FAILED or o.crash is not None)


def _same_failure(a: TestOutcome, b: TestOutcome) -> bool:
    """Both failed alike: same status and the same crash (or no crash on either)."""
    if a.status != b.status:
        return False
    if (a.crash is None) != (b.crash is None):
        return False
    return a.crash is None or crash_signature(a) == crash_signature(b)


def _one(
    outcome: TestOutcome, peers: Sequence[TestOutcome | None], reference: str
) -> RetryDecision:
    """The decision for one failed ``outcome`` against the other builds' first results."""
    tid, build = outcome.test_id, outcome.build
    known = [p for p in peers if p is not None]
    if not known:
        return RetryDecision(tid, build, True, "retried: no other build to compare with")
    if any(not _failed(p) for p in known):
        others = ", ".join(p.build for p in known if not _failed(p))
        return RetryDecision(tid, build, True, f"retried: passes on {others}")
    if all(_same_failure(outcome, p) for p in known):
        if outcome.direction == Direction.FIXED_BY_SERIES and build != reference:
            # A claim's test is expected to fail on baseline: failing alike on a variant says
            # "not shown", a pass on the retry "confirmed (flaky)". 2026-12-07: the repaired
            # QMP-RTT test passed in one run and failed in the next on one 561 ms sample.
            return RetryDecision(tid, build, True, "retried: a claim fails as on baseline")
        return RetryDecision(tid, build, False, "not retried: same on both builds")
    return RetryDecision(tid, build, True, "retried: fails differently on the other builds")


def reproduced_crashes(outcomes: Iterable[TestOutcome]) -> list[ReproducedCrash]:
    """The crashes seen twice: a retried test (``attempts`` 2) that crashed again with a
    backtrace, not flaky; or one signature that crashed two or more tests of a build on their
    first attempt (none of them flaky). Later test groups of the same run (other test-VM
    boots) do not retry these signatures again (:func:`decide`'s ``reproduced``).

    >>> from seriesgate.functional.model import Crash, Direction, Status, TestOutcome
    >>> fr = ("#0 0x1 in f (a=1) at x.c:1",)
    >>> o = TestOutcome("A.a", "A.a", "patched", Status.ERROR, 1.0, (), None,
    ...                 Direction.HOLDS_ON_BOTH, attempts=2, crash=Crash("q", "SIGSEGV", fr))
    >>> reproduced_crashes([o])
    [ReproducedCrash(build='patched', signature=('SIGSEGV', 'f'), test='A.a', tests=1)]
    >>> from dataclasses import replace
    >>> reproduced_crashes([replace(o, attempts=1), replace(o, flaky=True)])
    []
    >>> reproduced_crashes([replace(o, attempts=1), replace(o, name="B.b", attempts=1)])
    [ReproducedCrash(build='patched', signature=('SIGSEGV', 'f'), test='A.a', tests=2)]
    """
    listed = list(outcomes)
    found: dict[tuple[str, tuple[str, ...]], ReproducedCrash] = {}
    for o in listed:
        signature = crash_signature(o)
        if o.attempts > 1 and not o.flaky and signature is not None:
            found.setdefault((o.build, signature), ReproducedCrash(o.build, signature, o.name))
    for (build, signature), names in _first_attempt_crashes(listed).items():
        if len(names) >= 2:
            found.setdefault(
                (build, signature), ReproducedCrash(build, signature, names[0], len(names))
            )
    return list(found.values())


def _first_attempt_crashes(
    outcomes: Sequence[TestOutcome],
) -> dict[tuple[str, tuple[str, ...]], list[str]]:
    """Short names of the tests per build and crash signature, first attempts only and
    flaky ones not counted (a crash that passed on its retry proves nothing)."""
    crashed: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for o in outcomes:
        sig = crash_signature(o) if _failed(o) and o.attempts == 1 and not o.flaky else None
        if sig is not None and o.name not in crashed.setdefault((o.build, sig), []):
            crashed[(o.build, sig)].append(o.name)
    return crashed


def decide(
    outcomes: Iterable[TestOutcome],
    *,
    reference: str = REFERENCE_BUILD,
    reproduced: Iterable[ReproducedCrash] = (),
) -> list[RetryDecision]:
    """One decision per outcome (test and build), in input order; a pass has ``retry``
    False and no note. The reference build (baseline) is compared with each variant; a
    variant with the reference only (patched and repaired are two answers to the same
    question, not evidence about each other). An outcome that is already a second attempt
    (``attempts`` 2: a reused baseline's retry) is not run a third time. ``reproduced``:
    crashes an earlier group's retry reproduced (:func:`reproduced_crashes`): once per
    signature holds for the whole run, not per test-VM boot.

    >>> from seriesgate.functional.model import Crash, Direction, Status, TestOutcome
    >>> fr = ("#0 0x1 in f (a=1) at x.c:1", "#1 0x2 in g () at y.c:2")
    >>> def c(name):
    ...     return TestOutcome(name, name, "patched", Status.ERROR, 1.0, (), None,
    ...                        Direction.HOLDS_ON_BOTH, crash=Crash("q", "SIGSEGV", fr))
    >>> decide([c("A.a")])[0].note
    'retried: no other build to compare with'
    >>> earlier = [ReproducedCrash("patched", ("SIGSEGV", "f", "g"), "Z.z")]
    >>> decide([c("A.a")], reproduced=earlier)[0].note
    'not retried: same crash as Z.z (SIGSEGV in f), which crashed again on its retry'

    Where one signature crashed two or more tests of a build, it is reproduced already:

    >>> baseline = [TestOutcome(n, n, "baseline", Status.PASS, 1.0, (), None,
    ...                         Direction.HOLDS_ON_BOTH) for n in ("A.a", "B.b")]
    >>> for d in decide([*baseline, c("A.a"), c("B.b")])[2:]:
    ...     print(d.retry, d.note)
    False not retried: the same crash (SIGSEGV in f) in 2 tests of this build, reproduced
    False not retried: the same crash (SIGSEGV in f) in 2 tests of this build, reproduced
    """
    listed = list(outcomes)
    by_key = {(o.test_id, o.build): o for o in listed}
    decisions: list[RetryDecision] = []
    earlier = {(r.build, r.signature): r for r in reproduced}
    crashed = _first_attempt_crashes(listed)
    for o in listed:
        if not _failed(o):
            decisions.append(RetryDecision(o.test_id, o.build, False, ""))
            continue
        if o.attempts > 1:
            decisions.append(RetryDecision(o.test_id, o.build, False, "failed twice already"))
            continue
        peers: list[TestOutcome | None]
        if o.build == reference:
            peers = [p for (t, b), p in by_key.items() if t == o.test_id and b != reference]
        else:
            peers = [by_key.get((o.test_id, reference))]
        d = _one(o, peers, reference)
        signature = crash_signature(o)
        if d.retry and signature is not None:
            key = (o.build, signature)
            where = f"{signature[0]} in {signature[1]}" if len(signature) > 1 else signature[0]
            tests = len(crashed.get(key, ()))
            if tests >= 2:
                why = f"the same crash ({where}) in {tests} tests of this build, reproduced"
                d = RetryDecision(o.test_id, o.build, False, f"not retried: {why}")
            elif key in earlier:
                seen = earlier[key]
                why = f"same crash as {seen.test} ({where}), {seen.evidence()}"
                d = RetryDecision(o.test_id, o.build, False, f"not retried: {why}")
        decisions.append(d)
    return decisions


def retry_refs(decisions: Iterable[RetryDecision], build: str) -> list[str]:
    """Avocado references of ``build``'s tests to run again (the method part anchored:
    Avocado matches it as a regex, so test_traffic would also select test_traffic_svq)."""
    return [d.test_id + "$" for d in decisions if d.build == build and d.retry]
