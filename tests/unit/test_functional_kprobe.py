"""Device-side status writes: tracefs parsing and the per-start judgement (real capture)."""

from __future__ import annotations

from pathlib import Path

from seriesgate.functional.kprobe import check_start, parse_trace, split_starts, status_name

TRACE = Path(__file__).parent / "data" / "kprobe" / "qemu-10.0.13-baseline-boot.trace"


def test_parse_real_tracefs_output() -> None:
    events = parse_trace(TRACE.read_text())
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["reset", "compat_reset"]  # opening /dev/vhost-vdpa-0 resets
    writes = [e.status for e in events if e.kind == "set_status"]
    assert writes == [0x3, 0x3, 0xB, 0x8, 0xC]
    assert all(e.comm.startswith("qemu-system") for e in events)
    assert len({e.dev for e in events}) == 1


def test_baseline_boot_starts_and_findings() -> None:
    starts = split_starts(parse_trace(TRACE.read_text()))
    assert starts == [[0x3, 0x3, 0xB], [0x8, 0xC]]
    first, running = check_start(starts[0]), check_start(starts[1])
    assert first.redundant == (0x3,)  # ACKNOWLEDGE|DRIVER written twice without a reset
    assert running.bit_counts == {
        "ACKNOWLEDGE": 0,
        "DRIVER": 0,
        "FEATURES_OK": 1,
        "DRIVER_OK": 1,
    }


def test_check_start_clean_sequence() -> None:
    ok = check_start([0x1, 0x3, 0xB, 0xF])
    assert ok.redundant == () and ok.cleared_without_reset == ()
    assert set(ok.bit_counts.values()) == {1}
    bad = check_start([0x3, 0xB, 0x3])
    assert bad.cleared_without_reset == (0x3,) and bad.redundant == (0x3,)


def test_status_name() -> None:
    assert status_name(0xF) == "ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK"
    assert status_name(0) == "0"
    assert status_name(0x80) == "0x80"
