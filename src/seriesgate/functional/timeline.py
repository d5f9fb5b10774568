"""Place the destination's guest-memory DMA maps on the migration timeline (pure logic).

Inputs are what a migration test records:

- the destination's trace (``vhost_vdpa_*`` plus a few migration markers, with
  ``-msg timestamp=on`` so every line carries ``TID@sec.usec``), parsed by
  :mod:`seriesgate.functional.trace`;
- the QMP events of both sides (``MIGRATION``, ``STOP``, ``RESUME``), whose
  timestamps are wall-clock seconds like the trace's.

A *guest-memory map* is a ``vhost_vdpa_dma_map`` issued for a memory-listener
section: it matches a ``vhost_vdpa_listener_region_add`` by host address and
size. Everything else QEMU maps (shadow-virtqueue rings, CVQ buffers) is a
*device map*. Matching by (vaddr, size) rather than by adjacency matters: with the
series, the listener runs on the main thread but the map is traced later, on the
"vdpa map thread".

Timeline markers (wall-clock seconds):

=================  ==========================================================
``dest_setup``     destination ``MIGRATION`` status ``setup``
``dest_active``    destination ``MIGRATION`` status ``active``
``source_stop``    source ``STOP`` (switchover begins: downtime starts)
``dest_resume``    destination ``RESUME`` (emitted *before* vhost starts)
``device_ready``   first ``vhost_vdpa_add_status`` with DRIVER_OK after resume
``dest_completed`` destination ``MIGRATION`` status ``completed`` (vCPUs run)
=================  ==========================================================

The downtime window is ``[source_stop, dest_completed]``: the guest runs nowhere
in between (QEMU 10.0 resumes vCPUs at the end of ``vm_start``, after device
start, and only then sets the incoming state to completed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from seriesgate.functional.trace import TraceEvent

VIRTIO_CONFIG_S_DRIVER_OK = 0x4


class Phase(StrEnum):
    """Where on the migration timeline an event falls, in time order."""

    BEFORE_SETUP = "before-setup"  # before the destination's incoming migration began
    SETUP = "setup"  # destination MIGRATION setup .. active
    ACTIVE = "active"  # destination active .. source STOP: the source guest still runs
    STOP_TO_RESUME = "stop-to-resume"  # source stopped, destination not resumed: downtime
    RESUME_TO_DEVICE_START = "resume-to-device-start"  # RESUME .. DRIVER_OK: still downtime
    AFTER_DEVICE_START = "after-device-start"  # after DRIVER_OK
    UNKNOWN = "unknown"  # no timestamp or a missing marker


PHASE_ORDER = tuple(p for p in Phase if p is not Phase.UNKNOWN)


@dataclass(frozen=True)
class QmpEvent:
    """One QMP event as a migration test records it."""

    side: str  # "source" | "destination"
    name: str  # "MIGRATION", "STOP", "RESUME", ...
    timestamp: float  # wall-clock seconds (QMP seconds + microseconds)
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_qmp(cls, side: str, message: Mapping[str, Any]) -> QmpEvent:
        """From a raw QMP event message (``{"event":..,"data":..,"timestamp":{..}}``)."""
        ts = message.get("timestamp", {})
        return cls(
            side=side,
            name=str(message["event"]),
            timestamp=float(ts.get("seconds", 0)) + float(ts.get("microseconds", 0)) / 1e6,
            data=dict(message.get("data", {})),
        )

    def to_json(self) -> dict[str, Any]:
        return {"side": self.side, "name": self.name, "timestamp": self.timestamp,
                "data": dict(self.data)}  # fmt: skip

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> QmpEvent:
        return cls(
            side=str(obj["side"]),
            name=str(obj["name"]),
            timestamp=float(obj["timestamp"]),
            data=dict(obj.get("data", {})),
        )


@dataclass(frozen=True)
class Markers:
    """The migration's landmarks, wall-clock seconds (None: not seen)."""

    dest_setup: float | None = None
    dest_active: float | None = None
    load_setup: float | None = None  # trace loadvm_state_setup (destination)
    source_stop: float | None = None
    dest_resume: float | None = None
    device_start: float | None = None  # first vhost_vdpa_dev_start started=1 after resume
    device_ready: float | None = None  # first DRIVER_OK add_status after resume
    dest_completed: float | None = None
    source_completed: float | None = None


def _first(
    events: Iterable[QmpEvent], side: str, name: str, status: str | None = None
) -> float | None:
    for ev in events:
        if ev.side == side and ev.name == name:
            if status is None or ev.data.get("status") == status:
                return ev.timestamp
    return None


