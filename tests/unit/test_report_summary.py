"""build_summary from typed stage results, load_summary, and merging partial summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_report_helpers as h

from seriesgate.errors import InputError
from seriesgate.functional.model import Crash, Direction
from seriesgate.report.merge import merge_summaries
from seriesgate.report.summary import (
    build_summary,
    cover_testing_sentences,
    load_summary,
    write_summary,
)

TIMES = {"fetch": 1.2, "apply": 30.4, "build": 390.0, "testenv": 12.0, "functional": 240.0}


def full(outcomes: list[object] | None = None, **kw: object) -> dict[str, object]:
    return build_summary(
        series_set=h.series_set(),
        tree=h.tree(),
        builds=h.builds(),
        env=h.env(),
        functional=h.functional(outcomes if outcomes is not None else h.passing_outcomes()),  # type: ignore[arg-type]
        stage_times=TIMES,
        **kw,  # type: ignore[arg-type]
    )


def test_passing_run() -> None:
    s = full()
    assert s["overall"]["verdict"] == "pass" and s["overall"]["exit_code"] == 0
    series = s["series"]
    assert series["message_id"] == h.COVER_ID
    assert series["version"] == 2 and series["patch_count"] == 10
    # the cover subject as posted, read from the real mbox (folded header unfolded)
    assert series["cover_subject"] == (
        "[RFC PATCH v2 00/10] Map memory at destination .load_setup in vDPA-net migration"
    )
    assert s["base"] == {
        "spec": "debian:qemu/trixie",
        "version": "1:10.0.13+ds-1",
        "commits": {
            "base": "a" * 40,
            "baseline": "b" * 40,
            "series": "c" * 40,
            "patched": "d" * 40,
        },
    }
    labels = [p["apply"] for p in s["patches"] if p["role"] == "series"]
    assert labels[0] == "already-present" and labels[4] == "fuzz(2)" and labels[1] == "clean"
    p8 = s["patches"][7]
    assert p8["checkpatch"] == {
        "errors": 1,
        "warnings": 2,
        "messages": ["ERROR: line over 90 characters"],
    }
    assert s["patches"][9]["builds"] is False and s["patches"][0]["builds"] is True
    assert s["patches"][-1]["role"] == "fixup" and s["patches"][-1]["builds"] is None
    claims = {c["claim"]: c["verdict"] for c in s["claims"]}
    assert claims == {"map-at-load-setup": "confirmed", "svq-iova-tree": "not-shown"}
    assert {b["name"]: b["ok"] for b in s["builds"]} == {
        "baseline": True,
        "patched": True,
        "posted": False,
    }
    assert "the series as posted does not build" in " ".join(s["findings"])
    assert any("does not build at this patch" in f for f in s["findings"])
    env = s["environment"]
    assert env["mode"] == "vm" and env["kvm_in_l1"] is True
    assert env["qemu_configure"].startswith("../configure --target-list=x86_64-softmmu")
    assert env["notes"] == ["vdpa_sim built with queue max 1024 (test device, not code under test)"]
    assert s["stage_times"]["build"] == 390.0
    tests = {(t["name"], t["build"]): t for t in s["tests"]}
    t = tests[("MapOrdering.test_maps_before_stop", "patched")]
    assert t["claim"] == "map-at-load-setup" and t["direction"] == "fixed-by-series"
    assert t["measurements"] == {"maps_in_downtime": 0, "maps_setup_phase": 64}
    assert t["file"] == "tests/functional/test_migration.py"
    json.dumps(s)  # serialisable as is


def test_queue_note_from_the_testenv_manifest() -> None:
    # the keys and texts the testenv stage writes into its assets manifest
    manifest = {
        "test_device_patches": [
            "drivers/vdpa/vdpa_sim/vdpa_sim.c: #define VDPASIM_QUEUE_MAX 256 -> "
            "#define VDPASIM_QUEUE_MAX 1024"
        ],
        "test_device_note": "vdpa_sim is the test device, not code under test",
    }
    s = build_summary(
        series_set=h.series_set(),
        env=h.env(manifest=manifest),
        stage_times={},
    )
    assert s["environment"]["notes"] == [
        "vdpa_sim built with queue max 1024 (test device, not code under test)"
    ]


def test_no_queue_note_for_stock_device() -> None:
    s = build_summary(
        series_set=h.series_set(),
        tree=h.tree(),
        builds=h.builds(),
        env=h.env(manifest={"vdpa_queue_max": 256, "notes": ["L2 runs on TCG"]}),
        functional=h.functional(h.passing_outcomes()),
        stage_times={},
    )
    assert s["environment"]["notes"] == ["L2 runs on TCG"]


def test_conflict_run_has_no_builds_and_fails() -> None:
    s = build_summary(
        series_set=h.series_set(), tree=h.tree(conflict_at=3), stage_times={"apply": 3.0}
    )
    assert s["overall"]["exit_code"] == 1
    assert s["overall"]["reasons"] == [
        "conflict: 03/10 vdpa: merge _begin_batch into _batch_begin_once"
    ]
    assert s["builds"] == [] and s["tests"] == [] and s["claims"] == []
    assert [p["apply"] for p in s["patches"]][2:5] == ["conflict", "not-tried", "not-tried"]
    assert s["patches"][2]["failing_hunks"][0]["file"] == "hw/virtio/vhost-vdpa.c"


def test_run_stopped_before_apply_lists_patches_from_the_series() -> None:
    s = build_summary(series_set=h.series_set(), stage_times={}, error="apt not reachable")
    assert s["overall"]["exit_code"] == 2
    assert s["overall"]["undecided"][0] == "error: apt not reachable"
    assert [p["subject"] for p in s["patches"]] == list(h.SUBJECTS)
    assert all(p["apply"] is None for p in s["patches"])
    assert s["base"]["spec"] == "debian:qemu/trixie" and s["base"]["version"] is None


def test_patched_build_failure_fails_gate() -> None:
    s = build_summary(
        series_set=h.series_set(),
        tree=h.tree(),
        builds=h.builds(patched_ok=False),
        stage_times={},
    )
    assert s["overall"]["verdict"] == "fail"
    assert s["overall"]["reasons"] == ["patched build fails"]
    patched = next(b for b in s["builds"] if b["name"] == "patched")
    assert patched["errors"][0]["line"] == 3912


def test_regression_crash_and_flaky(tmp_path: Path) -> None:
    log = tmp_path / "qemu-dst.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "qemu: terminated by SIGSEGV\n")
    crash = Crash("qemu-system-x86_64", "SIGSEGV", ("#0 vhost_vdpa_load_setup", "#1 main"), log)
    testdir = tmp_path / "test-1"
    testdir.mkdir()
    (testdir / "debug.log").write_text("step 1\nmigration hung at 'active' for 60 s\n")
    outcomes = [
        *h.pair("Migration.test_correctness", "PASS", "PASS", flaky=False),
        h.outcome("Cancel.test_cancel", "baseline", "PASS"),
        h.outcome(
            "Cancel.test_cancel",
            "patched",
            "FAIL",
            fail_reason="destination hung after migrate_cancel",
            logdir=testdir,
        ),
        h.outcome(
            "SvqDest.test_svq",
            "baseline",
            "FAIL",
            claim="svq-iova-tree",
            direction=Direction.FIXED_BY_SERIES,
        ),
        h.outcome(
            "SvqDest.test_svq",
            "patched",
            "ERROR",
            claim="svq-iova-tree",
            direction=Direction.FIXED_BY_SERIES,
            crash=crash,
        ),
        h.outcome("PingPong.test_three_round_trips", "baseline", "PASS"),
        h.outcome("PingPong.test_three_round_trips", "patched", "PASS", flaky=True),
    ]
    s = full(outcomes)
    assert s["overall"]["exit_code"] == 1
    assert "regressed: Cancel.test_cancel" in s["overall"]["reasons"]
    assert "patched QEMU crashed: SvqDest.test_svq" in s["overall"]["reasons"]
    assert s["crashes"][0]["signal"] == "SIGSEGV" and s["crashes"][0]["build"] == "patched"
    assert s["crashes"][0]["log_excerpt"].endswith("terminated by SIGSEGV")
    assert s["crashes"][0]["log_excerpt"].count("\n") < 40
    assert s["flaky"] == [
        {"build": "patched", "test": "PingPong.test_three_round_trips", "attempts": 2}
    ]
    cancel = next(
        t for t in s["tests"] if t["name"] == "Cancel.test_cancel" and t["build"] == "patched"
    )
    assert "hung at 'active'" in cancel["log_excerpt"]
    claims = {c["claim"]: c for c in s["claims"]}
    assert claims["svq-iova-tree"]["verdict"] == "not-shown"
    assert claims["svq-iova-tree"]["baseline"] == "1 fails"


def test_tests_that_never_ran_leave_the_run_undecided() -> None:
    s = full([*h.pair("Migration.test_correctness", "CANCEL", "CANCEL")])
    assert s["overall"]["exit_code"] == 2
    assert s["overall"]["undecided"] == ["no functional test ran on both builds"]


def test_one_sided_result_is_blocking() -> None:
    s = full([h.outcome("Migration.test_correctness", "patched", "PASS")])
    assert s["overall"]["exit_code"] == 2
    assert s["test_verdicts"][0]["note"] == "no result on baseline"


def test_avocado_serial_prefix_does_not_split_pairs() -> None:
    outs = h.pair("Migration.test_correctness", "PASS", "FAIL")
    from dataclasses import replace

    outs = [replace(outs[0], test_id="1-" + outs[0].test_id), outs[1]]
    s = full(outs)
    assert [t["verdict"] for t in s["test_verdicts"]] == ["regressed"]


def test_load_summary_round_trip_and_errors(tmp_path: Path) -> None:
    s = full()
    path = write_summary(s, tmp_path / "summary.json")
    assert load_summary(path) == json.loads(json.dumps(s))
    with pytest.raises(InputError, match="no summary at"):
        load_summary(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="cannot read summary"):
        load_summary(bad)
    bad.write_text('{"a": 1}')
    with pytest.raises(InputError, match="not a seriesgate summary"):
        load_summary(bad)
    bad.write_text(json.dumps({**s, "schema": 99}))
    with pytest.raises(InputError, match="newer than this seriesgate"):
        load_summary(bad)


def test_merge_parallel_jobs() -> None:
    outcomes = h.passing_outcomes()
    base_only = [o for o in outcomes if o.build == "baseline"]
    patched_only = [o for o in outcomes if o.build == "patched"]
    a, b = full(base_only), full(patched_only)
    assert a["overall"]["exit_code"] == 2  # each alone cannot compare
    merged = merge_summaries([json.loads(json.dumps(a)), json.loads(json.dumps(b))])
    assert merged["overall"]["exit_code"] == 0
    assert {c["claim"]: c["verdict"] for c in merged["claims"]}["map-at-load-setup"] == (
        "confirmed"
    )
    assert merged["stage_times"]["functional"] == 480.0
    other = json.loads(json.dumps(a))
    other["series"]["message_id"] = "other@example.org"
    with pytest.raises(InputError, match="different series"):
        merge_summaries([a, other])


def test_cover_testing_sentences_from_real_cover() -> None:
    import mailbox

    msg = next(iter(mailbox.mbox(h.COVER_MBOX)))
    body = msg.get_payload(decode=True).decode()
    found = cover_testing_sentences(body)
    assert found[0] == "Only tested with vdpa_sim."
    assert any(s.startswith("I'm sending this before full benchmark") for s in found)


def test_subject_with_shell_metacharacters_is_kept_verbatim(tmp_path: Path) -> None:
    subject = "vdpa: $(rm -rf /) `x` <b>bold</b> | pipe"
    s = build_summary(
        series_set=h.series_set(cover_mbox=tmp_path / "none.mbox", subject=subject),
        stage_times={},
    )
    assert s["series"]["subject"] == subject
    assert s["series"]["cover_subject"] == f"[PATCH v2 00/10] {subject}"
