"""Bisect a regression over the series: which patch first makes a test fail?

For every test that passed on baseline and failed on patched, run it against the per-patch
builds (``BuildSet.each_patch[i].binary``: base + prerequisites + patches 1..i) with a binary
search, as ``git bisect`` would: baseline is *good*, patched is *bad*. Patches that did not
build are skipped (the answer is then a range, said so in the evidence).

The search itself (:func:`first_bad`) is pure: it takes a ``probe(index) -> bool`` ("does the
test pass with patches 1..index?"), so it is unit-tested without QEMU. Running a test on an
explicit binary goes through the functional runner.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from seriesgate import progress
from seriesgate.build.model import BuildSet, PatchBuild
from seriesgate.functional.model import FunctionalResults, Status, TestOutcome
from seriesgate.testenv.model import TestEnv


@dataclass
class BisectResult:
    """Where the test first fails, and what was run to find out."""

    first_bad: int | None  # patch index (1-based, as in PatchBuild.index); None: not found
    last_good: int  # 0: baseline
    skipped: list[int] = field(default_factory=list)  # patches without a binary in (good, bad]
    probes: list[dict[str, Any]] = field(default_factory=list)  # index, passed, reason


def first_bad(
    patches: Sequence[PatchBuild], probe: Callable[[PatchBuild], tuple[bool, str]]
) -> BisectResult:
    """Binary search for the first patch at which ``probe`` fails.

    ``patches`` in series order; ``probe(p)`` returns (passed, reason) for the build with
    patches 1..p.index. Baseline (index 0) is taken as good, the full series as bad. Patches
    without a binary cannot be probed: if the boundary falls next to them, ``skipped`` lists
    them and ``first_bad`` is the first probed bad patch (the regression is in the range
    ``last_good+1 .. first_bad``).

    >>> ps = [PatchBuild(i, f"p{i}", "c", True, binary=Path(f"/b{i}")) for i in range(1, 6)]
    >>> r = first_bad(ps, lambda p: (p.index < 4, ""))
    >>> (r.last_good, r.first_bad, [x["index"] for x in r.probes])
    (3, 4, [3, 4])
    """
    usable = [p for p in patches if p.binary is not None]
    lo, hi = -1, len(usable)  # usable[lo] good (or baseline), usable[hi] bad (or patched)
    probes: list[dict[str, Any]] = []
    while hi - lo > 1:
        mid = (lo + hi) // 2
        passed, reason = probe(usable[mid])
        probes.append({"index": usable[mid].index, "passed": passed, "reason": reason})
        if passed:
            lo = mid
        else:
            hi = mid
    last_good = usable[lo].index if lo >= 0 else 0
    bad = usable[hi].index if hi < len(usable) else None
    upper = bad if bad is not None else (patches[-1].index if patches else 0)
    skipped = [p.index for p in patches if p.binary is None and last_good < p.index <= upper]
    if bad is None and patches and patches[-1].binary is None:
        bad = None  # the last patches did not build: the regression is in the skipped range
    return BisectResult(first_bad=bad, last_good=last_good, skipped=skipped, probes=probes)


def same_failure(patched: TestOutcome, probe: TestOutcome) -> bool:
    """Whether ``probe`` fails the way ``patched`` does: on the same signal when patched
    crashed, any FAIL/ERROR otherwise.

    Why: a per-patch build can fail a test for another reason than the full series (a
    race, an intermediate state of the series); bisecting a crash should find the patch
    that brings the crash, and say where other failures were seen.
    """
    if probe.status not in (Status.FAIL, Status.ERROR):
        return False
    if patched.crash is not None:
        return probe.crash is not None and probe.crash.signal == patched.crash.signal
    return True


_FRAME_FUNCTION = re.compile(r"^#\d+\s+(?:0x[0-9a-f]+ in )?([\w:~<>]+)")


def crash_signature(outcome: TestOutcome, depth: int = 3) -> tuple[str, ...] | None:
    """A crash's signal and top function names (addresses and arguments vary per process);
    None without a crash or without a backtrace.

    >>> from seriesgate.functional.model import Crash, Direction
    >>> frames = ("#0  0x000055c4c29a20ba in qemu_get_subqueue (nic=0x0) at net.c:355",
    ...           "#1  0x000055c4c2a8af82 in virtio_net_load_setup (f=<optimized out>) at x.c:1",
    ...           "#2  qemu_loadvm_state (f=0x55c4ff04e000) at savevm.c:3083")
    >>> o = TestOutcome("t", "t", "patched", Status.ERROR, 1.0, (), None,
    ...                 Direction.HOLDS_ON_BOTH, crash=Crash("q", "SIGSEGV", frames))
    >>> crash_signature(o)
    ('SIGSEGV', 'qemu_get_subqueue', 'virtio_net_load_setup', 'qemu_loadvm_state')
    """
    if outcome.crash is None:
        return None
    names = [m.group(1) for f in outcome.crash.frames if (m := _FRAME_FUNCTION.match(f))]
    if not names:
        return None  # no backtrace: a signal alone does not say where
    return (outcome.crash.signal, *names[:depth])


class SingleTestRunner(Protocol):
    """Runs one functional test (by Avocado id) on one QEMU binary; its outcome."""

    def __call__(
        self, binary: Path, test_id: str, env: TestEnv, results_dir: Path, firmware: Sequence[Path]
    ) -> TestOutcome: ...


def _default_runner(
    binary: Path, test_id: str, env: TestEnv, results_dir: Path, firmware: Sequence[Path]
) -> TestOutcome:
    """One test on ``binary`` inside the test environment (the functional runner's probe)."""
    from seriesgate.functional.runner import run_single_test

    return run_single_test(
        binary, test_id, env=env, results_dir=results_dir, firmware_dirs=tuple(firmware)
    )


@dataclass
class CachedProbes:
    """A :class:`SingleTestRunner` that keeps every probe's Avocado job in the cache, keyed
    like a baseline (:mod:`seriesgate.functional.baseline_cache`: the probe binary's content,
    the test code, the test VM's assets, the test): the same series bisected again (a warm
    ``make run``) answers from the cache instead of booting guests. A probe without a result
    (ERROR without a crash, INTERRUPTED) is not kept."""

    env: TestEnv
    inner: SingleTestRunner = _default_runner
    reused: int = 0

    def _key(self, binary: Path, test_id: str) -> tuple[str, dict[str, Any]]:
        from seriesgate.functional import baseline_cache as bc

        comps = bc.key_components(
            binary_digest=bc.file_digest(binary),
            test_code_digest=bc.tree_digest(bc.TEST_CODE),
            assets=bc.testenv_identity(self.env),
            references=[test_id],
            tags=["bisect-probe"],
        )
        return bc.key_of(comps), comps

    def __call__(
        self, binary: Path, test_id: str, env: TestEnv, results_dir: Path, firmware: Sequence[Path]
    ) -> TestOutcome:
        from seriesgate.functional import baseline_cache as bc
        from seriesgate.functional.runner import PROBE_AGAIN_DIR, parse_job

        key, comps = self._key(binary, test_id)
        hit = bc.load(key)
        if hit is not None:
            found = [o for o in parse_job(Path(hit.entry["job"]), "probe") if o.test_id == test_id]
            if found:
                self.reused += 1
                progress.say("bisect", f"probe reused from {hit.from_run} ({hit.date})")
                return found[0]
        outcome = self.inner(binary, test_id, env, results_dir, firmware)
        # The last job: a second boot's (runner.PROBE_AGAIN_DIR) when the first was lost.
        jobs = [
            *sorted(results_dir.glob("probe/job-*")),
            *sorted(results_dir.glob(f"{PROBE_AGAIN_DIR}/probe/job-*")),
        ]
        if jobs and not bc.unreliable([outcome]):
            bc.store(key, comps, {"job": str(jobs[-1])}, from_run=results_dir.parents[2].name)
        return outcome


def regressions(functional: FunctionalResults) -> list[TestOutcome]:
    """Tests that passed on baseline and failed (or errored) on patched."""
    by_key = {(o.test_id, o.build): o for o in functional.outcomes}
    out = []
    for (test_id, build), outcome in sorted(by_key.items()):
        if build != "patched" or outcome.status not in (Status.FAIL, Status.ERROR):
            continue
        base = by_key.get((test_id, "baseline"))
        if base is not None and base.status == Status.PASS:
            out.append(outcome)
    return out


def bisect_regressions(
    builds: BuildSet,
    env: TestEnv,
    functional: FunctionalResults,
    *,
    results_dir: Path,
    runner: SingleTestRunner | None = None,
    max_tests: int | None = None,
) -> list[dict[str, Any]]:
    """For each regression, the first patch where the test fails; returns one dict per test:

    ``{"test", "first_bad_patch_index", "subject", "evidence"}`` (evidence: the probes run,
    skipped patches, the patched failure reason).
    """
    run = runner or _default_runner
    found: list[dict[str, Any]] = []
    patches = sorted(builds.each_patch, key=lambda p: p.index)
    # A crash already bisected answers for the other tests crashing in the same place: each
    # probe boots guests, and the same signal and top frames come from the same code path.
    by_signature: dict[tuple[str, ...], dict[str, Any]] = {}
    bisected = 0
    for reg in regressions(functional):
        signature = crash_signature(reg)
        same = by_signature.get(signature) if signature else None
        if same is not None:
            found.append(
                {
                    "test": reg.name,
                    "first_bad_patch_index": same["first_bad_patch_index"],
                    "subject": same["subject"],
                    "evidence": {"same_crash_as": same["test"],
                                 "crash_signature": list(signature or ()),
                                 "patched_fail_reason": reg.fail_reason},
                }
            )  # fmt: skip
            progress.say("bisect", f"{reg.name}: same crash as {same['test']}, not bisected again")
            continue
        if max_tests is not None and bisected >= max_tests:
            # Each probe boots guests in the test VM; the first regressions bound the run time.
            found.append(
                {
                    "test": reg.name,
                    "first_bad_patch_index": None,
                    "subject": None,
                    "evidence": {"error": f"not bisected: limit of {max_tests} tests per run",
                                 "patched_fail_reason": reg.fail_reason},
                }
            )  # fmt: skip
            continue
        if not any(p.binary for p in patches):
            found.append(
                {
                    "test": reg.name,
                    "first_bad_patch_index": None,
                    "subject": None,
                    "evidence": {"error": "no per-patch builds to bisect on",
                                 "patched_fail_reason": reg.fail_reason},
                }
            )  # fmt: skip
            continue
        progress.say("bisect", f"{reg.name}: bisecting over {len(patches)} patches")
        bisected += 1
        safe = reg.name.replace("/", "_").replace(":", "_")

        differently: list[dict[str, Any]] = []  # probes that failed, but not like patched

        def probe(
            p: PatchBuild,
            reg: TestOutcome = reg,
            safe: str = safe,
            differently: list[dict[str, Any]] = differently,
        ) -> tuple[bool, str]:
            assert p.binary is not None
            outcome = run(
                p.binary, reg.test_id, env, results_dir / safe / f"patch-{p.index:02d}",
                builds.firmware_dirs,
            )  # fmt: skip
            bad = same_failure(reg, outcome)
            other = outcome.status != Status.PASS and not bad
            label = f"{outcome.status}" + (" (another failure: counted as good)" if other else "")
            progress.say("bisect", f"{reg.name}: patch {p.index}: {label}")
            if other:
                differently.append({"index": p.index, "reason": outcome.fail_reason[:300]})
            return not bad, outcome.fail_reason

        result = first_bad(patches, probe)
        named = result.first_bad
        if named is None and len(result.skipped) == 1:
            # Every built patch passes and only one (unbuilt as posted, e.g. fixed up for the
            # base) remains before "patched": that patch is the culprit, say how we know.
            named = result.skipped[0]
        subject = next((p.subject for p in patches if p.index == named), None)
        bisected_entry: dict[str, Any] = {
            "test": reg.name,
            "first_bad_patch_index": named,
            "subject": subject,
            "evidence": {
                "last_good_patch_index": result.last_good,
                "skipped_unbuilt": result.skipped,
                "by_elimination": named != result.first_bad,
                "probes": result.probes,
                "failed_differently": differently,
                "patched_fail_reason": reg.fail_reason,
            },
        }
        found.append(bisected_entry)
        if signature:
            by_signature[signature] = bisected_entry
        progress.say("bisect", f"{reg.name}: first bad patch {named} ({subject})")
    return found
