"""The L1 QEMU's QMP monitor: when L1 ended, and each vCPU's registers at that moment.

L1 runs with ``-action reboot=shutdown,shutdown=pause``: a guest poweroff, a panic
(``panic=-1`` reboots) and a triple fault all leave the L1 QEMU paused in status
``shutdown`` instead of exiting, so the host can read the vCPUs' state (HMP ``info registers
-a``) before it quits QEMU. Why: L1 triple faults under nested KVM on TCG (docs/findings.md
§5) left only the words "Triple fault" in l1-qemu.log; the faulting RIP, CR2 and IDT say
where.

>>> L1Monitor.rips("CPU#0\\nRIP=ffffffff81001234 RFL=00000046\\nCPU#1\\nRIP=0000fff6 x\\n")
['ffffffff81001234', '0000fff6']
>>> syms = "ffffffffc05b5000 t svm_vcpu_run\\t[kvm_amd]\\nffffffffc05b6000 T x\\t[kvm_amd]\\n"
>>> symbolize("ffffffffc05b5c60", syms), symbolize("ffffffff81000000", syms)
('svm_vcpu_run+0xc60 [kvm_amd]', '')
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

_RIP = re.compile(r"\b[RE]IP=([0-9a-f]+)")
POLL_EVERY = 1.0  # query-status at most this often (s)
# What a monitor call may raise: QMP errors, a socket's, and EOF once QEMU has gone.
_GONE = (QMPError, OSError, EOFError)


class L1Monitor:
    """The QMP client of one L1 boot (socket ``path``, server side in the L1 QEMU).

    Every call is best effort: a monitor that never connects or breaks leaves the host's
    other watches (exit status, heartbeat, idle) to end L1, as before it existed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._qmp: QEMUMonitorProtocol | None = None
        self._next_try = 0.0
        self._next_poll = 0.0

    def connected(self) -> bool:
        """Connect when the socket is there (tried at most every 0.2 s); True once done."""
        if self._qmp is not None:
            return True
        now = time.monotonic()
        if now < self._next_try or not self.path.exists():
            return False
        self._next_try = now + 0.2
        qmp = QEMUMonitorProtocol(str(self.path))
        try:
            qmp.connect()
        except _GONE:
            return False
        self._qmp = qmp
        return True

    def ended(self, *, now: bool = False) -> bool:
        """Whether L1 shut down (poweroff, panic reboot or triple fault) and sits paused;
        asked at most every POLL_EVERY s unless ``now``."""
        if not self.connected():
            return False
        t = time.monotonic()
        if not now and t < self._next_poll:
            return False
        self._next_poll = t + POLL_EVERY
        try:
            assert self._qmp is not None
            status = self._qmp.cmd("query-status")
        except _GONE:
            return False
        return isinstance(status, dict) and status.get("status") == "shutdown"

    def registers(self) -> str:
        """Every vCPU's registers (HMP ``info registers -a``); "" when not available."""
        if self._qmp is None:
            return ""
        try:
            text = self._qmp.cmd("human-monitor-command", **{"command-line": "info registers -a"})
        except _GONE:
            return ""
        return text if isinstance(text, str) else ""

    def quit(self) -> None:
        """Ask the L1 QEMU to exit (it is reaped, and killed if need be, by the caller)."""
        if self._qmp is None:
            return
        try:
            self._qmp.cmd("quit")
        except _GONE:
            pass
        self.close()

    def close(self) -> None:
        if self._qmp is not None:
            try:
                self._qmp.close()
            except _GONE:
                pass
            self._qmp = None

    @staticmethod
    def rips(registers: str) -> list[str]:
        """The instruction pointer of each vCPU in an ``info registers -a`` text."""
        return _RIP.findall(registers)


# A module symbol is never this far from the next one; beyond it, the RIP is not in them.
_MAX_SYMBOL_SIZE = 0x10000


def symbolize(rip: str, symbols: str) -> str:
    """``rip`` (hex) as ``function+0xoffset [module]`` from ``/proc/kallsyms`` lines of the
    L1's KVM modules (``l1-kvm-symbols.txt``, written by the L1 init); "" when not in them."""
    try:
        address = int(rip, 16)
    except ValueError:
        return ""
    best: tuple[int, str, str] | None = None
    for line in symbols.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[1].lower() not in ("t", "w"):
            continue
        try:
            start = int(fields[0], 16)
        except ValueError:
            continue
        module = fields[3] if len(fields) > 3 else ""
        if start <= address and (best is None or start > best[0]):
            best = (start, fields[2], module)
    if best is None or address - best[0] > _MAX_SYMBOL_SIZE:
        return ""
    return f"{best[1]}+{address - best[0]:#x} {best[2]}".strip()
