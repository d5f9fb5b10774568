"""Run the functional tests on the builds, inside the test environment, and read the outcome.

``run_functional()`` boots the test environment once and runs one Avocado job per build in
it (:mod:`seriesgate.functional.jobs`), failed tests retried once; then it turns Avocado's
``results.json`` into :class:`~seriesgate.functional.model.FunctionalResults`: claim and
expected direction from the tags, ``measurements.json`` and crash records from each test's
output directory, ``flaky`` for a test that failed and then passed on retry.
"""

from __future__ import annotations

import ast
import io
import json
import re
import sys
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from seriesgate.build.model import BuildSet
from seriesgate.errors import InfraError, InputError, SeriesgateError
from seriesgate.functional import retry as retry_policy
from seriesgate.functional.jobs import test_files
from seriesgate.functional.model import Crash, Direction, FunctionalResults, Status, TestOutcome
from seriesgate.functional.retry import ReproducedCrash
from seriesgate.paths import PROJECT_ROOT
from seriesgate.progress import say, step
from seriesgate.testenv.model import TestEnv

DEFAULT_BUILDS = ("baseline", "patched")
# Budget for one L1 boot running every job: single-VM + migration suites on two builds.
ENV_TIMEOUT = 3 * 3600.0


def binaries_of(
    builds_in: BuildSet | Mapping[str, Path], builds: Sequence[str]
) -> tuple[dict[str, Path], tuple[Path, ...]]:
    """The QEMU binary of every requested build, and the firmware dirs (``-L``)."""
    if isinstance(builds_in, BuildSet):
        found: dict[str, Path] = {}
        for name in builds:
            result = getattr(builds_in, name, None)
            if result is None or not result.ok or result.binary is None:
                raise InputError(
                    f"build {name!r} has no QEMU binary",
                    hint="its build failed or was not requested; see the build log",
                )
            found[name] = result.binary
        return found, tuple(builds_in.firmware_dirs)
    missing = [n for n in builds if n not in builds_in]
    if missing:
        raise InputError(f"no binary given for build(s) {', '.join(missing)}")
    return {n: Path(builds_in[n]) for n in builds}, ()


