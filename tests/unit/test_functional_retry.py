"""The retry decision table and the baseline cache key, on real captured Avocado results."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from seriesgate.functional import baseline_cache as bc
from seriesgate.functional.model import Crash, Direction, Status, TestOutcome
from seriesgate.functional.retry import ReproducedCrash, decide, reproduced_crashes, retry_refs
from seriesgate.functional.runner import parse_job

JOB = Path(__file__).parent / "data" / "functional" / "avocado-113-job"
# A real backtrace of the patched destination (RFC v2, docs/findings.md §1).
FRAMES = (
    "#0  0x000055c4c29a20ba in qemu_get_subqueue (nic=0x0, queue_index=0) at ../net/net.c:355",
    "#1  0x000055c4c2a8af82 in virtio_net_load_setup (f=<optimized out>, opaque=0x55c4c5f0) "
    "at ../hw/net/virtio-net.c:3913",
    "#2  0x000055c4c2c1d4e0 in qemu_loadvm_state_setup (f=0x55c4ff04e000) at "
    "../migration/savevm.c:2770",
)


def outcomes(build: str) -> dict[str, TestOutcome]:
    """X.test_a passes, X.test_b fails: Avocado 113's own results.json."""
    return {o.name: o for o in parse_job(JOB, build)}


def crashed(o: TestOutcome, frames: tuple[str, ...] = FRAMES) -> TestOutcome:
    return replace(o, status=Status.ERROR, crash=Crash("qemu", "SIGSEGV", frames))


def table(listed: list[TestOutcome]) -> dict[tuple[str, str], tuple[bool, str]]:
    return {(d.build, d.test_id.rsplit(":", 1)[1]): (d.retry, d.note) for d in decide(listed)}


def test_fails_on_patched_only_retries_patched() -> None:
    base, pat = outcomes("baseline"), outcomes("patched")
    listed = [base["X.test_a"], replace(pat["X.test_a"], status=Status.FAIL)]
    got = table(listed)
    assert got[("baseline", "X.test_a")] == (False, "")
    assert got[("patched", "X.test_a")] == (True, "retried: passes on baseline")


def test_fails_on_baseline_only_retries_baseline() -> None:
    base, pat = outcomes("baseline"), outcomes("patched")
    listed = [base["X.test_b"], replace(pat["X.test_b"], status=Status.PASS)]
    assert table(listed)[("baseline", "X.test_b")] == (True, "retried: passes on patched")


def test_same_failure_on_both_builds_is_not_retried() -> None:
    base, pat = outcomes("baseline"), outcomes("patched")
    got = table([base["X.test_b"], pat["X.test_b"]])
    assert got[("baseline", "X.test_b")] == (False, "not retried: same on both builds")
    assert got[("patched", "X.test_b")] == (False, "not retried: same on both builds")
    assert retry_refs(decide([base["X.test_b"], pat["X.test_b"]]), "patched") == []


def test_different_failures_are_retried_on_both() -> None:
    base, pat = outcomes("baseline"), outcomes("patched")
    got = table([base["X.test_b"], crashed(pat["X.test_b"])])
    assert got[("baseline", "X.test_b")][0] and got[("patched", "X.test_b")][0]


def test_a_crash_in_one_test_is_retried() -> None:
    base, pat = outcomes("baseline"), outcomes("patched")
    listed = [replace(base["X.test_a"], status=Status.PASS), crashed(pat["X.test_a"])]
    assert table(listed)[("patched", "X.test_a")] == (True, "retried: passes on baseline")
    refs = retry_refs(decide(listed), "patched")
    assert refs == [pat["X.test_a"].test_id + "$"]  # anchored: Avocado matches a regex


