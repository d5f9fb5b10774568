"""Observe what reaches the vDPA device: kprobe events on vdpa_sim through tracefs.

QEMU's ``vhost_vdpa_add_status`` trace fires before its early return, so it shows what
QEMU meant to write. The device side is the truth: a kprobe on ``vdpasim_set_status``
(a ``vdpa_config_ops`` callback, so never inlined; x86_64: vdpa device in %di, status
byte in %si) and on the reset callbacks records every status write that reached
vdpa_sim. Needs root and a kernel with CONFIG_KPROBE_EVENTS (the test VM has both).

Lines of ``/sys/kernel/tracing/trace`` look like::

    qemu-system-x86-301 [001] ..... 52.418737: sg_set_status: \
        (vdpasim_set_status+0x0/0x90 [vdpa_sim]) dev=0xffff8880052b0000 status=0x3

(one line in the file).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
GROUP = "sgvdpa"

# name -> kprobe definition (function, fetch args)
PROBES = {
    "set_status": ("vdpasim_set_status", "dev=%di:x64 status=%si:x8"),
    "reset": ("vdpasim_reset", "dev=%di:x64"),
    "compat_reset": ("vdpasim_compat_reset", "dev=%di:x64 flags=%si:x32"),
}

_TRACE_LINE = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+\S+\s+(?P<ts>\d+\.\d+):\s+"
    r"(?P<probe>\w+):\s+\((?P<where>[^)]*)\)\s*(?P<args>.*)$"
)

# virtio status bits
ACKNOWLEDGE = 0x1
DRIVER = 0x2
DRIVER_OK = 0x4
FEATURES_OK = 0x8
STATUS_BITS = {
    "ACKNOWLEDGE": ACKNOWLEDGE,
    "DRIVER": DRIVER,
    "FEATURES_OK": FEATURES_OK,
    "DRIVER_OK": DRIVER_OK,
}


@dataclass(frozen=True)
class DeviceStatusEvent:
    """One call into vdpa_sim: a status write or a reset."""

    kind: str  # "set_status" | "reset" | "compat_reset"
    pid: int
    comm: str
    timestamp: float  # kernel monotonic seconds
    dev: int
    status: int | None  # for set_status


def parse_trace(text: str) -> list[DeviceStatusEvent]:
    """Parse tracefs ``trace`` output, keeping only our probes.

    >>> parse_trace(" qemu-system-x86-9 [000] ..... 1.5: sg_set_status: "
    ...             "(vdpasim_set_status+0x0/0x90 [vdpa_sim]) dev=0xff status=0x3")[0].status
    3
    """
    events = []
    for line in text.splitlines():
        m = _TRACE_LINE.match(line)
        if not m:
            continue
        probe = m.group("probe")
        if not probe.startswith("sg_"):
            continue
        kind = probe[3:]
        args = dict(kv.split("=", 1) for kv in m.group("args").split() if "=" in kv)
        status = int(args["status"], 0) if "status" in args else None
        events.append(
            DeviceStatusEvent(
                kind=kind,
                pid=int(m.group("pid")),
                comm=m.group("comm").strip(),
                timestamp=float(m.group("ts")),
                dev=int(args.get("dev", "0"), 0),
                status=status,
            )
        )
    return events


@dataclass(frozen=True)
class StartCheck:
    """Status writes between two resets (one device start), judged."""

    writes: tuple[int, ...]
    redundant: tuple[int, ...]  # writes that set no new bit
    cleared_without_reset: tuple[int, ...]  # writes that dropped a set bit (not 0)
    bit_counts: dict[str, int]  # how often each bit went 0 -> 1


def split_starts(events: list[DeviceStatusEvent]) -> list[list[int]]:
    """Status values written, grouped by resets (a reset or a write of 0 starts a new group)."""
    groups: list[list[int]] = [[]]
    for ev in events:
        if ev.kind != "set_status" or ev.status == 0:
            if groups[-1]:
                groups.append([])
            continue
        assert ev.status is not None
        groups[-1].append(ev.status)
    return [g for g in groups if g]


def check_start(writes: list[int]) -> StartCheck:
    """Judge one start: every write adds a bit, never clears one; count each bit's 0 -> 1."""
    current = 0
    redundant: list[int] = []
    cleared: list[int] = []
    counts = dict.fromkeys(STATUS_BITS, 0)
    for value in writes:
        if value & current != current:
            cleared.append(value)
        if value & ~current == 0:
            redundant.append(value)
        for name, bit in STATUS_BITS.items():
            if value & bit and not current & bit:
                counts[name] += 1
        current = value
    return StartCheck(tuple(writes), tuple(redundant), tuple(cleared), counts)