def _tags(raw: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Avocado's tag dict (``{"claim": ["x"], "quick": None}``) as ``("claim:x", "quick")``."""
    out: list[str] = []
    for key, values in (raw or {}).items():
        if values:
            out += [f"{key}:{v}" for v in values]
        else:
            out.append(key)
    return tuple(sorted(out))


def _direction(tags: Sequence[str]) -> Direction:
    for tag in tags:
        if tag.startswith("expect:"):
            try:
                return Direction(tag.split(":", 1)[1])
            except ValueError:
                raise InputError(f"unknown expected direction tag {tag!r}") from None
    return Direction.HOLDS_ON_BOTH


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _crash(outputdir: Path) -> Crash | None:
    for path in sorted(outputdir.glob("*.crash.json")):
        data = _read_json(path)
        if data:
            return Crash(
                binary=str(data.get("binary", "")),
                signal=str(data.get("signal", "")),
                frames=tuple(data.get("frames", ())),
                log=path,
            )
    return None


def _short_name(name: str) -> str:
    """``tests/functional/test_x.py:Cls.test_y`` -> ``Cls.test_y``."""
    return name.split(";")[0].rsplit(":", 1)[-1]


def parse_job(job: Path, build: str) -> list[TestOutcome]:
    """Every test of one Avocado job directory as a TestOutcome."""
    data = _read_json(job / "results.json")
    if not data:
        raise InfraError(f"Avocado job {job} has no readable results.json")
    outcomes = []
    for t in data.get("tests", []):
        tags = _tags(t.get("tags"))
        logdir = Path(t["logdir"]) if t.get("logdir") else None
        if logdir is not None and (job / "test-results" / logdir.name).exists():
            # The job directory we read is authoritative (it may have been moved or copied).
            logdir = job / "test-results" / logdir.name
        outputdir = logdir / "data" if logdir else None
        claim = next((tg.split(":", 1)[1] for tg in tags if tg.startswith("claim:")), None)
        status_text = str(t.get("status") or "INTERRUPTED")
        try:
            status = Status(status_text)
        except ValueError:
            status = Status.ERROR
        reason = str(t.get("fail_reason") or "")
        outcomes.append(
            TestOutcome(
                test_id=str(t.get("name", t.get("id", ""))).split(";")[0],
                name=_short_name(str(t.get("name", ""))),
                build=build,
                status=status,
                time=float(t.get("time_elapsed") or 0.0),
                tags=tags,
                claim=claim,
                direction=_direction(tags),
                fail_reason="" if reason == "<unknown>" else reason,
                logdir=logdir,
                measurements=_read_json(outputdir / "measurements.json") if outputdir else {},
                crash=_crash(outputdir) if outputdir else None,
            )
        )
    return outcomes


def merge_retry(first: list[TestOutcome], retry: list[TestOutcome]) -> list[TestOutcome]:
    """A retried test keeps its second result; passing on retry marks it flaky."""
    again = {o.test_id: o for o in retry}
    merged = []
    for outcome in first:
        second = again.get(outcome.test_id)
        if second is None:
            merged.append(outcome)
            continue
        flaky = outcome.status != Status.PASS and second.status == Status.PASS
        merged.append(
            replace(
                second,
                attempts=2,
                flaky=flaky,
                fail_reason=second.fail_reason
                or (f"first attempt: {outcome.fail_reason}" if flaky else ""),
            )
        )
    return merged


def entry_outcomes(
    build: str, entry: Mapping[str, Any], tags: Sequence[str] = ()
) -> tuple[list[TestOutcome], list[Path]]:
    """One build's outcomes from its ``jobs.json`` entry: the first job merged with each
    retry job in order (``retry_jobs``; ``retry_job`` in older indexes), after the jobs that
    measured some tests again (``replace_jobs``); only the tests
    ``tags`` selects (a cached baseline of every test serves a run of some)."""
    if not entry.get("job"):
        raise InfraError(f"the Avocado job for build {build} did not run")
    job = Path(entry["job"])
    jobs = [job]
    outcomes = parse_job(job, build)
    # Tests measured again (a cached baseline's flaky ones) replace the cached results.
    for again in (Path(r) for r in entry.get("replace_jobs", []) if r):
        if (again / "results.json").exists():
            jobs.append(again)
            fresh = {o.test_id: o for o in parse_job(again, build)}
            outcomes = [fresh.get(o.test_id, o) for o in outcomes]
    retries = list(entry.get("retry_jobs", [])) + [entry.get("retry_job")]
    for rjob in (Path(r) for r in retries if r):
        if (rjob / "results.json").exists():
            jobs.append(rjob)
            outcomes = merge_retry(outcomes, parse_job(rjob, build))
    return [o for o in outcomes if tag_matches(set(o.tags), tags)], jobs


def with_retry_notes(
    outcomes: Iterable[TestOutcome], decisions: Iterable[Mapping[str, Any]]
) -> list[TestOutcome]:
    """Each outcome with the note of its retry decision (``jobs.json``'s retry_decisions)."""
    notes = {(d["test"], d["build"]): str(d.get("note", "")) for d in decisions}
    return [replace(o, retry_note=notes.get((o.test_id, o.build), o.retry_note)) for o in outcomes]


def collect(
    results_dir: Path, builds: Collection[str] | None = None
) -> tuple[list[TestOutcome], list[Path]]:
    """Outcomes of the builds' jobs recorded in ``results_dir/jobs.json`` (default: all)."""
    index = _read_json(results_dir / "jobs.json")
    outcomes: list[TestOutcome] = []
    jobs: list[Path] = []
    for build, entry in index.get("builds", {}).items():
        if builds is not None and build not in builds:
            continue
        if not entry.get("job"):
            raise InfraError(
                f"the Avocado job for build {build} did not run",
                hint=f"see {results_dir / build / 'avocado.out'}",
            )
        got, their_jobs = entry_outcomes(build, entry)
        outcomes += got
        jobs += their_jobs
    return with_retry_notes(outcomes, index.get("retry_decisions", [])), jobs


def finished_builds(jobs_json: Path, builds: Iterable[str]) -> list[str]:
    """The builds whose first Avocado job finished with results (a retry may not have)."""
    entries = _read_json(jobs_json).get("builds", {}) if jobs_json.exists() else {}
    return [
        b
        for b in builds
        if entries.get(b, {}).get("job") and (Path(entries[b]["job"]) / "results.json").exists()
    ]


class _ProgressFilter(io.StringIO):
    """Echo target for the test VM's console: passes on the functional stage's own progress
    lines (one per finished test), drops everything else (kernel and test chatter).

    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     f = _ProgressFilter()
    ...     _ = f.write("[  12.1] virtio_net virtio0 eth0: renamed\\n[functional] patched T.t PA")
    ...     _ = f.write("SS 1.0 s (1/2)\\r\\n")
    >>> err.getvalue()
    '[functional] patched T.t PASS 1.0 s (1/2)\\n'
    """

    def __init__(self, prefix: str = "[functional] ") -> None:
        super().__init__()
        self.prefix = prefix
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            line = line.strip("\r")
            if line.startswith(self.prefix):
                print(line, file=sys.stderr, flush=True)
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


def run_functional(
    builds_in: BuildSet | Mapping[str, Path],
    env: TestEnv,
    *,
    results_dir: Path,
    tags: Sequence[str] | None = None,
    builds: Sequence[str] = DEFAULT_BUILDS,
    params: Sequence[str] = (),
    retry: bool = True,
    firmware_dirs: Sequence[Path] | None = None,
    tests: Sequence[str] = (),
    use_va: bool = False,
    timeout: float = ENV_TIMEOUT,
    l1_memory_mb: int | None = None,  # None: the testenv's default
    label: str = "",  # what the progress line names (a test group)
    reused: Mapping[str, Mapping[str, Any]] | None = None,
    build_tags: Mapping[str, Sequence[str]] | None = None,
    reproduced: Sequence[ReproducedCrash] = (),
) -> FunctionalResults:
    """Run the functional tests on ``builds`` inside ``env``; results under ``results_dir``.

    ``firmware_dirs`` (QEMU ``-L``) default to the BuildSet's. ``tests``: Avocado test
    references (default: every build test). ``use_va=True`` loads vdpa_sim with use_va=1,
    whose datapath is dead with anonymous guest RAM: only for showing that tests fail then.
    ``reused``: builds whose first job is known (``jobs.json`` entries: a cached baseline,
    or a build that finished in an earlier boot); they run no first job, but their results
    take part in the retry decisions and they may be retried. ``build_tags``: a build's own
    tag filter instead of ``tags``. ``reproduced``: crashes an earlier boot's retries
    reproduced; not retried again.
    """
    from seriesgate.testenv import run_in_env  # the testenv stage owns the L1 VM
    from seriesgate.testenv.vm import Terminated

    binaries, fw_dirs = binaries_of(builds_in, builds)
    if firmware_dirs is not None:
        fw_dirs = tuple(firmware_dirs)
    results_dir = results_dir.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "seriesgate.functional.jobs", "--results-dir", str(results_dir)]
    for name, path in binaries.items():
        argv += ["--build", f"{name}={path}"]
    if reused:
        known = results_dir / "reused-jobs.json"
        known.write_text(json.dumps({"builds": dict(reused)}, indent=2) + "\n")
        for name in reused:
            argv += ["--reuse", f"{name}={known}"]
    if reproduced:
        crashes = results_dir / "reproduced-crashes.json"
        crashes.write_text(json.dumps([r.to_json() for r in reproduced], indent=2) + "\n")
        argv += ["--reproduced-crashes", str(crashes)]
    for d in fw_dirs:
        argv += ["--firmware-dir", str(d)]
    for tag in tags or ():
        argv += ["--tags", tag]
    for name, own in (build_tags or {}).items():
        argv += [f"--build-tags={name}={tag}" for tag in own]
    for p in params:
        argv += ["-p", p]
    for test in tests:
        argv += ["--test", test]
    if not retry:
        argv.append("--no-retry")
    env_failure: str | None = None
    to_run = [b for b in binaries if b not in (reused or {})]
    try:
        what = f"{label} on " if label else "Avocado on "
        with step("functional", f"{what}{', '.join(to_run) or 'retries'} in the test environment"):
            rc = run_in_env(
                env,
                argv,
                results_dir=results_dir,
                devices=2,
                timeout=timeout,
                use_va=use_va,
                memory_mb=l1_memory_mb,
                echo=_ProgressFilter(),
            )
    except Terminated:
        raise  # SIGTERM: stop here, whatever finished (the caller keeps what is on disk)
    except InfraError as exc:
        # The test VM died (nested KVM under TCG has panicked L1). The builds whose job
        # finished before that still stand; the caller boots again for the others (or, with
        # none finished, decides: retry, undecided).
        done = finished_builds(results_dir / "jobs.json", binaries)
        if not done:
            raise
        env_failure = str(exc)
        rc = -1
    else:
        done = list(binaries)
    if not (results_dir / "jobs.json").exists():
        raise InfraError(
            f"the functional jobs did not run in the test environment (exit {rc})",
            hint=f"see the logs under {results_dir}",
        )
    outcomes, jobs = collect(results_dir, done)
    facts: dict[str, Any] = {
        "builds_not_run": [b for b in binaries if b not in done],
        "l1_failure_after_first_jobs": env_failure,
        "mode": str(env.mode),
        "kernel": env.kernel_version,
        "l1_kvm": env.l1_kvm,
        "l1_accel": {
            "accel": env.l1_accel,
            "reason": env.l1_accel_reason,
            "qemu": env.l1_qemu,
            "smp": env.l1_smp,
        },
        "jobs_index": str(results_dir / "jobs.json"),
    }
    return FunctionalResults(outcomes=tuple(outcomes), job_dirs=tuple(jobs), env=facts)


