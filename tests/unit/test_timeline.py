"""The migration map timeline on real captured destination traces and QMP event logs.

Data: ``tests/unit/data/migration/<case>/migration.json`` (a MigrationRecord written by a
migration test) and ``destination.trace`` (that run's destination trace, trimmed to the
lines the timeline reads), captured inside the test VM on QEMU 10.0.13 baseline and patched.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seriesgate.functional.migration import MigrationRecord
from seriesgate.functional.timeline import (
    Phase,
    RttSample,
    check_map_at_load_setup,
    largest_gap,
    latency_stats,
    percentile,
)

DATA = Path(__file__).parent / "data" / "migration"


def record(case: str) -> MigrationRecord:
    path = DATA / case / "migration.json"
    rec = MigrationRecord.from_json(json.loads(path.read_text()), base=path.parent)
    rec.dest_trace = path.parent / "destination.trace"
    return rec


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 50) == 50.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_window_keeps_overlapping_samples() -> None:
    samples = [RttSample(10.0, 0.001), RttSample(10.5, 0.8), RttSample(12.0, 0.002)]
    stats = latency_stats(samples, window=(10.4, 11.0))
    assert stats["count"] == 1 and stats["max_ms"] == 800.0
    assert latency_stats(samples, window=(20.0, 21.0))["count"] == 0


def test_largest_gap() -> None:
    assert largest_gap([1.0, 1.1, 1.9, 2.0]) == (1.1, 1.9)
    assert largest_gap([1.0]) is None


def test_baseline_maps_all_guest_ram_after_resume_on_the_main_thread() -> None:
    """QEMU 10.0.13 baseline, 256 MB guest: the known behaviour the series wants to change."""
    tl = record("baseline-256M").timeline()
    m = tl.markers
    order = [m.dest_setup, m.dest_active, m.source_stop, m.dest_resume, m.device_ready,
             m.dest_completed]  # fmt: skip
    assert all(t is not None for t in order)
    assert order == sorted(order)  # type: ignore[type-var]
    # Six listener sections (RAM below 640K, option ROM areas, RAM above 1M, BIOS); the CVQ
    # shadow buffers (asid 1) are device maps, not guest memory.
    assert len(tl.maps) == 6 and tl.device_maps == 4
    assert sum(mp.size for mp in tl.maps) == 268697600
    assert {mp.phase for mp in tl.maps} == {Phase.RESUME_TO_DEVICE_START}
    assert tl.on_main_thread == 6 and tl.main_tid == 201
    assert all(mp.iova == mp.gpa for mp in tl.maps)  # passthrough: GPA = IOVA
    assert len(tl.in_downtime) == 6
    summary = tl.summary()
    assert summary["maps_per_phase"] == {"resume-to-device-start": 6}
    assert summary["stop_to_resume_ms"] == pytest.approx(760.132, abs=0.01)
    # The guest-visible pause includes the mapping after RESUME: far more than stop->resume.
    assert summary["guest_pause_ms"] > 5 * summary["stop_to_resume_ms"]


def test_claim_not_shown_on_baseline() -> None:
    tl = record("baseline-256M").timeline()
    verdict = check_map_at_load_setup(tl)
    assert not verdict.holds
    assert any("no guest-memory map between incoming setup and source STOP" in r
               for r in verdict.reasons)  # fmt: skip
    assert any("inside the downtime window" in r for r in verdict.reasons)
    overrun = check_map_at_load_setup(tl, allow_overrun=True)
    assert not overrun.holds  # nothing was mapped before STOP either


def test_record_round_trips_through_json(tmp_path: Path) -> None:
    rec = record("baseline-256M")
    rec.write(tmp_path / "m.json")
    again = MigrationRecord.from_json(json.loads((tmp_path / "m.json").read_text()))
    assert again.events == rec.events and again.downtime_ms == 820.0 and again.total_ms == 9760.0


def test_svq_destination_maps_at_tree_allocated_iovas() -> None:
    """x-svq=on at the destination only (baseline 10.0.13): guest RAM goes through the iova tree."""
    tl = record("baseline-svq-dest").timeline()
    assert len(tl.maps) == 6
    assert not [mp for mp in tl.maps if mp.iova == mp.gpa]  # no GPA = IOVA section
    ram = max(tl.maps, key=lambda mp: mp.size)
    assert ram.gpa == 0x100000 and ram.iova != ram.gpa
    assert {mp.phase for mp in tl.maps} == {Phase.RESUME_TO_DEVICE_START}


QMP_RTT_DATA = Path(__file__).parent / "data" / "functional" / "qmp-rtt"


@pytest.mark.parametrize("build", ["baseline", "repaired"])
def test_qmp_rtt_while_the_source_runs_counts_a_straddling_query_up_to_the_stop(
    build: str,
) -> None:
    """Real runs of MigrationQmpResponsive (2026-12-08, 1 GiB guests): the samples it kept
    give back its bounded number, and the query answered after the device-state load counts
    only up to the source's stop (baseline: 1068 ms in all, sent 206 ms after the stop)."""
    from seriesgate.functional.timeline import RttSample, latency_within

    m = json.loads((QMP_RTT_DATA / f"{build}-measurements.json").read_text())
    samples = [RttSample(sent / 1000, rtt / 1000) for sent, rtt in m["qmp_rtt_samples"]]
    setup = m["markers_ms_from_stop"]["dest_setup"] / 1000
    running = latency_within(samples, (setup, 0.0))
    assert running["max_ms"] == pytest.approx(m["qmp_rtt_source_running"]["max_ms"], abs=0.5)
    assert running["max_ms"] < m["qmp_rtt_bound_ms"] < m["qmp_rtt_stop_and_copy"]["max_ms"]
    # A query straddling the stop: only its part before the stop is "while the source runs".
    straddle = [RttSample(-0.05, 1.0)]
    assert latency_within(straddle, (setup, 0.0))["max_ms"] == pytest.approx(50.0)


def test_the_qmp_claim_turns_on_main_thread_maps_and_the_rtt_while_the_source_runs() -> None:
    from seriesgate.report.readable import deciding_number, measurement_parts

    base, rep = (
        json.loads((QMP_RTT_DATA / f"{b}-measurements.json").read_text())
        for b in ("baseline", "repaired")
    )
    what, value = deciding_number({"status": "FAIL", "measurements": base})
    assert what == "guest-RAM maps on the main thread; max QMP round trip while the source runs"
    assert value == "2 of 2; 66.6 ms"
    assert deciding_number({"status": "PASS", "measurements": rep})[1] == "0 of 7; 108 ms"
    parts = measurement_parts(rep)
    assert "QMP RTT after the source stopped max 420 ms (2 samples)" in parts
    assert not any("samples [" in p or "qmp rtt samples" in p for p in parts)