def find_markers(qmp: Sequence[QmpEvent], trace: Sequence[TraceEvent]) -> Markers:
    """The landmarks of one migration from both sides' QMP events and the destination trace."""
    qmp = sorted(qmp, key=lambda e: e.timestamp)
    dest_setup = _first(qmp, "destination", "MIGRATION", "setup")
    dest_active = _first(qmp, "destination", "MIGRATION", "active")
    # The source's STOP at switchover: the first STOP after its migration became active.
    src_active = _first(qmp, "source", "MIGRATION", "active")
    source_stop = None
    for ev in qmp:
        if ev.side == "source" and ev.name == "STOP":
            if src_active is None or ev.timestamp >= src_active:
                source_stop = ev.timestamp
                break
    dest_resume = _first(qmp, "destination", "RESUME")
    load_setup = next((ev.timestamp for ev in trace if ev.name == "loadvm_state_setup"), None)
    device_start = device_ready = None
    if dest_resume is not None:
        for tev in trace:
            if tev.timestamp is None or tev.timestamp < dest_resume:
                continue
            if (
                device_start is None
                and tev.name == "vhost_vdpa_dev_start"
                and tev.fields.get("started") == 1
            ):
                device_start = tev.timestamp
            if tev.name == "vhost_vdpa_add_status":
                status = tev.fields.get("status")
                if isinstance(status, int) and status & VIRTIO_CONFIG_S_DRIVER_OK:
                    device_ready = tev.timestamp
                    break
    return Markers(
        dest_setup=dest_setup,
        dest_active=dest_active,
        load_setup=load_setup,
        source_stop=source_stop,
        dest_resume=dest_resume,
        device_start=device_start,
        device_ready=device_ready,
        dest_completed=_first(qmp, "destination", "MIGRATION", "completed"),
        source_completed=_first(qmp, "source", "MIGRATION", "completed"),
    )


def phase_of(t: float | None, m: Markers) -> Phase:
    """The phase a timestamp falls in."""
    if t is None or m.dest_setup is None:
        return Phase.UNKNOWN
    if t < m.dest_setup:
        return Phase.BEFORE_SETUP
    if m.dest_active is not None and t < m.dest_active:
        return Phase.SETUP
    if m.source_stop is None or t < m.source_stop:
        return Phase.ACTIVE
    if m.dest_resume is None or t < m.dest_resume:
        return Phase.STOP_TO_RESUME
    if m.device_ready is None or t <= m.device_ready:
        return Phase.RESUME_TO_DEVICE_START
    return Phase.AFTER_DEVICE_START


@dataclass(frozen=True)
class GuestMap:
    """A guest-memory ``vhost_vdpa_dma_map``: a listener section sent to the device."""

    gpa: int  # guest-physical start (listener section)
    iova: int  # IOVA sent to the device (== gpa in passthrough, tree-allocated with SVQ)
    size: int
    uaddr: int
    readonly: bool
    tid: int | None
    start: float | None  # when QEMU issued it (trace timestamp)
    end: float | None  # next event of the same thread: the map ioctl had returned
    phase: Phase = Phase.UNKNOWN


@dataclass(frozen=True)
class DeviceMap:
    """Any other ``vhost_vdpa_dma_map`` (SVQ vrings, CVQ buffers)."""

    iova: int
    size: int
    uaddr: int
    tid: int | None
    start: float | None


def _next_on_thread(trace: Sequence[TraceEvent], i: int) -> float | None:
    tid = trace[i].tid
    for ev in trace[i + 1 :]:
        if ev.tid == tid:
            return ev.timestamp
    return None


def classify_maps(trace: Sequence[TraceEvent]) -> tuple[list[GuestMap], list[DeviceMap]]:
    """Split the trace's ``dma_map`` events into guest-memory maps and device maps."""
    pending: list[tuple[int, int, int, bool]] = []  # (vaddr, size, gpa, readonly)
    guest: list[GuestMap] = []
    device: list[DeviceMap] = []
    for i, ev in enumerate(trace):
        if ev.name == "vhost_vdpa_listener_region_add":
            iova, llend = ev.int("iova"), ev.int("llend")
            pending.append((ev.int("vaddr"), llend - iova, iova, bool(ev.fields.get("read_only"))))
        elif ev.name == "vhost_vdpa_dma_map":
            uaddr, size = ev.int("uaddr"), ev.int("size")
            hit = next((k for k, p in enumerate(pending) if p[0] == uaddr and p[1] == size), None)
            if hit is None:
                device.append(DeviceMap(ev.int("iova"), size, uaddr, ev.tid, ev.timestamp))
                continue
            _, _, gpa, ro = pending.pop(hit)
            guest.append(
                GuestMap(
                    gpa=gpa,
                    iova=ev.int("iova"),
                    size=size,
                    uaddr=uaddr,
                    readonly=ro,
                    tid=ev.tid,
                    start=ev.timestamp,
                    end=_next_on_thread(trace, i),
                )
            )
    return guest, device