PROBE_AGAIN_DIR = "again"  # a probe's second boot, after its test VM was lost


def run_single_test(
    binary: Path,
    test_id: str,
    *,
    env: TestEnv,
    results_dir: Path,
    firmware_dirs: Sequence[Path] = (),
    build: str = "probe",
) -> TestOutcome:
    """Run one test (``tests/functional/x.py:Class.test``) on one binary, no retry (bisect).

    A test VM lost during the probe (L1 died, hung or wedged) is booted once more, into
    ``results_dir/PROBE_AGAIN_DIR``: one lost L1 would otherwise cost the bisect its answer.
    A second loss, or anything that is not the test VM's failure, is raised.
    """
    from seriesgate.testenv.vm import Terminated  # SIGTERM: stop, never boot again

    run = partial(
        run_functional,
        {build: binary},
        env,
        builds=(build,),
        retry=False,
        firmware_dirs=firmware_dirs,
        tests=(test_id,),
    )
    try:
        results = run(results_dir=results_dir)
    except Terminated:
        raise
    except InfraError as exc:
        say("bisect", f"test environment failed ({exc}); booting it again for this probe")
        results = run(results_dir=results_dir / PROBE_AGAIN_DIR)
    if not results.outcomes:
        raise InfraError(f"test {test_id} did not run", hint=f"see {results_dir}")
    return results.outcomes[0]


