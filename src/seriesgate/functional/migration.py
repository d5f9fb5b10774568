"""Live migration between two VdpaMachines: orchestration and what it records.

The source runs the guest; the destination is started with ``-incoming defer`` on a
second vdpa_sim device with the same MAC. :func:`migrate` sets the ``events``
capability on both sides, raises ``max-bandwidth`` (the default 32 MiB/s makes even a
256 MB guest slow), starts the incoming side on a unix socket, runs ``migrate`` and
waits for the source's terminal ``MIGRATION`` status while it

- records every QMP event of both sides with its timestamp,
- optionally samples ``query-status`` round trips on the destination every ~10 ms
  (the QMP responsiveness claim), and
- bounds the whole thing: a migration that neither completes nor fails within
  ``timeout`` is a hang, reported with the last status of both sides.

It then reads ``query-migrate`` on the source (downtime, total time) and, for a
completed migration, waits for the destination's ``MIGRATION completed``.
Everything lands in a :class:`MigrationRecord` that serialises to JSON, so the
timeline (:mod:`seriesgate.functional.timeline`) can be rebuilt offline.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seriesgate.functional.machine import (
    QemuExited,
    QemuTimeout,
    VdpaMachine,
    event_matches,
    thread_stacks,
)
from seriesgate.functional.test import (
    Guest,
    GuestResetAtBoot,
    boot_retrying_resets,
    raise_if_reset_at_boot,
)
from seriesgate.functional.timeline import (
    MapTimeline,
    QmpEvent,
    RttSample,
    build_timeline,
    latency_stats,
)
from seriesgate.testenv.agent import AgentError, GuestAgent, l2_qemu_args
from seriesgate.testenv.environment import VdpaEnvironment
from seriesgate.testenv.model import VdpaDevice

# 1 GiB/s: a 2 GB guest's dirty RAM moves in seconds; vdpa_sim is the bottleneck, not this.
MAX_BANDWIDTH = 1 << 30
DEST_TRACE_EVENTS = (
    "vhost_vdpa_*",
    # Migration landmarks on the destination's own clock, next to its maps.
    "loadvm_state_setup",
    "loadvm_state_cleanup",
    "vmstate_downtime_checkpoint",
    "vm_state_notify",
    "migrate_set_state",
)
TERMINAL = ("completed", "failed", "cancelled")


class MigrationHang(QemuTimeout):
    """The migration neither completed nor failed in time."""


@dataclass
class MigrationRecord:
    """Everything one migration left behind (wall-clock seconds)."""

    uri: str
    started: float  # wall clock when `migrate` was sent
    ended: float  # wall clock when the source reached a terminal status
    status: str  # source's terminal MIGRATION status
    query_migrate: dict[str, Any]  # source, after the terminal status
    dest_query_migrate: dict[str, Any] = field(default_factory=dict)
    events: list[QmpEvent] = field(default_factory=list)
    rtt: list[RttSample] = field(default_factory=list)  # destination query-status samples
    dest_pid: int | None = None
    dest_trace: Path | None = None

    @property
    def downtime_ms(self) -> float | None:
        value = self.query_migrate.get("downtime")
        return None if value is None else float(value)

    @property
    def total_ms(self) -> float | None:
        value = self.query_migrate.get("total-time")
        return None if value is None else float(value)

    @property
    def error(self) -> str:
        return str(self.query_migrate.get("error-desc", ""))

    def timeline(self) -> MapTimeline:
        """The destination's guest-memory maps on this migration's timeline."""
        from seriesgate.functional.trace import read_trace

        trace = read_trace(self.dest_trace) if self.dest_trace else []
        return build_timeline(self.events, trace, pid=self.dest_pid)

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "started": self.started,
            "ended": self.ended,
            "status": self.status,
            "query_migrate": self.query_migrate,
            "dest_query_migrate": self.dest_query_migrate,
            "events": [e.to_json() for e in self.events],
            "rtt": [[s.sent, s.rtt] for s in self.rtt],
            "dest_pid": self.dest_pid,
            "dest_trace": str(self.dest_trace) if self.dest_trace else None,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], base: Path | None = None) -> MigrationRecord:
        trace = obj.get("dest_trace")
        trace_path = Path(trace) if trace else None
        if trace_path is not None and base is not None and not trace_path.exists():
            trace_path = base / trace_path.name  # moved with its record (unit-test data)
        return cls(
            uri=obj["uri"],
            started=obj["started"],
            ended=obj["ended"],
            status=obj["status"],
            query_migrate=obj["query_migrate"],
            dest_query_migrate=obj.get("dest_query_migrate", {}),
            events=[QmpEvent.from_json(e) for e in obj["events"]],
            rtt=[RttSample(s, r) for s, r in obj.get("rtt", [])],
            dest_pid=obj.get("dest_pid"),
            dest_trace=trace_path,
        )

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")

    def summary(self) -> dict[str, Any]:
        """Flat numbers for measurements.json."""
        out: dict[str, Any] = {
            "status": self.status,
            "downtime_ms": self.downtime_ms,
            "total_ms": self.total_ms,
            "setup_ms": self.query_migrate.get("setup-time"),
        }
        if self.error:
            out["error"] = self.error
        if self.rtt:
            out["qmp_rtt"] = latency_stats(self.rtt)
        return out


def enable_events(vm: VdpaMachine) -> None:
    vm.qmp("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])


def _qmp_events(vm: VdpaMachine, side: str, since: int) -> list[QmpEvent]:
    return [QmpEvent.from_qmp(side, ev) for ev in vm.events[since:] if "event" in ev]


def _status(vm: VdpaMachine) -> str:
    try:
        info = vm.qmp("query-migrate", timeout=5.0, stacks=False)
    except Exception as exc:  # noqa: BLE001 - reporting only
        return f"(query-migrate failed: {exc})"
    return str(info.get("status", "none"))


def migrate(
    source: VdpaMachine,
    dest: VdpaMachine,
    uri: str,
    *,
    timeout: float = 120.0,
    sample_rtt: bool = False,
    rtt_interval: float = 0.010,
    max_bandwidth: int = MAX_BANDWIDTH,
    on_active: Callable[[], None] | None = None,
) -> MigrationRecord:
    """Migrate ``source`` to ``dest`` (started with ``-incoming defer``) over ``uri``.

    ``on_active`` runs once the source reports ``active`` (e.g. to cancel). Raises
    :class:`MigrationHang` if no terminal status comes within ``timeout``; a QEMU that
    dies meanwhile raises QemuCrashed/QemuExited from the machine.
    """
    src_since, dst_since = len(source.events), len(dest.events)
    for vm in (source, dest):
        enable_events(vm)
    bandwidth: dict[str, Any] = {"max-bandwidth": max_bandwidth}  # not a Python name
    source.qmp("migrate-set-parameters", **bandwidth)
    dest.qmp("migrate-incoming", uri=uri)
    started = time.time()
    source.qmp("migrate", uri=uri)
    deadline = time.monotonic() + timeout
    rtt: list[RttSample] = []
    status = ""
    active_seen = False
    while True:
        for ev in source.events[src_since:]:
            if ev.get("event") != "MIGRATION":
                continue
            st = ev.get("data", {}).get("status")
            if st == "active" and not active_seen:
                active_seen = True
                if on_active is not None:
                    on_active()
            if st in TERMINAL:
                status = str(st)
        if status:
            break
        source.check_alive("during the migration")  # an exit ends the wait at once
        if time.monotonic() > deadline:
            where = "\n".join(
                f"--- {vm.name} threads (gdb):\n{thread_stacks(vm.pid)}"
                for vm in (source, dest)
                if vm.is_running()
            )
            raise MigrationHang(
                f"migration to {uri} neither completed nor failed within {timeout:.0f} s: "
                f"source status {_status(source)!r}, destination status "
                f"{_status(dest) if dest.is_running() else 'exited'!r}\n{where}\n"
                f"{dest.failure_context()}"
            )
        if sample_rtt and dest.is_running():
            _sample_rtt(dest, rtt, rtt_interval, max(1.0, deadline - time.monotonic()))
            source.qmp("query-status")  # collects the source's events too
        else:
            source._collect_events(wait=0.05)  # noqa: SLF001 - poll events without a command
    ended = time.time()
    if not dest.is_running():
        try:
            dest.check_alive("during the incoming migration")
        except QemuExited:
            pass  # a failed incoming migration makes QEMU exit(1): the record says so
    info = source.qmp("query-migrate")
    dest_info: dict[str, Any] = {}
    if status == "completed":
        if sample_rtt:
            # The source completes before the destination's vm_start, where baseline maps
            # on the main thread: sample on until the destination's own "completed" event
            # (the query that waits out a blocked main thread is the sample that matters),
            # then briefly after it.
            while not _dest_completed(dest, dst_since) and time.monotonic() < deadline:
                _sample_rtt(dest, rtt, rtt_interval, max(1.0, deadline - time.monotonic()))
        # The destination flips to completed after vm_start (device start included).
        dest.event_wait(
            "MIGRATION", {"data": {"status": "completed"}}, timeout=timeout, since=dst_since
        )
        if sample_rtt:
            for _ in range(20):
                _sample_rtt(dest, rtt, rtt_interval)
        dest_info = dest.qmp("query-migrate")
    elif dest.is_running():
        dest._collect_events(wait=0.2)  # noqa: SLF001
        try:
            dest_info = dest.qmp("query-migrate", timeout=5.0)
        except Exception:  # noqa: BLE001 - the destination may be on its way out
            dest_info = {}
    events = _qmp_events(source, "source", src_since) + _qmp_events(dest, "destination", dst_since)
    events.sort(key=lambda e: e.timestamp)
    return MigrationRecord(
        uri=uri,
        started=started,
        ended=ended,
        status=status,
        query_migrate=dict(info),
        dest_query_migrate=dict(dest_info),
        events=events,
        rtt=rtt,
        dest_pid=dest.pid,
        dest_trace=dest.trace_path,
    )


def _dest_completed(dest: VdpaMachine, since: int) -> bool:
    done = {"event": "MIGRATION", "data": {"status": "completed"}}
    return any(event_matches(ev, done) for ev in dest.events[since:])


def _sample_rtt(
    dest: VdpaMachine, rtt: list[RttSample], interval: float, timeout: float = 30.0
) -> None:
    """One ``query-status`` round trip on ``dest`` into ``rtt``, then ``interval`` of rest."""
    sent = time.time()
    t0 = time.perf_counter()
    dest.qmp("query-status", timeout=timeout)
    rtt.append(RttSample(sent, time.perf_counter() - t0))
    time.sleep(interval)


# --- launching an L2 guest for migration ----------------------------------------------


@dataclass(frozen=True)
class GuestSpec:
    """How to start one side of a migration pair."""

    mem_mb: int = 256
    svq: bool = False  # x-svq=on on this side's netdev
    kvm: bool = True  # KVM in L1 (else TCG)
    prealloc: bool = False  # -mem-prealloc: page faults out of the map cost
    memlock: int | None = None  # RLIMIT_MEMLOCK for this QEMU (None: unlimited)


def guest_args(
    env: VdpaEnvironment,
    device: VdpaDevice,
    spec: GuestSpec,
    *,
    agent_socket: Path,
    console_log: Path,
    incoming: bool,
) -> list[str]:
    """QEMU arguments of an L2 guest on ``device``; ``incoming`` adds ``-incoming defer``."""
    netdev = f"vhost-vdpa,id=n0,vhostdev={device.chardev}"
    if spec.svq:
        netdev += ",x-svq=on"
    args = [
        "-machine", "q35",
        "-accel", "kvm" if spec.kvm else "tcg",
        "-cpu", "host" if spec.kvm else "max",
        "-smp", "1",
        "-m", f"{spec.mem_mb}M",
        "-netdev", netdev,
        "-device", f"virtio-net-pci,netdev=n0,id=nic0,mac={device.mac},romfile=",
        *l2_qemu_args(env.l2_guest, agent_socket=agent_socket, console_log=console_log),
    ]  # fmt: skip
    if spec.prealloc:
        args.append("-mem-prealloc")
    if incoming:
        args += ["-incoming", "defer"]
    return args


def launch_l2(
    binary: Path,
    workdir: Path,
    name: str,
    env: VdpaEnvironment,
    device: VdpaDevice,
    spec: GuestSpec,
    *,
    incoming: bool,
    firmware_dirs: Sequence[Path] = (),
    log: logging.Logger | None = None,
    boot_timeout: float | None = None,
    boot_resets: list[str] | None = None,
) -> Guest:
    """Launch one side of a migration pair (traced with :data:`DEST_TRACE_EVENTS`).

    The source's guest is booted, its agent answers and its NIC is up when this returns;
    the destination (``incoming``) waits for the migration. The caller shuts it down
    (``guest.machine.shutdown()``, ``guest.agent.close()``) also when this raises.

    Nested KVM under a TCG test VM occasionally resets an L2 guest in early boot, before
    any console output, on baseline and patched alike; such a boot is retried (twice) and
    recorded in ``boot_resets`` (never silently). Any other exit fails at once.
    """

    def launch(vm_name: str) -> Guest:
        guest = _launch_once(binary, workdir, vm_name, env, device, spec, incoming=incoming,
                             firmware_dirs=firmware_dirs, log=log)  # fmt: skip
        if incoming:
            return guest
        try:
            _boot(guest, spec, boot_timeout)
        except GuestResetAtBoot:
            guest.agent.close()
            guest.machine.shutdown()
            raise
        return guest

    return boot_retrying_resets(launch, name, resets=boot_resets, log=log)


def _launch_once(
    binary: Path,
    workdir: Path,
    name: str,
    env: VdpaEnvironment,
    device: VdpaDevice,
    spec: GuestSpec,
    *,
    incoming: bool,
    firmware_dirs: Sequence[Path],
    log: logging.Logger | None,
) -> Guest:
    workdir.mkdir(parents=True, exist_ok=True)
    agent_socket = Path(f"/tmp/sg-agent-{os.getpid()}-{name}-{time.monotonic_ns() & 0xFFFFFF:x}")
    vm = VdpaMachine(
        binary,
        workdir,
        name=name,
        args=guest_args(
            env,
            device,
            spec,
            agent_socket=agent_socket,
            console_log=workdir / f"{name}.console.log",
            incoming=incoming,
        ),
        firmware_dirs=firmware_dirs,
        trace_events=DEST_TRACE_EVENTS,
        memlock=spec.memlock if spec.memlock is not None else resource.RLIM_INFINITY,
        log=log,
    )
    guest = Guest(vm, GuestAgent(agent_socket, log=workdir / f"{name}.agent.log"), device)
    vm.launch()
    return guest


def _boot(guest: Guest, spec: GuestSpec, boot_timeout: float | None) -> None:
    vm = guest.machine
    try:
        seconds = guest.wait_ready(boot_timeout or (120.0 if spec.kvm else 400.0))
        # ci/bench_l1.py reads this line (L2 boot time per L1 QEMU).
        vm.log.info("%s: guest agent ready in %.2f s", vm.name, seconds)
    except (AgentError, QemuExited) as exc:
        raise_if_reset_at_boot(vm, exc)
        vm.check_alive("booting the guest")
        raise
    vm.check_vhost()
    guest.find_iface()
    guest.link_up()
