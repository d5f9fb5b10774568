"""Parse QEMU log-backend trace lines into typed events.

QEMU built with ``--enable-trace-backends=log`` writes one line per event to the
``-trace ...,file=PATH`` file. With ``-msg timestamp=on`` each line carries a
``TID@sec.usec:`` prefix (wall clock, comparable with QMP event timestamps);
without it the line is just ``name fields``::

    7437@1795677323.067019:vhost_vdpa_dma_map vdpa_shared:0x55d0 fd: 14 msg_type: 2 ...
    vhost_vdpa_add_status dev: 0x55d0c3a0 status: 0x3

The field text is whatever the event's format string made of it (``key: value``,
``key=value``, ``key value``, commas or not), so fields are recovered by a tolerant
tokeniser; integers (decimal and ``0x`` hex, pointers included) become ``int``.

>>> ev = parse_line("12@1700000000.000250:vhost_vdpa_add_status dev: 0x55 status: 0x3")
>>> (ev.name, ev.tid, ev.fields["status"], ev.timestamp)
('vhost_vdpa_add_status', 12, 3, 1700000000.00025)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# "TID@SEC.USEC:" then the event name, then the rest.
_LINE = re.compile(
    r"^(?:(?P<tid>\d+)@(?P<sec>\d+)\.(?P<usec>\d{6}):)?(?P<name>[a-z_][a-z0-9_]*)(?:\s+(?P<rest>.*))?$"
)
_INT = re.compile(r"^(?:0x[0-9a-fA-F]+|-?\d+)$")
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

FieldValue = int | str


@dataclass(frozen=True)
class TraceEvent:
    """One trace line: name, parsed fields, and (``-msg timestamp=on``) when and where."""

    name: str
    fields: dict[str, FieldValue] = field(default_factory=dict)
    timestamp: float | None = None  # seconds since the epoch (wall clock)
    tid: int | None = None  # thread id that emitted the event
    raw: str = ""
    lineno: int = 0

    def int(self, key: str) -> int:
        """The integer field ``key``; KeyError/TypeError name the event when it is not one."""
        value = self.fields[key]
        if not isinstance(value, int):
            raise TypeError(f"{self.name}: field {key!r} is {value!r}, not an integer")
        return value


def _value(token: str) -> FieldValue:
    if _INT.match(token):
        return int(token, 16) if token.lower().startswith("0x") else int(token)
    if token == "(nil)":
        return 0
    return token


def _looks_like_value(token: str) -> bool:
    return bool(_INT.match(token)) or token == "(nil)"


def parse_fields(text: str) -> dict[str, FieldValue]:
    """Recover ``key -> value`` pairs from an event's formatted text.

    >>> parse_fields("dev: 0x1 idx: 2 vq idx: 3")
    {'dev': 1, 'idx': 2, 'vq_idx': 3}
    >>> parse_fields("is_ram=1, iova_min=0x10 read-only: 0")
    {'is_ram': 1, 'iova_min': 16, 'read_only': 0}
    >>> parse_fields("vdpa: 0x5 iova 0x1000 llend 0x2000")
    {'vdpa': 5, 'iova': 4096, 'llend': 8192}
    """
    tokens = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    fields: dict[str, FieldValue] = {}
    prefix: list[str] = []  # bare words before a key ("vq idx:" -> "vq_idx")
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        key: str | None = None
        value: str | None = None
        if "=" in tok and not tok.startswith("="):
            key, value = tok.split("=", 1)
            i += 1
        elif tok.endswith(":") and len(tok) > 1 and _WORD.match(tok[:-1]):
            key = tok[:-1]
            value = tokens[i + 1] if i + 1 < len(tokens) else ""
            i += 2
        elif _WORD.match(tok) and i + 1 < len(tokens) and _looks_like_value(tokens[i + 1]):
            key, value = tok, tokens[i + 1]
            i += 2
        else:
            if _WORD.match(tok):
                prefix.append(tok)
            else:
                prefix.clear()
            i += 1
            continue
        name = "_".join([*prefix, key]).replace("-", "_")
        prefix.clear()
        fields[name] = _value(value)
    return fields


def parse_line(line: str, lineno: int = 0) -> TraceEvent | None:
    """Parse one log-backend line; None for lines that are not trace events."""
    text = line.rstrip("\n")
    m = _LINE.match(text)
    if not m:
        return None
    ts: float | None = None
    tid: int | None = None
    if m.group("tid") is not None:
        tid = int(m.group("tid"))
        ts = int(m.group("sec")) + int(m.group("usec")) / 1_000_000
    rest = m.group("rest") or ""
    return TraceEvent(
        name=m.group("name"),
        fields=parse_fields(rest),
        timestamp=ts,
        tid=tid,
        raw=text,
        lineno=lineno,
    )


def parse_lines(lines: Iterable[str]) -> Iterator[TraceEvent]:
    """Parse many lines, skipping those that are not trace events."""
    for n, line in enumerate(lines, 1):
        ev = parse_line(line, n)
        if ev is not None:
            yield ev


def read_trace(path: Path) -> list[TraceEvent]:
    """All events of a trace file (missing file: no events)."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8", errors="replace") as fh:
        return list(parse_lines(fh))