# Bound on one boot: per test class and build, its job and retry (a class takes 0.5-4 min
# on one build; the test VM's own idle and lockup watches end a hang sooner). CI has 90 min
# for everything.
FUNCTIONAL_TIMEOUT_PER_CLASS = 5 * 60.0
# The test VM (nested KVM under TCG) has died after 16-1254 s of uptime (2026-11-26 evening:
# 3 of about 10 boots, at 150-265 s): the builds of a group whose job had not finished get
# another boot, while the functional budget lasts.
L1_ATTEMPTS = 4
FUNCTIONAL_BUDGET = 50 * 60.0


_TAGS_LINE = re.compile(r":avocado:\s*tags=([^\s\"']+)")


@dataclass(frozen=True)
class TestClass:
    """One test class and its tests' tags (class tags plus method tags, Avocado's rule)."""

    file: Path
    cls: str
    tags: frozenset[str] = frozenset()
    l1_memory_mb: int | None = None  # the class's TEST_VM_MEMORY_MB; None: testenv default

    @property
    def reference(self) -> str:
        """Avocado reference; the trailing dot keeps ``Foo`` from also selecting ``FooBar``."""
        try:
            path = self.file.relative_to(PROJECT_ROOT)
        except ValueError:
            path = self.file
        return f"{path}:{self.cls}\\."

    @property
    def label(self) -> str:
        return f"{self.file.stem}.{self.cls}"