def main_thread_id(trace: Sequence[TraceEvent], pid: int | None = None) -> int | None:
    """QEMU's main thread: its TID is the process id; else the thread of vm_state_notify."""
    if pid is not None:
        return pid
    for name in ("vm_state_notify", "loadvm_state_setup", "vhost_vdpa_init"):
        for ev in trace:
            if ev.name == name and ev.tid is not None:
                return ev.tid
    return None


@dataclass(frozen=True)
class MapTimeline:
    """Guest-memory maps of one destination, placed on the migration timeline."""

    markers: Markers
    maps: tuple[GuestMap, ...]
    device_maps: int
    main_tid: int | None

    @property
    def per_phase(self) -> dict[str, int]:
        counts = {p.value: 0 for p in Phase}
        for mp in self.maps:
            counts[mp.phase.value] += 1
        return counts

    @property
    def in_downtime(self) -> list[GuestMap]:
        """Guest maps issued or still running inside ``[source_stop, dest_completed]``."""
        m = self.markers
        if m.source_stop is None:
            return []
        hi = m.dest_completed if m.dest_completed is not None else math.inf
        out = []
        for mp in self.maps:
            start = mp.start if mp.start is not None else -math.inf
            end = mp.end if mp.end is not None else start
            if start <= hi and end >= m.source_stop:
                out.append(mp)
        return out

    @property
    def on_main_thread(self) -> int:
        return sum(1 for mp in self.maps if self.main_tid is not None and mp.tid == self.main_tid)

    @property
    def first_map(self) -> float | None:
        starts = [mp.start for mp in self.maps if mp.start is not None]
        return min(starts) if starts else None

    @property
    def last_map_end(self) -> float | None:
        ends = [mp.end if mp.end is not None else mp.start for mp in self.maps]
        known = [e for e in ends if e is not None]
        return max(known) if known else None

    def summary(self) -> dict[str, Any]:
        """Flat numbers for measurements.json / bench.json (milliseconds relative to STOP)."""
        m = self.markers

        def rel(t: float | None) -> float | None:
            if t is None or m.source_stop is None:
                return None
            return round((t - m.source_stop) * 1000, 3)

        busy = sum(
            (mp.end - mp.start) for mp in self.maps if mp.end is not None and mp.start is not None
        )
        return {
            "guest_maps": len(self.maps),
            "guest_map_bytes": sum(mp.size for mp in self.maps),
            "device_maps": self.device_maps,
            "maps_per_phase": {k: v for k, v in self.per_phase.items() if v},
            "maps_in_downtime": len(self.in_downtime),
            "maps_on_main_thread": self.on_main_thread,
            "map_threads": sorted({mp.tid for mp in self.maps if mp.tid is not None}),
            "map_busy_ms": round(busy * 1000, 3),
            "first_map_ms_from_stop": rel(self.first_map),
            "last_map_end_ms_from_stop": rel(self.last_map_end),
            "markers_ms_from_stop": {k: rel(v) for k, v in asdict(m).items()},
            "stop_to_resume_ms": _ms(m.source_stop, m.dest_resume),
            "guest_pause_ms": _ms(m.source_stop, m.dest_completed),
            "resume_to_device_ready_ms": _ms(m.dest_resume, m.device_ready),
        }


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round((b - a) * 1000, 3)


def build_timeline(
    qmp: Sequence[QmpEvent], trace: Sequence[TraceEvent], *, pid: int | None = None
) -> MapTimeline:
    """Classify the destination's maps and place each guest-memory map in its phase."""
    markers = find_markers(qmp, trace)
    guest, device = classify_maps(trace)
    placed = tuple(replace(mp, phase=phase_of(mp.start, markers)) for mp in guest)
    return MapTimeline(
        markers=markers, maps=placed, device_maps=len(device), main_tid=main_thread_id(trace, pid)
    )


@dataclass(frozen=True)
class ClaimCheck:
    """Whether a claim holds in one run, and why (one line per reason)."""

    holds: bool
    reasons: tuple[str, ...]