def test_a_crash_signature_in_several_tests_of_a_build_is_reproduced_not_retried() -> None:
    # Cold run of 2026-12-07: patched's destination crashed in all 4 migration tests with
    # one signature; the retry of the first (31.8 s) could not make it a flake.
    base, pat = outcomes("baseline"), outcomes("patched")
    listed = [base["X.test_a"], base["X.test_b"]]
    listed += [crashed(pat["X.test_a"]), crashed(replace(pat["X.test_b"], status=Status.FAIL))]
    got = table([replace(o, status=Status.PASS) if o.build == "baseline" else o for o in listed])
    note = (
        "not retried: the same crash (SIGSEGV in qemu_get_subqueue) in 2 tests of this build, "
        "reproduced"
    )
    assert got[("patched", "X.test_a")] == (False, note)
    assert got[("patched", "X.test_b")] == (False, note)
    assert retry_refs(decide(listed), "patched") == []


def test_another_crash_site_is_retried_too() -> None:
    base, pat = outcomes("baseline"), outcomes("patched")
    other = ("#0  0x1 in vhost_vdpa_dma_map (v=0x0) at ../hw/virtio/vhost-vdpa.c:99",)
    listed = [replace(base["X.test_b"], status=Status.PASS), base["X.test_a"]]
    listed += [crashed(pat["X.test_a"]), crashed(pat["X.test_b"], other)]
    got = table(listed)
    assert got[("patched", "X.test_a")][0] and got[("patched", "X.test_b")][0]


def test_repaired_is_compared_with_baseline_not_with_patched() -> None:
    base, pat, rep = outcomes("baseline"), outcomes("patched"), outcomes("repaired")
    listed = [base["X.test_b"], pat["X.test_b"], replace(rep["X.test_b"], status=Status.PASS)]
    got = table(listed)
    assert got[("patched", "X.test_b")][0] is False  # fails like baseline
    assert got[("baseline", "X.test_b")] == (True, "retried: passes on repaired")


def test_a_claim_failing_on_a_variant_as_on_baseline_is_retried() -> None:
    # Warm run of 2026-12-07: repaired MigrationQmpResponsive failed on one 561 ms sample
    # (p99 77 ms) after passing in the cold run; baseline fails it by design (3508 ms). Not
    # retried, the claim said "not shown" in one run and "confirmed" in the other.
    base, pat = outcomes("baseline"), outcomes("patched")
    claim = Direction.FIXED_BY_SERIES
    listed = [replace(base["X.test_b"], direction=claim), replace(pat["X.test_b"], direction=claim)]
    got = table(listed)
    assert got[("patched", "X.test_b")] == (
        True,
        "retried: a claim fails as on baseline",
    )
    assert got[("baseline", "X.test_b")] == (False, "not retried: same on both builds")
    # An invariant failing alike on both is still not retried.
    assert table([base["X.test_b"], pat["X.test_b"]])[("patched", "X.test_b")][0] is False


def test_a_second_attempt_is_not_run_a_third_time() -> None:
    base, pat = outcomes("baseline"), outcomes("patched")
    listed = [replace(base["X.test_b"], attempts=2), replace(pat["X.test_b"], status=Status.PASS)]
    assert table(listed)[("baseline", "X.test_b")] == (False, "failed twice already")


def later_note(later: list[TestOutcome], earlier: list[ReproducedCrash]) -> str:
    """A later boot's decisions given an earlier boot's reproduced crashes: patched's crash
    is not retried; the note of that decision."""
    decisions = decide(later, reproduced=earlier)
    assert retry_refs(decisions, "patched") == []
    return decisions[1].note