@dataclass(frozen=True)
class TestGroup:
    """What one test-VM boot runs: one migration class, or all single-VM classes."""

    label: str
    classes: tuple[TestClass, ...]

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(c.reference for c in self.classes)

    @property
    def l1_memory_mb(self) -> int | None:
        asked = [c.l1_memory_mb for c in self.classes if c.l1_memory_mb]
        return max(asked) if asked else None


def _docstring_tags(node: ast.AST) -> set[str]:
    doc = ast.get_docstring(node) if isinstance(node, (ast.ClassDef, ast.FunctionDef)) else None
    return {t for m in _TAGS_LINE.finditer(doc or "") for t in m.group(1).split(",") if t}


def _class_constant(node: ast.ClassDef, name: str) -> int | None:
    """An ``int`` class attribute assigned literally in the class body (``NAME = 3072``)."""
    for stmt in node.body:
        target: ast.expr | None = stmt.target if isinstance(stmt, ast.AnnAssign) else None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
        value = getattr(stmt, "value", None)
        if (
            isinstance(target, ast.Name)
            and target.id == name
            and isinstance(value, ast.Constant)
            and isinstance(value.value, int)
        ):
            return value.value
    return None


def tag_matches(test_tags: set[str], wanted: Sequence[str]) -> bool:
    """Whether a test with ``test_tags`` runs under ``-t`` filters ``wanted`` (ORed).

    A filter ``key`` also selects ``key:value`` tags, as Avocado's does.

    >>> tag_matches({"migration", "claim:svq-iova-tree"}, ("claim",))
    True
    >>> tag_matches({"slow"}, ("quick", "core"))
    False
    """
    if not wanted:
        return True
    keys = test_tags | {t.split(":", 1)[0] for t in test_tags}
    return any(w in keys for w in wanted)


def test_classes(files: list[Path], tags: Sequence[str]) -> list[TestClass]:
    """The test classes of ``files`` with a test matching ``tags``, in file order.

    A class that needs a bigger test VM says so with a literal ``TEST_VM_MEMORY_MB = <MiB>``.
    """
    found = []
    for file in files:
        for node in ast.parse(file.read_text(), str(file)).body:
            if not isinstance(node, ast.ClassDef):
                continue
            class_tags = _docstring_tags(node)
            methods = [
                class_tags | _docstring_tags(m)
                for m in node.body
                if isinstance(m, ast.FunctionDef) and m.name.startswith("test")
            ]
            if any(tag_matches(t, tags) for t in methods):
                memory = _class_constant(node, "TEST_VM_MEMORY_MB")
                union = frozenset(t for m in methods for t in m)
                found.append(TestClass(file, node.name, union, memory))
    return found


SINGLE_VM_GROUP = "single-vm"
MIGRATION_GROUP = "migration"


