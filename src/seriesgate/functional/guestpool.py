"""L2 guests handed from one test to the next within one Avocado job (a booted guest is the
costly part of a migration test: ~6 s of its ~13 s in the TCG test VM).

A migration test ends with one guest still running: the destination a completed migration
left, or the source a failed one left. Instead of shutting it down, the test *parks* it: its
QEMU keeps running, and a record (:class:`ParkedGuest`: pid, binary, spec, device, sockets,
files, which test left it) goes into the pool directory. The next test of the job that wants a
source guest of the same binary and spec *claims* it and reconnects QMP and the agent (both
QEMU listens on); a test that wants anything else *evicts* the pool first (a parked guest
holds a vdpa device and pinned guest RAM).

Who reaps a parked QEMU: its parent, the test's runner process, exits when the test ends. The
job's driver (:mod:`seriesgate.functional.jobs`) runs :func:`job_pool`, which makes it a child
subreaper (``PR_SET_CHILD_SUBREAPER``): the orphaned QEMU becomes its child, and a thread
reaps every pooled pid and writes its exit status (``<pid>.exit``, a Popen-style return code:
negative for a signal), so a test that adopted the guest still tells a crash (signal, core,
backtrace) from an exit. At the job's end every guest still in the pool is killed and reaped.

Example (what the driver and a test do)::

    with job_pool(workdir) as pool_dir:                # the driver, around one job
        run avocado with -p guest_pool=<pool_dir>
    pool = GuestPool(pool_dir)                         # a test
    parked = pool.claim(lambda g: g.spec == wanted)    # None: boot one
    pool.park(record)                                  # at the end of the test
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# "0": every test boots its own guests (for comparing; the jobs pass no pool then).
SHARE_GUESTS_ENV = "SERIESGATE_SHARE_GUESTS"
POOL_PARAM = "guest_pool"  # the Avocado parameter (-p guest_pool=DIR) that enables sharing
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
REAP_EVERY = 0.1
EXIT_UNKNOWN = 255  # gone, but no exit status recorded (reaped elsewhere)

log = logging.getLogger("seriesgate.guestpool")


def sharing_enabled() -> bool:
    return os.environ.get(SHARE_GUESTS_ENV, "1") != "0"


class PoolError(Exception):
    """The pool cannot do what was asked (e.g. a parked guest survives SIGKILL)."""


@dataclass(frozen=True)
class ParkedGuest:
    """A running L2 guest left by one test for the next."""

    pid: int
    binary: str
    spec: dict[str, Any]  # seriesgate.functional.migration.GuestSpec as a dict
    device: str  # the vdpa device it runs on
    device_index: int  # its index in the test environment's devices
    mac: str  # the device's MAC (the guest's NIC was set back to it)
    iface: str
    name: str  # its VM name in the test that started it (its files are <name>.*)
    workdir: str  # where its stderr, console and trace files are
    qmp_path: str
    agent_socket: str
    first_test: str  # the test that booted it
    last_test: str  # the test that parked it
    tests_served: int  # tests that used it so far
    booted_at: float  # wall clock

    @property
    def agent_socket_path(self) -> Path:
        return Path(self.agent_socket)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ParkedGuest:
        return cls(**obj)


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def exit_path(pool_dir: Path, pid: int) -> Path:
    return pool_dir / f"{pid}.exit"


def read_exit(pool_dir: Path, pid: int) -> int | None:
    """The reaped guest's Popen-style return code, or None while no status is recorded."""
    try:
        return int(exit_path(pool_dir, pid).read_text())
    except (OSError, ValueError):
        return None


