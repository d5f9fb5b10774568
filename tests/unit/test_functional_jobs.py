"""run_builds end to end with real Avocado jobs (on the host): first jobs, the retry
decision across builds, retry jobs, progress lines, jobs.json and what the host reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seriesgate.functional.jobs import finished_line, run_builds
from seriesgate.functional.model import Status
from seriesgate.functional.runner import collect

SAMPLE = "tests/unit/data/functional/build_dependent_tests.py"


def test_retries_only_what_could_change_the_verdict(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    builds = {"baseline": Path("/qemu/baseline"), "patched": Path("/qemu/patched")}
    index = run_builds(builds, tmp_path, tests=[SAMPLE], job_timeout=300)
    err = capfd.readouterr().err
    # One progress line per finished test, first jobs and the retry.
    assert "[functional] baseline Builds.test_passes PASS" in err
    assert "[functional] patched Builds.test_fails_on_patched FAIL" in err
    assert "[functional] patched (retry) Builds.test_fails_on_patched FAIL" in err
    assert "retrying 1 failed test(s)" in err and "baseline: retrying" not in err
    assert "retry_jobs" not in index["builds"]["baseline"]
    assert len(index["builds"]["patched"]["retry_jobs"]) == 1
    on_disk = json.loads((tmp_path / "jobs.json").read_text())
    assert on_disk["builds"].keys() == index["builds"].keys()

    outcomes, jobs = collect(tmp_path)
    by = {(o.build, o.name): o for o in outcomes}
    same = by[("patched", "Builds.test_fails_everywhere")]
    assert same.status is Status.FAIL and same.attempts == 1
    assert same.retry_note == "not retried: same on both builds"
    differs = by[("patched", "Builds.test_fails_on_patched")]
    assert differs.attempts == 2 and not differs.flaky
    assert differs.retry_note == "retried: passes on baseline"
    assert by[("baseline", "Builds.test_fails_on_patched")].status is Status.PASS
    assert len(jobs) == 3


def test_a_reused_build_runs_no_first_job_but_takes_part(tmp_path: Path) -> None:
    first = run_builds(
        {"baseline": Path("/qemu/baseline")}, tmp_path / "one", tests=[SAMPLE], retry=False
    )
    reused = {"baseline": {"job": first["builds"]["baseline"]["job"]}}
    builds = {"baseline": Path("/qemu/baseline"), "patched": Path("/qemu/patched")}
    index = run_builds(builds, tmp_path / "two", tests=[SAMPLE], reused=reused)
    assert index["builds"]["baseline"]["reused"] is True
    assert not (tmp_path / "two" / "baseline").exists()  # no new baseline job
    notes = {(d["build"], d["test"].rsplit(":", 1)[1]): d["note"] for d in index["retry_decisions"]}
    assert notes[("patched", "Builds.test_fails_on_patched")] == "retried: passes on baseline"
    assert notes[("baseline", "Builds.test_fails_everywhere")] == (
        "not retried: same on both builds"
    )


def test_finished_line_names_build_test_status_seconds() -> None:
    line = " (3/3) tests/unit/data/functional/x.py:Builds.test_passes:  PASS (0.03 s)"
    assert finished_line("patched", line) == (
        "[functional] patched Builds.test_passes PASS 0.0 s (3/3)"
    )
    assert finished_line("patched", "JOB TIME   : 1.63 s") is None


def test_a_reused_build_measures_again_what_was_flaky(tmp_path: Path) -> None:
    first = run_builds(
        {"baseline": Path("/qemu/baseline")}, tmp_path / "one", tests=[SAMPLE], retry=False
    )
    job = first["builds"]["baseline"]["job"]
    cached = {o.name: o for o in collect(tmp_path / "one")[0]}
    again = cached["Builds.test_passes"].test_id
    reused = {"baseline": {"job": job, "remeasure": [again]}}
    index = run_builds(
        {"baseline": Path("/qemu/baseline")}, tmp_path / "two", tests=[SAMPLE], reused=reused
    )
    entry = index["builds"]["baseline"]
    assert "remeasure" not in entry and len(entry["replace_jobs"]) == 1
    outcomes, jobs = collect(tmp_path / "two")
    by = {o.name: o for o in outcomes}
    assert len(jobs) == 3 and len(by) == 3  # cached, measured again, retry (no peer build)
    fresh = by["Builds.test_passes"]
    assert fresh.status is Status.PASS and fresh.logdir is not None
    assert str(tmp_path / "two") in str(fresh.logdir)  # from the new job, not the cache
    assert str(tmp_path / "one") in str(by["Builds.test_fails_on_patched"].logdir)


def test_every_test_class_tells_avocado_it_is_one() -> None:
    # Without ":avocado: enable" Avocado's resolver parses each class's ancestry (our base
    # classes, then Avocado's own modules) once per class and reference: 0.76 s natively for
    # the migration group's three references, about 10 s per job in the TCG test VM; with it,
    # 0.24 s. A base class without tests says ":avocado: disable".
    import ast

    from seriesgate.functional.jobs import test_files

    for path in test_files():
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef):
                continue
            doc = ast.get_docstring(node) or ""
            has_tests = any(
                isinstance(f, ast.FunctionDef) and f.name.startswith("test") for f in node.body
            )
            wanted = ":avocado: enable" if has_tests else ":avocado: disable"
            assert wanted in doc.splitlines(), f"{path.name}:{node.name} lacks {wanted!r}"