def test_a_crash_reproduced_in_an_earlier_boot_is_not_retried_in_a_later_one() -> None:
    # runF (2026-12-07): the migration group's retry reproduced patched's crash; the
    # migration-3072mb group then retried the same signature again (~30 s for nothing).
    base, pat = outcomes("baseline"), outcomes("patched")
    first_boot = [crashed(replace(pat["X.test_a"], attempts=2))]
    earlier = reproduced_crashes(first_boot)
    assert [(r.build, r.test) for r in earlier] == [("patched", "X.test_a")]
    assert ReproducedCrash.from_json(json.loads(json.dumps(earlier[0].to_json()))) == earlier[0]
    later = [replace(base["X.test_b"], status=Status.PASS), crashed(pat["X.test_b"])]
    assert later_note(later, earlier) == (
        "not retried: same crash as X.test_a (SIGSEGV in qemu_get_subqueue), "
        "which crashed again on its retry"
    )
    # A crash that passed on its retry (flaky) proves nothing: the later boot retries.
    flaky = reproduced_crashes([replace(first_boot[0], flaky=True)])
    assert retry_refs(decide(later, reproduced=flaky), "patched") == [pat["X.test_b"].test_id + "$"]
    # Another build's reproduced crash does not stand for this one.
    other = [replace(earlier[0], build="repaired")]
    assert retry_refs(decide(later, reproduced=other), "patched") != []


def test_a_crash_of_two_tests_in_one_boot_is_not_retried_in_a_later_boot() -> None:
    # Cold run of session 8: patched crashed every migration test with one signature (not
    # retried there); a later group with one crashing test retried it for nothing.
    base, pat = outcomes("baseline"), outcomes("patched")
    first_boot = [crashed(pat["X.test_a"]), crashed(pat["X.test_b"])]
    earlier = reproduced_crashes(first_boot)
    assert [(r.build, r.test, r.tests) for r in earlier] == [("patched", "X.test_a", 2)]
    assert ReproducedCrash.from_json(json.loads(json.dumps(earlier[0].to_json()))) == earlier[0]
    later = [replace(base["X.test_b"], status=Status.PASS), crashed(pat["X.test_b"])]
    assert later_note(later, earlier) == (
        "not retried: same crash as X.test_a (SIGSEGV in qemu_get_subqueue), "
        "which crashed 2 tests of this build"
    )
    # One crashing test, or two of which one passed its retry, is not reproduced.
    assert reproduced_crashes(first_boot[:1]) == []
    assert reproduced_crashes([first_boot[0], replace(first_boot[1], flaky=True)]) == []


# -- the baseline cache --------------------------------------------------------------------

BASE = {
    "binary_digest": "b" * 64,
    "test_code_digest": "t" * 64,
    "assets": {"manifest": {"kver": "6.12.117+deb12-amd64"}, "vmlinuz": "k" * 64},
    "references": ["tests/functional/test_migration.py:MigrationCorrectness\\."],
    "tags": ["quick", "core", "claim"],
}


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("binary_digest", "c" * 64),
        ("test_code_digest", "u" * 64),
        ("assets", {"manifest": {"kver": "6.12.118+deb12-amd64"}, "vmlinuz": "k" * 64}),
        ("assets", {"manifest": {"kver": "6.12.117+deb12-amd64"}, "vmlinuz": "l" * 64}),
        ("references", ["tests/functional/test_migration.py:MigrationSvqDestination\\."]),
        ("tags", []),
        ("version", "0.2.0"),
        ("shared_guests", False),
    ],
)
def test_each_input_changes_the_key(field: str, other: object) -> None:
    base = {**BASE, "version": "0.1.0", "shared_guests": True}
    same = bc.key_of(bc.key_components(**base))  # type: ignore[arg-type]
    assert same == bc.key_of(bc.key_components(**base))  # type: ignore[arg-type]
    changed = {**base, field: other}
    assert bc.key_of(bc.key_components(**changed)) != same  # type: ignore[arg-type]