class GuestPool:
    """The test side: park, claim and evict guests in ``pool_dir`` (one test at a time)."""

    def __init__(self, pool_dir: Path) -> None:
        self.dir = Path(pool_dir)

    def _records(self) -> list[Path]:
        return sorted(self.dir.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)

    def park(self, guest: ParkedGuest) -> None:
        exit_path(self.dir, guest.pid).unlink(missing_ok=True)  # an earlier process's pid
        tmp = self.dir / f".{guest.pid}.tmp"
        tmp.write_text(json.dumps(guest.to_json(), indent=1) + "\n")
        tmp.rename(self.dir / f"{guest.pid}.json")

    def parked(self) -> list[ParkedGuest]:
        out = []
        for path in self._records():
            try:
                out.append(ParkedGuest.from_json(json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                path.unlink(missing_ok=True)
        return out

    def claim(self, wanted: Callable[[ParkedGuest], bool]) -> ParkedGuest | None:
        """Take the newest live parked guest that ``wanted`` accepts out of the pool."""
        for guest in self.parked():
            record = self.dir / f"{guest.pid}.json"
            if not is_alive(guest.pid) or read_exit(self.dir, guest.pid) is not None:
                record.unlink(missing_ok=True)
                continue
            if wanted(guest):
                record.rename(self.dir / f"{guest.pid}.claimed")
                return guest
        return None

    def evict(self, timeout: float = 30.0) -> list[ParkedGuest]:
        """Kill every parked guest (its device and pinned RAM are needed); wait for them."""
        evicted = self.parked()
        for guest in evicted:
            kill_guest(self.dir, guest.pid, timeout)
            (self.dir / f"{guest.pid}.json").unlink(missing_ok=True)
        return evicted


def wait_exit(pool_dir: Path, pid: int, timeout: float) -> int | None:
    """The return code once the reaper recorded it (:data:`EXIT_UNKNOWN` when the process is
    gone and nobody records it), or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    gone_since: float | None = None
    while True:
        rc = read_exit(pool_dir, pid)
        if rc is not None:
            return rc
        if not is_alive(pid):
            # The reaper writes the status within REAP_EVERY; a pid nobody reaps for us
            # (reparented elsewhere) is gone with its status unknown.
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since > 2.0:
                return EXIT_UNKNOWN
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def kill_guest(pool_dir: Path, pid: int, timeout: float = 30.0) -> int:
    """SIGKILL the guest's process group (its own session) and wait for its exit status."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    rc = wait_exit(pool_dir, pid, timeout)
    if rc is None:
        raise PoolError(f"parked guest QEMU (pid {pid}) survives SIGKILL for {timeout:.0f} s")
    return rc


# -- the job side ------------------------------------------------------------------------


def _pooled_pids(pool_dir: Path) -> set[int]:
    pids = set()
    for path in pool_dir.iterdir():
        if path.suffix in (".json", ".claimed") and path.stem.isdigit():
            pids.add(int(path.stem))
    return pids


def reap_once(pool_dir: Path) -> list[int]:
    """Reap the pooled pids that are our children and have exited; record their status."""
    reaped = []
    for pid in _pooled_pids(pool_dir):
        if exit_path(pool_dir, pid).exists():
            continue
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not (yet) reparented to us, or already reaped
            continue
        if got == pid:
            rc = os.waitstatus_to_exitcode(status)
            exit_path(pool_dir, pid).write_text(f"{rc}\n")
            reaped.append(pid)
    return reaped


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); False if not.

    For a process that runs jobs and nothing else (``python -m seriesgate.functional.jobs``):
    every orphan below it becomes its child, to be reaped by it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def is_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        flag = ctypes.c_int(0)
        ok = int(libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
    return ok and flag.value != 0


@contextlib.contextmanager
def job_pool(pool_dir: Path) -> Iterator[Path]:
    """A pool for one job: reaps parked guests while it runs, kills the rest at its end."""
    pool_dir.mkdir(parents=True, exist_ok=True)
    if not is_subreaper():
        log.warning(
            "not a child subreaper (become_subreaper): a shared guest's exit status is lost"
        )
    stop = threading.Event()

    def reaper() -> None:
        while not stop.wait(REAP_EVERY):
            try:
                reap_once(pool_dir)
            except OSError as exc:  # the directory went away: nothing left to watch
                log.warning("guest pool reaper: %s", exc)

    thread = threading.Thread(target=reaper, name="guest-pool-reaper", daemon=True)
    thread.start()
    try:
        yield pool_dir
    finally:
        stop.set()
        thread.join(timeout=5)
        for pid in _pooled_pids(pool_dir):
            if read_exit(pool_dir, pid) is not None:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and pid not in reap_once(pool_dir):
                if not is_alive(pid):
                    break
                time.sleep(0.05)
        reap_orphaned_qemus()


def _children_named(prefix: str) -> list[int]:
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and comm.startswith(prefix):
            found.append(int(entry.name))
    return found


def reap_orphaned_qemus(
    timeout: float = 30.0, prefix: str = "qemu-system", keep: Iterable[int] = ()
) -> list[int]:
    """Kill and reap the QEMUs orphaned to us (a subreaper), but ``keep``: those of a test
    that Avocado's timeout killed before its tearDown could stop them."""
    pids = [pid for pid in _children_named(prefix) if pid not in set(keep)]
    for pid in pids:
        log.warning("killing QEMU pid %d left running by a test that did not stop it", pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                got, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if got == pid:
                break
            time.sleep(0.05)
    return pids
