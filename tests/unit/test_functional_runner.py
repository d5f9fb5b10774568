"""Reading Avocado's results into TestOutcome (real Avocado 113 job output)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from seriesgate.errors import InputError
from seriesgate.functional.model import Direction, Status
from seriesgate.functional.runner import binaries_of, collect, merge_retry, parse_job
from seriesgate.paths import PROJECT_ROOT

JOB = Path(__file__).parent / "data" / "functional" / "avocado-113-job"
BOOT_TESTS = PROJECT_ROOT / "tests" / "functional" / "test_boot_traffic.py"


def test_parse_job_tags_claim_direction_measurements() -> None:
    by_name = {o.name: o for o in parse_job(JOB, "baseline")}
    a, b = by_name["X.test_a"], by_name["X.test_b"]
    assert a.status is Status.PASS and a.build == "baseline"
    assert a.tags == ("claim:status-bits", "expect:holds-on-both", "quick")
    assert a.claim == "status-bits" and a.direction is Direction.HOLDS_ON_BOTH
    assert a.measurements == {"a": 1}
    assert a.fail_reason == ""  # Avocado writes "<unknown>" for passing tests
    assert b.status is Status.FAIL and b.fail_reason == "nope"
    assert b.claim is None and b.direction is Direction.HOLDS_ON_BOTH
    assert b.measurements == {} and b.crash is None
    assert a.time > 0


def test_retry_marks_flaky_only_when_it_passes(tmp_path: Path) -> None:
    first = parse_job(JOB, "patched")
    failed = [o for o in first if o.status is Status.FAIL]
    passed_again = [replace(failed[0], status=Status.PASS, fail_reason="")]
    merged = {o.name: o for o in merge_retry(first, passed_again)}
    assert merged["X.test_b"].flaky and merged["X.test_b"].attempts == 2
    assert "first attempt: nope" in merged["X.test_b"].fail_reason
    assert not merged["X.test_a"].flaky and merged["X.test_a"].attempts == 1
    merged2 = {o.name: o for o in merge_retry(first, failed)}
    assert not merged2["X.test_b"].flaky and merged2["X.test_b"].status is Status.FAIL


def test_crash_record_and_jobs_index(tmp_path: Path) -> None:
    job = tmp_path / "baseline" / "job-1"
    shutil.copytree(JOB, job)
    data = job / "test-results" / "2-test_x.py_X.test_b" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "vm.crash.json").write_text(
        json.dumps({"binary": "/q", "signal": "SIGSEGV", "frames": ["#0 f ()"]})
    )
    (tmp_path / "jobs.json").write_text(
        json.dumps({"builds": {"baseline": {"job": str(job), "rc": 1}}})
    )
    outcomes, jobs = collect(tmp_path)
    crashed = [o for o in outcomes if o.crash is not None]
    assert jobs == [job]
    assert len(crashed) == 1 and crashed[0].crash is not None
    assert crashed[0].crash.signal == "SIGSEGV" and crashed[0].crash.frames == ("#0 f ()",)


def test_binaries_of_mapping_requires_every_build() -> None:
    with pytest.raises(InputError, match="patched"):
        binaries_of({"baseline": Path("/x")}, ("baseline", "patched"))
    found, fw = binaries_of({"baseline": Path("/x")}, ("baseline",))
    assert found == {"baseline": Path("/x")} and fw == ()


def test_finished_builds_are_those_whose_first_job_has_results(tmp_path: Path) -> None:
    # After a test-VM crash the host keeps a build's results only when its job finished;
    # the next boot runs the others.
    from seriesgate.functional.runner import finished_builds

    jobs_json = tmp_path / "jobs.json"
    both = ("baseline", "patched")
    assert finished_builds(jobs_json, both) == []
    job = tmp_path / "baseline" / "job-1"
    job.mkdir(parents=True)
    jobs_json.write_text(json.dumps({"builds": {"baseline": {"job": str(job)}}}))
    assert finished_builds(jobs_json, both) == []  # the VM died before results.json
    (job / "results.json").write_text("{}")
    assert finished_builds(jobs_json, both) == ["baseline"]
    pjob = tmp_path / "patched" / "job-1"
    pjob.mkdir(parents=True)
    (pjob / "results.json").write_text("{}")
    jobs_json.write_text(
        json.dumps({"builds": {"baseline": {"job": str(job)}, "patched": {"job": str(pjob)}}})
    )
    assert finished_builds(jobs_json, both) == ["baseline", "patched"]


def _fake_boot(calls: list[dict[str, object]], lose_first: bool):
    """A stand-in for one test-VM boot (the policy under test is the host's loop): it
    writes a real jobs.json whose jobs are copies of a real Avocado job; the first boot
    "loses" the VM after baseline's job when ``lose_first``."""
    from seriesgate.functional.model import FunctionalResults

    def one_boot(_builds_in: object, _env: object, **kw: object) -> FunctionalResults:
        builds = list(kw["builds"])  # type: ignore[call-overload]
        reused = dict(kw.get("reused") or {})  # type: ignore[call-overload]
        results_dir = Path(str(kw["results_dir"]))
        calls.append({"builds": builds, "reused": sorted(reused)})
        lost = lose_first and len(calls) == 1
        index: dict[str, object] = {"builds": {}}
        done = []
        for b in builds:
            if b in reused:
                index["builds"][b] = reused[b]  # type: ignore[index]
                done.append(b)
                continue
            if lost and done:
                break
            job = results_dir / b / "job-1"
            shutil.copytree(JOB, job)
            index["builds"][b] = {"job": str(job)}  # type: ignore[index]
            done.append(b)
        results_dir.mkdir(parents=True, exist_ok=True)
        (results_dir / "jobs.json").write_text(json.dumps(index))
        env = {
            "builds_not_run": [b for b in builds if b not in done],
            "l1_failure_after_first_jobs": "L1 panic" if lost else None,
            "jobs_index": str(results_dir / "jobs.json"),
        }
        return FunctionalResults(outcomes=(), job_dirs=(), env=env)

    return one_boot


def test_isolated_boots_again_only_for_the_builds_whose_job_did_not_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The re-boot policy: a VM lost during patched's job keeps baseline's results, and the
    next boot gets baseline's finished job (for the retry decision) without re-running it."""
    from seriesgate.functional import runner

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(runner, "run_functional", _fake_boot(calls, lose_first=True))
    monkeypatch.setattr(runner, "test_files", lambda: [BOOT_TESTS])
    results, not_run = runner.run_functional_isolated(
        {"baseline": JOB, "patched": JOB},
        object(),  # type: ignore[arg-type]
        results_dir=tmp_path,
        tags=("quick",),
        reuse_baseline=False,
    )
    assert calls == [
        {"builds": ["baseline", "patched"], "reused": []},
        {"builds": ["baseline", "patched"], "reused": ["baseline"]},
    ]
    assert sorted({o.build for o in results.outcomes}) == ["baseline", "patched"]
    # Only the tests the tags select count (the captured job also holds an untagged test).
    assert [o.name for o in results.outcomes] == ["X.test_a", "X.test_a"]
    assert not_run == []
    assert any("baseline were kept; booted again for patched" in n for n in results.env["notes"])
    # The console says why the group boots again, not only the report.
    said = capsys.readouterr()
    assert "test environment failed (L1 panic); kept baseline; booted again for patched" in (
        said.out + said.err
    )


def test_isolated_reuses_a_stored_baseline_and_runs_only_patched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First run: baseline measured and stored; second run: it comes from the cache (and is
    said so in the facts); --fresh-baseline measures it again."""
    from seriesgate.functional import runner
    from seriesgate.testenv.model import GuestImage, Mode, TestEnv

    monkeypatch.setenv("SERIESGATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(runner, "test_files", lambda: [BOOT_TESTS])
    binary = tmp_path / "qemu"
    binary.write_bytes(b"baseline binary")
    initrd = tmp_path / "l2.cpio"
    initrd.write_bytes(b"l2")
    env = TestEnv(Mode.VM, "6.12", GuestImage(initrd, initrd, ""), tmp_path, True)
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(runner, "run_functional", _fake_boot(calls, lose_first=False))
    bins = {"baseline": binary, "patched": binary}

    def run(name: str, tags: tuple[str, ...] = ("quick",), **kw: bool) -> runner.FunctionalResults:
        return runner.run_functional_isolated(
            bins, env, results_dir=tmp_path / name, tags=tags, **kw
        )[0]

    first = run("run1")
    assert calls[-1]["reused"] == [] and "baseline_reuse" not in first.env
    second = run("run2")
    assert calls[-1]["reused"] == ["baseline"]
    assert second.env["baseline_reuse"]["from_run"] == "run1"
    assert {o.build for o in second.outcomes} == {"baseline", "patched"}
    run("run3", fresh_baseline=True)
    assert calls[-1]["reused"] == []
    binary.write_bytes(b"another baseline binary")  # a new base: its own baseline
    run("run4")
    assert calls[-1]["reused"] == []
    # A baseline of every test serves a run of some: only the selected tests are kept.
    binary.write_bytes(b"a third baseline binary")
    run("run5", tags=())
    assert calls[-1]["reused"] == []
    sixth = run("run6")
    assert calls[-1]["reused"] == ["baseline"]
    assert {o.name for o in sixth.outcomes} == {"X.test_a"}  # the quick one


def test_repaired_runs_the_gate_tests_and_the_failure_paths_under_all() -> None:
    from seriesgate.functional import runner
    from seriesgate.functional.jobs import test_files

    migration = next(g for g in runner.test_groups(test_files(), ()) if g.label == "migration")
    files = sorted({c.file for c in migration.classes})
    tags = runner.variant_tags("repaired", ())
    chosen = {c.cls for c in runner.test_classes(files, tags)}
    assert {"MigrationCorrectness", "MigrationMapOrdering", "MigrationDestinationFaults"} <= chosen
    assert "MigrationPingPong" not in chosen and "MigrationCancel" not in chosen
    assert runner.variant_tags("repaired", ("slow",)) == ("slow",)  # asked for: the same


def test_variants_follow_the_build_stage() -> None:
    from seriesgate.functional import runner

    assert runner.variants_of({"baseline": JOB, "patched": JOB}) == ("baseline", "patched")
    three = {"baseline": JOB, "patched": JOB, "repaired": JOB}
    assert runner.variants_of(three) == ("baseline", "patched", "repaired")


def test_a_bisect_probe_whose_test_vm_is_lost_is_booted_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One lost L1 must not cost the bisect its answer: the probe boots again, into its own
    directory; a second loss, and SIGTERM, are raised."""
    from seriesgate.errors import InfraError
    from seriesgate.functional import runner
    from seriesgate.functional.model import FunctionalResults
    from seriesgate.testenv.vm import Terminated

    dirs: list[Path] = []
    losses = [InfraError("L1 test VM stopped: its heartbeat is 95 s old")]

    def one_boot(_builds_in: object, _env: object, **kw: object) -> FunctionalResults:
        dirs.append(Path(str(kw["results_dir"])))
        if losses:
            raise losses.pop(0)
        return FunctionalResults(outcomes=tuple(parse_job(JOB, "probe")), job_dirs=(), env={})

    monkeypatch.setattr(runner, "run_functional", one_boot)
    probe = runner.run_single_test(JOB, "x", env=object(), results_dir=tmp_path)  # type: ignore[arg-type]
    assert probe.build == "probe"
    assert dirs == [tmp_path, tmp_path / runner.PROBE_AGAIN_DIR]
    for lost in ([InfraError("lost"), InfraError("lost again")], [Terminated("SIGTERM")]):
        losses[:] = lost
        with pytest.raises(InfraError):
            runner.run_single_test(JOB, "x", env=object(), results_dir=tmp_path)  # type: ignore[arg-type]


def test_a_tag_subset_reuses_the_baseline_of_every_test_when_its_group_is_smaller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make check` (every test) stores each group's baseline; a later `--tags quick` run,
    whose single-VM group has fewer classes (other Avocado references), reuses it."""
    from seriesgate.functional import runner
    from seriesgate.functional.jobs import test_files
    from seriesgate.testenv.model import GuestImage, Mode, TestEnv

    files = test_files()
    full = {g.label: g.references for g in runner.test_groups(files, ())}
    quick = {g.label: g.references for g in runner.test_groups(files, ("quick",))}
    assert quick[runner.SINGLE_VM_GROUP] != full[runner.SINGLE_VM_GROUP]  # the case at hand
    monkeypatch.setenv("SERIESGATE_CACHE", str(tmp_path / "cache"))
    binary = tmp_path / "qemu"
    binary.write_bytes(b"baseline binary")
    initrd = tmp_path / "l2.cpio"
    initrd.write_bytes(b"l2")
    env = TestEnv(Mode.VM, "6.12", GuestImage(initrd, initrd, ""), tmp_path, True)
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(runner, "run_functional", _fake_boot(calls, lose_first=False))
    bins = {"baseline": binary, "patched": binary}
    runner.run_functional_isolated(bins, env, results_dir=tmp_path / "all", tags=())
    assert all(c["reused"] == [] for c in calls) and len(calls) == len(full)
    calls.clear()
    runner.run_functional_isolated(bins, env, results_dir=tmp_path / "quick", tags=("quick",))
    assert calls == [{"builds": ["baseline", "patched"], "reused": ["baseline"]}] * len(quick)