def select(events: Iterable[TraceEvent], *names: str) -> list[TraceEvent]:
    """The events whose name is one of ``names``, in order."""
    wanted = set(names)
    return [ev for ev in events if ev.name in wanted]


@dataclass(frozen=True)
class DmaRange:
    """One IOVA range mapped with ``vhost_vdpa_dma_map``."""

    asid: int
    iova: int
    size: int
    uaddr: int
    perm: int
    event: TraceEvent

    @property
    def last(self) -> int:
        return self.iova + self.size - 1


def _asid(ev: TraceEvent) -> int:
    """The address space of a map/unmap; QEMU before 8.0 traced no asid (always 0)."""
    return ev.int("asid") if "asid" in ev.fields else 0


def dma_maps(events: Iterable[TraceEvent]) -> list[DmaRange]:
    """Every ``vhost_vdpa_dma_map`` as a range."""
    out = []
    for ev in select(events, "vhost_vdpa_dma_map"):
        out.append(
            DmaRange(
                asid=_asid(ev),
                iova=ev.int("iova"),
                size=ev.int("size"),
                uaddr=ev.int("uaddr"),
                perm=ev.int("perm"),
                event=ev,
            )
        )
    return out


def unmatched_maps(events: Iterable[TraceEvent]) -> list[DmaRange]:
    """Maps still live at the end of the trace: not removed by a later unmap of the same range.

    An unmap removes every live map of the same address space that it covers.
    """
    live: list[DmaRange] = []
    for ev in events:
        if ev.name == "vhost_vdpa_dma_map":
            (rng,) = dma_maps([ev])
            live.append(rng)
        elif ev.name == "vhost_vdpa_dma_unmap":
            asid, start, size = _asid(ev), ev.int("iova"), ev.int("size")
            end = start + size - 1
            live = [r for r in live if not (r.asid == asid and start <= r.iova and r.last <= end)]
    return live


def overlapping_maps(events: Iterable[TraceEvent]) -> list[tuple[DmaRange, DmaRange]]:
    """Pairs (live, new) where a map overlaps a range still mapped in the same address space."""
    live: list[DmaRange] = []
    clashes: list[tuple[DmaRange, DmaRange]] = []
    for ev in events:
        if ev.name == "vhost_vdpa_dma_map":
            (rng,) = dma_maps([ev])
            for old in live:
                if old.asid == rng.asid and rng.iova <= old.last and old.iova <= rng.last:
                    clashes.append((old, rng))
            live.append(rng)
        elif ev.name == "vhost_vdpa_dma_unmap":
            asid, start, size = _asid(ev), ev.int("iova"), ev.int("size")
            end = start + size - 1
            live = [r for r in live if not (r.asid == asid and start <= r.iova and r.last <= end)]
    return clashes


@dataclass(frozen=True)
class IovaLayout:
    """How device memory was mapped: guest RAM (by GPA) versus QEMU's own buffers."""

    first: int  # device iova range
    last: int
    ram: list[tuple[int, DmaRange]]  # (GPA, map) for maps of memory-listener sections
    other: list[DmaRange]  # SVQ rings, CVQ buffers: host memory that is not guest RAM
    outside: list[DmaRange]  # maps outside [first, last]
    overlaps: list[tuple[DmaRange, DmaRange]]

    @property
    def ram_not_at_gpa(self) -> list[tuple[int, DmaRange]]:
        return [(gpa, m) for gpa, m in self.ram if m.iova != gpa]


def iova_layout(events: list[TraceEvent]) -> IovaLayout:
    """Classify every dma_map of a trace by what it maps and where.

    A map whose host address is a ``vhost_vdpa_listener_region_add`` section's is guest
    RAM (that trace gives the GPA as ``iova``); any other map is QEMU's own memory.
    """
    ranges = select(events, "vhost_vdpa_get_iova_range")
    first, last = (ranges[-1].int("first"), ranges[-1].int("last")) if ranges else (0, 2**64 - 1)
    gpa_of = {
        ev.int("vaddr"): ev.int("iova") for ev in select(events, "vhost_vdpa_listener_region_add")
    }
    maps = dma_maps(events)
    return IovaLayout(
        first=first,
        last=last,
        ram=[(gpa_of[m.uaddr], m) for m in maps if m.uaddr in gpa_of],
        other=[m for m in maps if m.uaddr not in gpa_of],
        outside=[m for m in maps if m.iova < first or m.last > last],
        overlaps=overlapping_maps(events),
    )


def ram_bytes_mapped_per_start(events: list[TraceEvent]) -> list[int]:
    """Bytes of guest RAM mapped in each device start cycle.

    A cycle begins at the first ``vhost_vdpa_dev_start started: 1`` after a stop (the
    data-queue and CVQ vhost devices each trace one start; the memory listener maps guest
    RAM when the last one starts).
    """
    ram_vaddrs = {ev.int("vaddr") for ev in select(events, "vhost_vdpa_listener_region_add")}
    totals: list[int] = []
    running = False
    for ev in events:
        if ev.name == "vhost_vdpa_dev_start":
            started = ev.fields.get("started") == 1
            if started and not running:
                totals.append(0)
            running = started
        elif ev.name == "vhost_vdpa_dma_map" and totals:
            (rng,) = dma_maps([ev])
            if rng.uaddr in ram_vaddrs:
                totals[-1] += rng.size
    return totals