def check_map_at_load_setup(tl: MapTimeline, *, allow_overrun: bool = False) -> ClaimCheck:
    """The series' claim: guest RAM is mapped during the migration, not in the downtime.

    Holds when every guest-memory map was issued after the destination's incoming
    setup and before the source stopped, and none runs inside the downtime window.
    With ``allow_overrun`` (the constructed case of a guest whose RAM transfers
    faster than it maps), maps may still run after STOP but must have started
    before it and must all have finished by device start (DRIVER_OK).
    """
    m = tl.markers
    why: list[str] = []
    missing = [k for k in ("dest_setup", "source_stop", "dest_resume", "dest_completed")
               if getattr(m, k) is None]  # fmt: skip
    if missing:
        return ClaimCheck(False, (f"timeline incomplete: no {', '.join(missing)} marker",))
    if not tl.maps:
        return ClaimCheck(False, ("the destination trace has no guest-memory dma_map",))
    counts = tl.per_phase
    early = counts[Phase.SETUP] + counts[Phase.ACTIVE]
    late = len(tl.maps) - early
    if early == 0:
        why.append(
            f"no guest-memory map between incoming setup and source STOP; all {len(tl.maps)} "
            f"issued later ({_phase_text(counts)})"
        )
    if not allow_overrun:
        if late:
            why.append(f"{late} of {len(tl.maps)} guest-memory maps issued after source STOP "
                       f"({_phase_text(counts)})")  # fmt: skip
        inside = tl.in_downtime
        if inside:
            why.append(f"{len(inside)} guest-memory map(s) run inside the downtime window "
                       f"[STOP, MIGRATION completed]")  # fmt: skip
    else:
        end = tl.last_map_end
        if m.device_ready is None:
            why.append("no DRIVER_OK on the destination after RESUME: device never started")
        elif end is not None and end > m.device_ready:
            why.append(f"guest-memory mapping still running {1000 * (end - m.device_ready):.1f} ms "
                       f"after DRIVER_OK")  # fmt: skip
        after = counts[Phase.AFTER_DEVICE_START]
        if after:
            why.append(f"{after} guest-memory map(s) issued after DRIVER_OK")
    if why:
        return ClaimCheck(False, tuple(why))
    return ClaimCheck(True, (f"{early} guest-memory maps issued before source STOP "
                             f"({_phase_text(counts)})",))  # fmt: skip


def _phase_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items() if v) or "none"


# --- QMP latency -------------------------------------------------------------------------


@dataclass(frozen=True)
class RttSample:
    """One ``query-status`` round trip: when it was sent (wall clock) and how long it took."""

    sent: float
    rtt: float  # seconds


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.0
    >>> percentile([5.0], 99)
    5.0
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_stats(
    samples: Sequence[RttSample], window: tuple[float, float] | None = None
) -> dict[str, Any]:
    """Max, p99, p50 and count of RTTs (ms), optionally only for samples overlapping a window."""
    chosen = [
        s
        for s in samples
        if window is None or (s.sent <= window[1] and s.sent + s.rtt >= window[0])
    ]
    if not chosen:
        return {"count": 0, "max_ms": None, "p99_ms": None, "p50_ms": None}
    rtts = [s.rtt * 1000 for s in chosen]
    return {
        "count": len(rtts),
        "max_ms": round(max(rtts), 3),
        "p99_ms": round(percentile(rtts, 99), 3),
        "p50_ms": round(percentile(rtts, 50), 3),
    }


def latency_within(samples: Sequence[RttSample], window: tuple[float, float]) -> dict[str, Any]:
    """:func:`latency_stats` of the part of each round trip inside ``window``: how long QMP
    kept a caller waiting then. A query sent just before the window ends and answered long
    after counts only up to the end (e.g. sent before the source's stop, answered after the
    destination loaded the device state).

    >>> latency_within([RttSample(9.9, 0.4), RttSample(9.0, 0.01)], (8.0, 10.0))["max_ms"]
    100.0
    """
    lo, hi = window
    inside = [
        RttSample(max(s.sent, lo), min(s.sent + s.rtt, hi) - max(s.sent, lo))
        for s in samples
        if s.sent < hi and s.sent + s.rtt > lo
    ]
    return latency_stats(inside)


def largest_gap(stamps: Sequence[float]) -> tuple[float, float] | None:
    """The longest interval between consecutive timestamps (start, end), None if < 2 stamps."""
    ordered = sorted(stamps)
    if len(ordered) < 2:
        return None
    best = max(range(1, len(ordered)), key=lambda i: ordered[i] - ordered[i - 1])
    return ordered[best - 1], ordered[best]
