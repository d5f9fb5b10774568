"""VdpaMachine against a real QEMU (Debian's qemu-system-x86_64 from ci/setup-host.sh, TCG).

No vDPA here: these check the lifecycle every functional test relies on (QMP, events with
partial matching, trace file, reaping, crash detection with the signal named).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from seriesgate.functional.machine import QemuCrashed, QemuTimeout, VdpaMachine, event_time

QEMU = Path("/usr/bin/qemu-system-x86_64")
ARGS = ["-machine", "q35", "-accel", "tcg", "-m", "64", "-nodefaults", "-S"]

pytestmark = pytest.mark.slow


def _machine(tmp_path: Path, name: str) -> VdpaMachine:
    assert QEMU.exists(), "ci/setup-host.sh installs qemu-system-x86"
    return VdpaMachine(QEMU, tmp_path, name=name, args=ARGS, trace_events=("qemu_system_*",))


def test_qmp_events_trace_and_clean_quit(tmp_path: Path) -> None:
    vm = _machine(tmp_path, "a")
    vm.launch()
    try:
        assert vm.qmp("query-status")["status"] == "prelaunch"
        since = len(vm.events)
        vm.qmp("cont")
        ev = vm.event_wait("RESUME", timeout=10, since=since)
        assert abs(event_time(ev) - time.time()) < 60
        # Paused first: a running SeaBIOS may reset the machine itself right after a
        # system_reset (its resume path's "hard reboot": a RESET with guest=true), which made
        # the check below fail once under load.
        vm.qmp("stop")
        vm.event_wait("STOP", timeout=10)
        vm.qmp("system_reset")
        vm.event_wait("RESET", {"data": {"guest": False}}, timeout=10)
        with pytest.raises(QemuTimeout):
            vm.event_wait("RESET", {"data": {"guest": True}}, timeout=1)
    finally:
        vm.shutdown()
    assert vm.exitcode == 0 and vm.crash is None
    assert not vm.is_running()
    names = [e.name for e in vm.trace()]
    assert "qemu_system_shutdown_request" in names
    assert all(e.timestamp is not None and e.tid is not None for e in vm.trace())
    assert (tmp_path / "a.cmdline").read_text().startswith(str(QEMU))


def test_crash_is_reported_with_its_signal(tmp_path: Path) -> None:
    vm = _machine(tmp_path, "b")
    vm.launch()
    try:
        os.kill(vm.pid, signal.SIGSEGV)
        with pytest.raises(QemuCrashed) as info:
            vm.event_wait("NEVER", timeout=30)
    finally:
        vm.shutdown()
    assert info.value.crash.signal == "SIGSEGV"
    assert "died on SIGSEGV" in str(info.value)
    assert (tmp_path / "b.crash.json").exists()