def test_groups(files: list[Path], tags: Sequence[str]) -> list[TestGroup]:
    """The test-VM boots for ``files`` and ``tags``: one for the single-VM classes, one for
    the migration classes, and one per bigger test-VM size a migration class asks for.

    Why: a boot costs ~20 s before the first test (L1 boot, the warm Avocado's imports)
    and runs both builds; a VM lost mid-run costs only the builds whose job had not
    finished (:func:`run_functional_isolated`). Migration tests are apart from the
    single-VM ones because nested KVM under TCG has killed L1 during migrations (two L2
    guests, dirty logging) and the single-VM tests never lost their VM.
    """
    classes = test_classes(files, tags)
    single = tuple(c for c in classes if "migration" not in c.tags)
    groups = [TestGroup(SINGLE_VM_GROUP, single)] if single else []
    by_memory: dict[int | None, list[TestClass]] = {}
    for c in classes:
        if "migration" in c.tags:
            by_memory.setdefault(c.l1_memory_mb, []).append(c)
    for memory, members in sorted(by_memory.items(), key=lambda kv: kv[0] or 0):
        label = MIGRATION_GROUP if memory is None else f"{MIGRATION_GROUP}-{memory}mb"
        groups.append(TestGroup(label, tuple(members)))
    return groups


# Under --all the repaired variant runs the gate's tests and the failure paths, not every
# slow test: it answers "with the crash repaired, does the series do what it claims, and
# how does its new code fail?", at a third of a full run's cost less.
REPAIRED_ALL_TAGS = ("quick", "core", "claim", "fault")


def variant_tags(variant: str, tags: Sequence[str]) -> tuple[str, ...]:
    """The tag filter of one build: the run's, except ``repaired`` under ``--all`` (empty).

    >>> variant_tags("patched", ()), variant_tags("repaired", ("quick",))
    ((), ('quick',))
    >>> variant_tags("repaired", ())
    ('quick', 'core', 'claim', 'fault')
    """
    if variant == "repaired" and not tags:
        return REPAIRED_ALL_TAGS
    return tuple(tags)


def variants_of(builds_in: BuildSet | Mapping[str, Path]) -> tuple[str, ...]:
    """The builds the functional stage runs: baseline, patched, and ``repaired`` (the series
    with our repairs of its own defects) when the build stage made one."""
    if isinstance(builds_in, BuildSet):
        repaired = builds_in.repaired
        extra = ("repaired",) if repaired is not None and repaired.ok else ()
        return (*DEFAULT_BUILDS, *extra)
    return tuple(b for b in (*DEFAULT_BUILDS, "repaired") if b in builds_in)


@dataclass
class _BaselineReuse:
    """The baseline cache for one run: a key per group, hits and what was stored."""

    binary: Path
    env: TestEnv
    tags: tuple[str, ...]
    fresh: bool  # --fresh-baseline: measure again (and store the new results)
    run_name: str
    _code: str = ""
    _binary: str = ""
    _assets: dict[str, Any] | None = None

    def components(self, group: TestGroup) -> dict[str, Any]:
        from seriesgate.functional import baseline_cache as bc

        if self._assets is None:  # hashed once per run (a binary: ~0.2 s)
            self._code = bc.tree_digest(bc.TEST_CODE)
            self._assets = bc.testenv_identity(self.env)
            self._binary = bc.file_digest(self.binary)
        return bc.key_components(
            binary_digest=self._binary,
            test_code_digest=self._code,
            assets=self._assets,
            references=group.references,
            tags=self.tags,
        )

    def lookup(self, group: TestGroup) -> Any:
        """This group's stored baseline: of the same tests, else of every test (a superset:
        the caller keeps the tests its tags select). The run of every test has its own
        group of the same label, with more classes (other references): its key is that
        group's."""
        from seriesgate.functional import baseline_cache as bc

        if self.fresh:
            return None
        hit = bc.load(bc.key_of(self.components(group)))
        if hit is not None or not self.tags:
            return hit
        every = {g.label: g for g in test_groups(test_files(), ())}.get(group.label)
        return None if every is None else bc.load(bc.key_of({**self.components(every), "tags": []}))

    def offer(
        self, group: TestGroup, outcomes: Sequence[TestOutcome], entry: Mapping[str, Any]
    ) -> str:
        """Store a group's freshly measured baseline for reuse; a note on what a reuse will
        measure again (its flaky tests and those without a result)."""
        from seriesgate.functional import baseline_cache as bc

        if not outcomes:
            return f"{group.label}: baseline not stored for reuse: no baseline test ran"
        again = bc.unreliable(outcomes)
        comps = self.components(group)
        bc.store(bc.key_of(comps), comps, entry, from_run=self.run_name, remeasure=again)
        if not again:
            return ""
        what = ", ".join(f"{_short_name(t)} ({why})" for t, why in again.items())
        return f"{group.label}: baseline stored for reuse; a reuse measures again: {what}"


