"""Which failed tests to run again: only where a second attempt could change the verdict.

Pure logic, no I/O. The builds are compared with the baseline (``reference``): a test that
fails on one side only may be a flake, so the failing side runs again; a test that fails on
both builds the same way (same status, same crash signature) gives the same verdict whatever
a second attempt says on one side, so it is not retried. Crashes with one signature (signal
and top frames) are retried once per build and signature: the first test stands for the
others, which say so.

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

from seriesgate.functional.bisect import crash_signature
from seriesgate.functional.model import Status, TestOutcome

REFERENCE_BUILD = "baseline"
FAILED = frozenset({Status.FAIL, Status.ERROR, Status.INTERRUPTED})


@dataclass(frozen=True)
class RetryDecision:
    """Whether one test of one build runs again, and why (the note is shown in reports)."""

    test_id: str
    build: str
    retry: bool
    note: str  # "" for a test that passed


def _failed(o: TestOutcome | None) -> bool:
    return o is not None and (o.status in FAILED or o.crash is not None)


def _same_failure(a: TestOutcome, b: TestOutcome) -> bool:
    """Both failed alike: same status and the same crash (or no crash on either)."""
    if a.status != b.status:
        return False
    if (a.crash is None) != (b.crash is None):
        return False
    return a.crash is None or crash_signature(a) == crash_signature(b)


def _one(outcome: TestOutcome, peers: Sequence[TestOutcome | None]) -> RetryDecision:
    """The decision for one failed ``outcome`` against the other builds' first results."""
    tid, build = outcome.test_id, outcome.build
    known = [p for p in peers if p is not None]
    if not known:
        return RetryDecision(tid, build, True, "retried: no other build to compare with")
    if any(not _failed(p) for p in known):
        others = ", ".join(p.build for p in known if not _failed(p))
        return RetryDecision(tid, build, True, f"retried: passes on {others}")
    if all(_same_failure(outcome, p) for p in known):
        return RetryDecision(tid, build, False, "not retried: same on both builds")
    return RetryDecision(tid, build, True, "retried: fails differently on the other builds")


def decide(
    outcomes: Iterable[TestOutcome], *, reference: str = REFERENCE_BUILD
) -> list[RetryDecision]:
    """One decision per outcome (test and build), in input order; a pass has ``retry``
    False and no note. The reference build (baseline) is compared with each variant; a
    variant with the reference only (patched and repaired are two answers to the same
    question, not evidence about each other). An outcome that is already a second attempt
    (``attempts`` 2: a reused baseline's retry) is not run a third time.

    >>> from seriesgate.functional.model import Crash, Direction, Status, TestOutcome
    >>> fr = ("#0 0x1 in f (a=1) at x.c:1", "#1 0x2 in g () at y.c:2")
    >>> def c(name):
    ...     return TestOutcome(name, name, "patched", Status.ERROR, 1.0, (), None,
    ...                        Direction.HOLDS_ON_BOTH, crash=Crash("q", "SIGSEGV", fr))
    >>> for d in decide([c("A.a"), c("B.b")]):
    ...     print(d.retry, d.note)
    True retried: no other build to compare with
    False not retried: same crash as A.a (SIGSEGV in f), retried once per signature
    """
    listed = list(outcomes)
    by_key = {(o.test_id, o.build): o for o in listed}
    decisions: list[RetryDecision] = []
    retried_signatures: dict[tuple[str, tuple[str, ...]], str] = {}
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
        d = _one(o, peers)
        signature = crash_signature(o)
        if d.retry and signature is not None:
            key = (o.build, signature)
            first = retried_signatures.get(key)
            if first is None:
                retried_signatures[key] = o.name
            else:
                where = f"{signature[0]} in {signature[1]}" if len(signature) > 1 else signature[0]
                d = RetryDecision(
                    o.test_id,
                    o.build,
                    False,
                    f"not retried: same crash as {first} ({where}), retried once per signature",
                )
        decisions.append(d)
    return decisions


def retry_refs(decisions: Iterable[RetryDecision], build: str) -> list[str]:
    """Avocado references of ``build``'s tests to run again (the method part anchored:
    Avocado matches it as a regex, so test_traffic would also select test_traffic_svq)."""
    return [d.test_id + "$" for d in decisions if d.build == build and d.retry]
