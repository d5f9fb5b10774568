"""The trace parser on real QEMU log-backend output (tests/unit/data/trace/)."""

from __future__ import annotations

from pathlib import Path

from seriesgate.functional.trace import (
    dma_maps,
    iova_layout,
    overlapping_maps,
    parse_fields,
    parse_line,
    ram_bytes_mapped_per_start,
    read_trace,
    select,
    unmatched_maps,
)

DATA = Path(__file__).parent / "data" / "trace"


def test_debian_72_timestamps_and_threads() -> None:
    events = read_trace(DATA / "debian-7.2-tcg-misc.trace")
    assert len(events) == 10
    assert all(ev.tid is not None and ev.timestamp is not None for ev in events)
    # Wall-clock seconds (comparable with QMP event timestamps), microsecond precision.
    assert all(1.7e9 < (ev.timestamp or 0) < 2e9 for ev in events)
    shutdown = select(events, "qemu_system_shutdown_request")
    assert [ev.fields for ev in shutdown] == [{"reason": 2}]
    # The main thread (QMP quit) and the vCPU thread emit under different thread ids.
    assert len({ev.tid for ev in events}) == 2


def test_debian_72_fields_of_mixed_formats() -> None:
    events = read_trace(DATA / "debian-7.2-tcg-misc.trace")
    reads = select(events, "memory_region_ops_read")
    assert reads, "fixture has memory_region_ops_read lines"
    f = reads[0].fields
    assert f["cpu"] == 0 and f["size"] == 1 and isinstance(f["mr"], int)
    assert f["addr"] == 0x71 and f["value"] == 0


def test_line_without_timestamp() -> None:
    ev = parse_line("qemu_system_shutdown_request reason=2")
    assert ev is not None
    assert (ev.name, ev.tid, ev.timestamp, ev.fields) == (
        "qemu_system_shutdown_request",
        None,
        None,
        {"reason": 2},
    )


def test_not_a_trace_line() -> None:
    assert parse_line("2026-11-26T07:15:20.123456Z qemu-system-x86_64: warning: x") is None
    assert parse_line("") is None


def test_field_shapes_of_vhost_vdpa_formats() -> None:
    # Shapes of hw/virtio/trace-events formats: "key: v", "key v", "k=v,", two-word keys.
    assert parse_fields("dev: 0x55 idx: 1 vq idx: 3") == {"dev": 0x55, "idx": 1, "vq_idx": 3}
    assert parse_fields("vdpa: 0x1 iova 0x100000 llend 0x200000 vaddr: 0x7f00 read-only: 0") == {
        "vdpa": 1,
        "iova": 0x100000,
        "llend": 0x200000,
        "vaddr": 0x7F00,
        "read_only": 0,
    }
    assert parse_fields("dev: (nil) started: 1")["dev"] == 0


SVQ72 = DATA / "debian-7.2-l1-vdpa-svq.trace"


def test_svq_trace_maps_from_iova_tree() -> None:
    events = read_trace(SVQ72)
    regions = select(events, "vhost_vdpa_listener_region_add")
    gpa_of = {ev.int("vaddr"): ev.int("iova") for ev in regions}
    maps = dma_maps(events)
    assert len(maps) == 14 and all(m.asid == 0 for m in maps)  # 7.2 traces no asid
    ram = [m for m in maps if m.uaddr in gpa_of]
    assert len(ram) == len(regions) == 6
    # SVQ: guest RAM lands at tree-allocated IOVAs, never at its GPA.
    assert all(m.iova != gpa_of[m.uaddr] for m in ram)
    assert {m.perm for m in maps} == {1, 3}
    assert overlapping_maps(events) == []


def test_svq_trace_everything_unmapped_at_quit() -> None:
    events = read_trace(SVQ72)
    assert unmatched_maps(events) == []
    # Drop the unmaps: every map is then still live.
    only_maps = [ev for ev in events if ev.name != "vhost_vdpa_dma_unmap"]
    assert len(unmatched_maps(only_maps)) == 14


def test_svq_trace_status_and_start_events() -> None:
    events = read_trace(SVQ72)
    status = [ev.int("status") for ev in select(events, "vhost_vdpa_add_status")]
    assert status == [0x3, 0x8, 0x4, 0x3]
    starts = [ev.int("started") for ev in select(events, "vhost_vdpa_dev_start")]
    assert starts == [1, 1, 0, 0]
    ranges = select(events, "vhost_vdpa_get_iova_range")
    assert ranges[0].int("first") == 0 and ranges[0].int("last") == 2**64 - 1


def test_iova_layout_svq_versus_passthrough() -> None:
    svq = iova_layout(read_trace(SVQ72))
    assert len(svq.ram) == 6 and len(svq.ram_not_at_gpa) == 6
    assert len(svq.other) == 8  # SVQ rings of rx, tx and CVQ + the CVQ buffers
    assert not svq.outside and not svq.overlaps
    passthrough = iova_layout(read_trace(DATA / "debian-7.2-l1-vdpa-passthrough.trace"))
    assert passthrough.ram and passthrough.ram_not_at_gpa == []  # IOVA == GPA
    assert passthrough.other == []


def test_ram_bytes_mapped_per_start() -> None:
    totals = ram_bytes_mapped_per_start(read_trace(SVQ72))
    # Two vhost devices start (data queues, then CVQ): one cycle; the RAM is mapped once,
    # after the second start: 0xc3000 + 0x25000 + 0x8000 + 0x10000 + 0xff00000 + 0x40000.
    assert totals == [0x10000000 + 0x40000]  # 256 MiB of RAM + the 256 KiB BIOS ROM


UNPLUG10 = DATA / "qemu-10.0.13-baseline-unplug.trace"
REBOOT10 = DATA / "qemu-10.0.13-baseline-reboot2.trace"


def test_qemu10_unplug_unmaps_everything() -> None:
    events = read_trace(UNPLUG10)
    maps = dma_maps(events)
    assert {m.asid for m in maps} == {0, 1}  # guest RAM in asid 0, the shadow CVQ in asid 1
    assert unmatched_maps(events) == []
    layout = iova_layout(events)
    assert layout.ram and layout.ram_not_at_gpa == []  # passthrough: IOVA == GPA
    assert all(m.asid == 1 for m in layout.other)
    assert not layout.overlaps


def test_qemu10_reboots_remap_guest_ram() -> None:
    events = read_trace(REBOOT10)
    totals = ram_bytes_mapped_per_start(events)
    assert len(totals) >= 3
    assert len(set(totals)) == 1 and totals[0] >= 256 << 20
    assert all(e.timestamp is not None for e in events)