def status_name(value: int) -> str:
    """``0xf`` -> ``ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK``."""
    names = [n for n, b in sorted(STATUS_BITS.items(), key=lambda x: x[1]) if value & b]
    rest = value & ~sum(STATUS_BITS.values())
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


class DeviceStatusProbe:
    """Install the kprobes, clear the buffer, read what reached vdpa_sim, remove them."""

    def __init__(self, tracefs: Path | None = None) -> None:
        self.tracefs = tracefs or self._find_tracefs()
        self.installed: list[str] = []

    @staticmethod
    def _find_tracefs() -> Path:
        for path in TRACEFS_CANDIDATES:
            if (path / "kprobe_events").exists():
                return path
        # Not mounted yet (the test VM's init mounts only the basics).
        import subprocess

        TRACEFS_CANDIDATES[0].mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603
            ["mount", "-t", "tracefs", "nodev", str(TRACEFS_CANDIDATES[0])],
            check=False,
            capture_output=True,
        )
        if (TRACEFS_CANDIDATES[0] / "kprobe_events").exists():
            return TRACEFS_CANDIDATES[0]
        raise RuntimeError("tracefs with kprobe_events not available (needs root, KPROBE_EVENTS)")

    def _write(self, rel: str, text: str, append: bool = True) -> None:
        # Raw os.write: Python's append mode seeks to the end, which tracefs refuses (EINVAL).
        flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
        fd = os.open(self.tracefs / rel, flags)
        try:
            os.write(fd, (text + "\n").encode())
        finally:
            os.close(fd)

    def install(self) -> None:
        self.remove()
        errors: dict[str, str] = {}
        for kind, (func, args) in PROBES.items():
            try:
                self._write("kprobe_events", f"p:{GROUP}/sg_{kind} {func} {args}")
            except OSError as exc:
                errors[kind] = f"{exc}; {self._error_log()}"
                continue  # this kernel's vdpa_sim may lack the callback
            self._write(f"events/{GROUP}/sg_{kind}/enable", "1", append=False)
            self.installed.append(kind)
        if "set_status" not in self.installed:
            raise RuntimeError(
                f"cannot place a kprobe on vdpasim_set_status: {errors.get('set_status')}"
            )
        self._write("tracing_on", "1", append=False)
        self.clear()

    def _error_log(self) -> str:
        try:
            return (self.tracefs / "error_log").read_text().strip()[-300:]
        except OSError:
            return ""

    def clear(self) -> None:
        self._write("trace", "", append=False)

    def read(self) -> list[DeviceStatusEvent]:
        return parse_trace((self.tracefs / "trace").read_text(errors="replace"))

    def raw(self) -> str:
        return (self.tracefs / "trace").read_text(errors="replace")

    def remove(self) -> None:
        for kind in PROBES:
            enable = self.tracefs / "events" / GROUP / f"sg_{kind}" / "enable"
            if enable.exists():
                try:
                    self._write(str(enable.relative_to(self.tracefs)), "0", append=False)
                    self._write("kprobe_events", f"-:{GROUP}/sg_{kind}")
                except OSError:
                    pass
        self.installed = []