def _selects(group: TestGroup, tags: Sequence[str]) -> bool:
    """Whether ``tags`` selects a test of ``group``."""
    files = sorted({c.file for c in group.classes})
    names = {c.cls for c in group.classes}
    return any(c.cls in names for c in test_classes(files, tags))


def run_functional_isolated(
    builds_in: BuildSet | Mapping[str, Path],
    env: TestEnv,
    *,
    results_dir: Path,
    tags: tuple[str, ...] = (),
    fresh_baseline: bool = False,
    reuse_baseline: bool = True,
) -> tuple[FunctionalResults, list[str]]:
    """One test-VM boot per test group running every build, booted again when the VM fails.

    Short-lived test VMs (:func:`test_groups`): nested KVM under TCG has killed L1 after
    16-1254 s of uptime, so short boots lose less. In a boot, baseline then the variants run
    one after the other (same machine state, one boot and one warm Avocado for all); when the
    VM dies, the builds whose first job had finished keep their results and the next boot runs
    the others only (bounded); retries run after every first job, where they could change the
    verdict (:mod:`seriesgate.functional.retry`). A group's baseline comes from the cache
    when everything that could change it is unchanged (:mod:`seriesgate.functional.baseline_cache`;
    ``fresh_baseline``: measure it again). Every re-boot and reuse is recorded in the facts.
    Returns the results and what never ran (the caller decides: the gate is undecided).
    """
    from seriesgate.testenv.vm import Terminated  # SIGTERM: stop, never boot again

    outcomes: list[TestOutcome] = []
    job_dirs: list[Path] = []
    facts: dict[str, Any] = {"l1_retries": [], "notes": [], "baseline_reuse": {}}
    not_run: list[str] = []
    deadline = time.monotonic() + FUNCTIONAL_BUDGET
    groups = test_groups(test_files(), tags)
    variants = variants_of(builds_in)
    # Crashes a retry reproduced: later groups do not retry them (once per signature per run).
    reproduced: list[ReproducedCrash] = []
    cache = None
    if reuse_baseline:
        binary = binaries_of(builds_in, ("baseline",))[0]["baseline"]
        cache = _BaselineReuse(binary, env, tags, fresh_baseline, results_dir.name)
    # Group by group, every build in each boot: a budget cut then costs the last groups on
    # every build, never a whole build.
    for group in groups:
        own_tags = {v: variant_tags(v, tags) for v in variants}
        # A variant runs in a group only when its tag filter selects a test there.
        in_group = tuple(
            v
            for v in variants
            if v == "baseline" or own_tags[v] == tuple(tags) or _selects(group, own_tags[v])
        )
        build_tags = {v: own_tags[v] for v in in_group if own_tags[v] != tuple(tags)}
        known: dict[str, dict[str, Any]] = {}  # build -> its jobs.json entry, first job done
        hit = cache.lookup(group) if cache is not None else None
        if hit is not None:
            known["baseline"] = dict(hit.entry)
            facts["baseline_reuse"][group.label] = hit.fact()
            say("functional", f"{group.label}: baseline reused from {hit.from_run} ({hit.date})")
        decisions: list[dict[str, Any]] = []
        for attempt in range(1, L1_ATTEMPTS + 1):
            pending = [b for b in in_group if b not in known]
            label = f"{group.label} ({', '.join(pending)})"
            left = deadline - time.monotonic()
            if left < 60.0:
                budget = f"functional budget of {FUNCTIONAL_BUDGET / 60:.0f} min used up"
                not_run.append(f"{label}: not run, {budget}")
                facts["notes"].append(f"{label} not run: {budget}")
                break
            job_dir = results_dir / "functional" / group.label / f"attempt-{attempt}"
            try:
                result = run_functional(
                    builds_in,
                    env,
                    results_dir=job_dir,
                    tags=tags or None,
                    builds=in_group,
                    tests=group.references,
                    timeout=min(
                        FUNCTIONAL_TIMEOUT_PER_CLASS * len(group.classes) * (len(pending) + 1),
                        left,
                    ),
                    l1_memory_mb=group.l1_memory_mb,
                    label=group.label,
                    reused=known,
                    build_tags=build_tags,
                    reproduced=reproduced,
                )
            except Terminated:
                raise
            except SeriesgateError as exc:
                facts["l1_retries"].append({"job": label, "error": str(exc)})
                if attempt == L1_ATTEMPTS:
                    not_run.append(f"{label}: {exc}")
                    facts["notes"].append(f"test VM failed for {label}, gave up: {exc}")
                    break
                facts["notes"].append(f"test VM failed for {label}, booted again: {exc}")
                say("functional", f"{label}: test environment failed ({exc}); again")
                continue
            index = _read_json(Path(result.env["jobs_index"]))
            decisions = list(index.get("retry_decisions", decisions))
            missing = list(result.env.get("builds_not_run", []))
            for build, entry in index.get("builds", {}).items():
                if build not in missing and entry.get("job"):
                    keep = ("job", "retry_jobs", "replace_jobs", "remeasure")
                    known[build] = {k: entry[k] for k in keep if k in entry}
            lost = result.env.get("l1_failure_after_first_jobs")
            if lost:
                facts["l1_retries"].append({"job": label, "error": lost, "kept": "finished"})
                kept = [b for b in pending if b not in missing]
                again = f"; booted again for {', '.join(missing)}" if missing else ""
                facts["notes"].append(
                    f"test VM failed during {label}; the finished jobs of "
                    f"{', '.join(kept)} were kept{again}: {lost}"
                )
                # The user sees why the group boots again, as for a loss before any job.
                kept_text = ", ".join(kept) or "nothing"
                say(
                    "functional",
                    f"{label}: test environment failed ({lost}); kept {kept_text}{again}",
                )
            facts["notes"] += result.env.get("notes", [])
            facts.update(
                {
                    k: v
                    for k, v in result.env.items()
                    if k
                    not in ("l1_failure_after_first_jobs", "notes", "builds_not_run", "jobs_index")
                }
            )
            if not missing:
                break
        else:  # every attempt ended with builds still to run
            left_over = [b for b in in_group if b not in known]
            not_run.append(f"{group.label} ({', '.join(left_over)}): test VM failed every time")
        group_outcomes: list[TestOutcome] = []
        for build in in_group:
            if build in known:
                got, jobs = entry_outcomes(build, known[build], own_tags[build])
                group_outcomes += got
                job_dirs += jobs
        group_outcomes = with_retry_notes(group_outcomes, decisions)
        outcomes += group_outcomes
        reproduced = retry_policy.reproduced_crashes(outcomes)
        if cache is not None and hit is None and "baseline" in known:
            note = cache.offer(
                group, [o for o in group_outcomes if o.build == "baseline"], known["baseline"]
            )
            if note:
                facts["notes"].append(note)
    reuse = facts.pop("baseline_reuse")
    if reuse:  # what the report says: "baseline: reused from <run> (<date>)"
        facts["baseline_reuse"] = {**next(iter(reuse.values())), "groups": reuse}
    return FunctionalResults(outcomes=tuple(outcomes), job_dirs=tuple(job_dirs), env=facts), not_run