def test_test_code_digest_follows_file_contents(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    test = tmp_path / "tests" / "test_x.py"
    test.write_text("assert 1\n")
    first = bc.tree_digest([tmp_path])
    test.write_text("assert 2\n")
    assert bc.tree_digest([tmp_path]) != first
    (tmp_path / "tests" / "runner.py").write_text("# orchestration only\n")
    assert bc.tree_digest([tmp_path]) == bc.tree_digest([tmp_path])


def test_the_real_test_code_digest_covers_the_functional_tests() -> None:
    digest = bc.tree_digest(bc.TEST_CODE)
    assert len(digest) == 64
    assert digest != bc.tree_digest(bc.TEST_CODE[1:])  # tests/functional counts


def test_store_and_load_round_trip(tmp_path: Path) -> None:
    job = tmp_path / "run1" / "baseline" / "job-1"
    shutil.copytree(JOB, job)
    comps = bc.key_components(**BASE)  # type: ignore[arg-type]
    key = bc.key_of(comps)
    stored = bc.store(key, comps, {"job": str(job)}, from_run="run1", root=tmp_path / "c")
    shutil.rmtree(tmp_path / "run1")  # the original results may be deleted
    found = bc.load(key, tmp_path / "c")
    assert found is not None and found.from_run == "run1" and found == stored
    reread = {o.name: o.status for o in parse_job(Path(found.entry["job"]), "baseline")}
    assert reread == {"X.test_a": Status.PASS, "X.test_b": Status.FAIL}
    record = json.loads((tmp_path / "c" / key / "record.json").read_text())
    assert record["components"]["baseline_binary_sha256"] == "b" * 64
    assert bc.load("0" * 24, tmp_path / "c") is None


def test_flaky_or_lost_baseline_results_are_measured_again() -> None:
    base = outcomes("baseline")
    assert bc.unreliable(list(base.values())) == {}
    flaky = replace(base["X.test_b"], status=Status.PASS, flaky=True, attempts=2)
    assert bc.unreliable([base["X.test_a"], flaky]) == {flaky.test_id: "flaky"}
    lost = replace(base["X.test_b"], status=Status.INTERRUPTED)
    assert bc.unreliable([lost]) == {lost.test_id: "no result (INTERRUPTED)"}
    assert bc.unreliable([crashed(base["X.test_b"])]) == {}  # a crash is a result


def test_the_store_keeps_what_to_measure_again(tmp_path: Path) -> None:
    comps = bc.key_components(**BASE)  # type: ignore[arg-type]
    key = bc.key_of(comps)
    again = {"test_x.py:X.test_b": "flaky"}
    bc.store(key, comps, {"job": str(JOB)}, from_run="r", remeasure=again, root=tmp_path)
    found = bc.load(key, tmp_path)
    assert found is not None and found.entry["remeasure"] == ["test_x.py:X.test_b"]


def test_bisect_probes_are_answered_from_the_cache_the_second_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe's real Avocado job is kept; the same binary and test later need no boot;
    another binary (another patch) does."""
    from seriesgate.functional.bisect import CachedProbes
    from seriesgate.testenv.model import GuestImage, Mode, TestEnv

    monkeypatch.setenv("SERIESGATE_CACHE", str(tmp_path / "cache"))
    initrd = tmp_path / "l2.cpio"
    initrd.write_bytes(b"l2")
    env = TestEnv(Mode.VM, "6.12", GuestImage(initrd, initrd, ""), tmp_path, True)
    calls: list[Path] = []

    def boot(binary: Path, test_id: str, _env: object, results: Path, _fw: object) -> TestOutcome:
        calls.append(binary)
        shutil.copytree(JOB, results / "probe" / "job-1")
        return next(
            o for o in parse_job(results / "probe" / "job-1", "probe") if o.test_id == test_id
        )

    patch5, patch6 = tmp_path / "qemu-5", tmp_path / "qemu-6"
    patch5.write_bytes(b"patch 5")
    patch6.write_bytes(b"patch 6")
    test_id = outcomes("x")["X.test_b"].test_id
    probes = CachedProbes(env, boot)
    run = tmp_path / "run1" / "bisect" / "X.test_b"
    first = probes(patch5, test_id, env, run / "patch-05", ())
    again = probes(patch5, test_id, env, tmp_path / "run2" / "bisect" / "t" / "patch-05", ())
    assert calls == [patch5] and probes.reused == 1
    assert again.status is first.status is Status.FAIL
    probes(patch6, test_id, env, run / "patch-06", ())
    assert calls == [patch5, patch6]
