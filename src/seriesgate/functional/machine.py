"""A QEMU under test: launch, QMP, events, console, trace, and a shutdown that always reaps.

In the spirit of QEMU's ``python/qemu/machine`` (QEMUMachine), trimmed to what the
vhost-vdpa tests need and strict about failures of the QEMU under test:

- ``launch()`` starts QEMU in its own session with ``-qmp`` on a unix socket,
  ``-msg timestamp=on``, a per-VM ``-trace`` file (log backend) and stderr in a file;
  RLIMIT_MEMLOCK is raised (vhost-vdpa pins guest RAM) and core dumps are enabled in
  the VM's directory so a crash can be backtraced with gdb.
- QMP goes through ``qemu.qmp``; every event is recorded with its timestamp
  (``events``), and ``event_wait()`` matches events partially, like QEMUMachine.
- A QEMU that dies on a signal raises :class:`QemuCrashed` (signal + backtrace) from
  whatever call noticed it, never a timeout. ``check_vhost()`` raises
  :class:`VhostFallback` when QEMU fell back to userspace virtio.
- ``shutdown()`` always reaps: ``quit`` -> wait -> SIGKILL of the process group.

Two machines (migration source and destination) are just two instances.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from seriesgate.functional import guestpool
from seriesgate.functional.model import Crash
from seriesgate.functional.trace import TraceEvent, read_trace
from seriesgate.proc import kill_group
from seriesgate.testenv.inside import CORE_DIR

# Messages meaning the vDPA datapath is not in use although QEMU keeps running.
VHOST_FALLBACK_PATTERNS = (
    re.compile(r"unable to start vhost net.*falling back on userspace virtio"),
    re.compile(r"vhost_set_vring_num failed"),
    re.compile(r"vhost VQ \d+ ring restore failed"),
)
CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)
TAIL_LINES = 40
CORES_ENV = "SERIESGATE_CORES"


class QemuFailure(AssertionError):
    """The QEMU under test misbehaved: a test failure (Avocado FAIL), not a harness error."""


class QemuCrashed(QemuFailure):
    def __init__(self, message: str, crash: Crash) -> None:
        super().__init__(message)
        self.crash = crash


class QemuExited(QemuFailure):
    """QEMU exited (no crash signal) while the test still needed it."""


class QemuTimeout(QemuFailure):
    """QEMU is alive but did not do what was awaited in time (a hang)."""


class VhostFallback(QemuFailure):
    """QEMU fell back to userspace virtio: the vDPA datapath is not what runs."""


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(missing)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def event_matches(event: Mapping[str, Any], match: Mapping[str, Any] | None) -> bool:
    """Partial match: every key in ``match`` is in ``event`` with an equal (or matching) value.

    >>> event_matches({"event": "MIGRATION", "data": {"status": "completed"}},
    ...               {"data": {"status": "completed"}})
    True
    >>> event_matches({"data": {"status": "active"}}, {"data": {"status": "completed"}})
    False
    """
    if match is None:
        return True
    for key, want in match.items():
        if key not in event:
            return False
        got = event[key]
        if isinstance(want, Mapping):
            if not isinstance(got, Mapping) or not event_matches(got, want):
                return False
        elif got != want:
            return False
    return True


def event_time(event: Mapping[str, Any]) -> float:
    """A QMP event's wall-clock timestamp in seconds."""
    ts = event.get("timestamp", {})
    return float(ts.get("seconds", 0)) + float(ts.get("microseconds", 0)) / 1e6


def run_gdb(*args: str, timeout: float = 60.0) -> str | None:
    """``gdb -batch -nx ARGS``'s output; None without gdb; raises ``TimeoutExpired``."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return None
    return subprocess.run(  # noqa: S603 - argv list
        [gdb, "-batch", "-nx", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        errors="replace",
    ).stdout


def thread_stacks(pid: int, frames: int = 12) -> str:
    """Every thread's top frames of a live (hung) QEMU, from gdb; a note when unavailable."""
    try:
        out = run_gdb("-p", str(pid), "-ex", f"thread apply all bt {frames}")
    except subprocess.TimeoutExpired:
        return "(gdb timed out)"
    if out is None:
        return "(no gdb: cannot say where it hangs)"
    keep = [ln for ln in out.splitlines() if ln.startswith(("Thread ", "#"))]
    return "\n".join(keep) or "(gdb printed no stack)"


class AdoptedProcess:
    """A running QEMU this process did not start: a guest another test parked
    (:mod:`seriesgate.functional.guestpool`). Popen's ``poll``/``wait``/``returncode``, from
    the exit status the pool's reaper records (its parent is the job's driver now)."""

    def __init__(self, pid: int, pool_dir: Path) -> None:
        self.pid = pid
        self.pool_dir = pool_dir
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            rc = guestpool.read_exit(self.pool_dir, self.pid)
            if rc is None and not guestpool.is_alive(self.pid):
                # Gone: the reaper records its status within a tick.
                rc = guestpool.wait_exit(self.pool_dir, self.pid, 3.0)
                rc = guestpool.EXIT_UNKNOWN if rc is None else rc
            self.returncode = rc
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            rc = guestpool.wait_exit(self.pool_dir, self.pid, 1e9 if timeout is None else timeout)
            if rc is None:
                raise subprocess.TimeoutExpired(f"QEMU pid {self.pid}", timeout or 0.0)
            self.returncode = rc
        return self.returncode


# Popen objects of QEMUs handed to the guest pool (release()): kept referenced, so that
# subprocess's clean-up of collected Popens never reaps a parked guest behind the pool's back.
_RELEASED: list[subprocess.Popen[bytes]] = []


class VdpaMachine:
    """One QEMU process under test.

    ``workdir`` receives ``<name>.stderr``, ``<name>.console.log``, ``<name>.trace``,
    the QMP socket and (on a crash) the core. ``args`` are the machine's own arguments;
    the QMP, trace, msg and display options are added by ``launch()``.
    """

    def __init__(
        self,
        binary: Path | str,
        workdir: Path,
        *,
        name: str = "vm",
        args: Sequence[str] = (),
        firmware_dirs: Sequence[Path | str] = (),
        trace_events: Sequence[str] = ("vhost_vdpa_*",),
        memlock: int | None = resource.RLIM_INFINITY,
        log: logging.Logger | None = None,
    ) -> None:
        self.binary = Path(binary)
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.firmware_dirs = [Path(p) for p in firmware_dirs]
        self.trace_events = list(trace_events)
        self.memlock = memlock
        self.log = log or logging.getLogger(f"seriesgate.machine.{name}")
        # Where its own files are (stderr, console, trace): kept when another test adopts it.
        self.files_name, self.files_dir = name, self.workdir
        self.stderr_path = self.workdir / f"{name}.stderr"
        self.console_log = self.workdir / f"{name}.console.log"
        self.trace_path = self.workdir / f"{name}.trace"
        # Unix socket paths are limited to ~107 bytes: keep the socket short.
        self.qmp_path = Path(f"/tmp/sg-qmp-{os.getpid()}-{name}-{id(self) & 0xFFFF:x}.sock")
        self.events: list[dict[str, Any]] = []
        self.crash: Crash | None = None
        self.exitcode: int | None = None
        self._proc: subprocess.Popen[bytes] | AdoptedProcess | None = None
        self._argv: list[str] | None = None  # an adopted QEMU's command line (its .cmdline)
        self._qmp: QEMUMonitorProtocol | None = None
        self._stderr_fh: Any = None
        self._launched_at = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def command_line(self) -> list[str]:
        if self._argv is not None:
            return list(self._argv)
        argv = [str(self.binary)]
        for d in self.firmware_dirs:
            argv += ["-L", str(d)]
        argv += [
            "-display", "none",
            "-msg", "timestamp=on",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
        ]  # fmt: skip
        if self.trace_events:
            for pattern in self.trace_events:
                argv += ["-trace", f"enable={pattern}"]
            argv += ["-trace", f"file={self.trace_path}"]
        return argv + self.args

    def _preexec(self) -> None:
        # Runs in the child: pin-able memory for vhost-vdpa, cores for backtraces.
        if self.memlock is not None:
            try:
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (self.memlock, self.memlock))
            except (ValueError, OSError):
                # Not privileged to raise the hard limit: take what is allowed; a too
                # small limit shows up as QEMU failing to map guest memory.
                hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
        # $SERIESGATE_CORES=0: no core files (no gdb backtrace; the signal is still recorded),
        # to tell whether core dumps play a part in the test VM's deaths.
        limit = 0 if os.environ.get(CORES_ENV) == "0" else resource.RLIM_INFINITY
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (limit, limit))
        except (ValueError, OSError):
            pass

    def launch(self, timeout: float = 30.0) -> None:
        """Start QEMU and connect QMP; raises QemuExited/QemuCrashed if it dies first."""
        if self._proc is not None:
            raise RuntimeError(f"{self.name}: already launched")
        argv = self.command_line
        self.log.info("%s: launching: %s", self.name, " ".join(argv))
        (self.workdir / f"{self.name}.cmdline").write_text(" ".join(argv) + "\n")
        self.qmp_path.unlink(missing_ok=True)
        self._stderr_fh = self.stderr_path.open("wb")
        self._proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
            argv,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self._preexec,  # noqa: PLW1509 - single-threaded at this point
        )
        self._launched_at = time.monotonic()
        if not self._connect_qmp(timeout, "while starting"):
            self.kill()
            raise QemuTimeout(
                f"{self.name}: QMP socket not up after {timeout:.0f} s\n{self.failure_context()}"
            )
        self.log.info("%s: QMP connected, pid %d", self.name, self._proc.pid)

    def _connect_qmp(self, timeout: float, doing: str) -> bool:
        """Connect QMP to the socket QEMU listens on; False after ``timeout`` (a QEMU that
        dies meanwhile raises QemuCrashed/QemuExited)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive(doing)
            if self.qmp_path.exists():
                qmp = QEMUMonitorProtocol(str(self.qmp_path))
                try:
                    qmp.connect()
                except (QMPError, OSError):
                    qmp.close()
                else:
                    self._qmp = qmp
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    @classmethod
    def adopt(
        cls,
        parked: guestpool.ParkedGuest,
        pool_dir: Path,
        *,
        name: str,
        workdir: Path,
        log: logging.Logger | None = None,
        timeout: float = 10.0,
    ) -> VdpaMachine:
        """Take over a parked, running QEMU: reconnect its QMP socket.

        Its stderr, console and trace stay the files it was started with (in the test
        that booted it); what this machine writes itself (a crash's backtrace, thread
        stacks) goes to ``workdir`` under ``name``.
        """
        vm = cls(parked.binary, Path(parked.workdir), name=parked.name, trace_events=(), log=log)
        vm.name, vm.workdir = name, Path(workdir)
        vm.qmp_path = Path(parked.qmp_path)
        cmdline = Path(parked.workdir) / f"{parked.name}.cmdline"
        vm._argv = cmdline.read_text().split() if cmdline.exists() else [parked.binary]
        vm._proc = AdoptedProcess(parked.pid, pool_dir)
        vm._launched_at = time.monotonic()
        if not vm._connect_qmp(timeout, "while adopting it"):
            raise QemuTimeout(f"{name}: parked QEMU (pid {parked.pid}) did not accept QMP")
        vm.log.info("%s: adopted %s (pid %d) of %s", name, parked.name, parked.pid,
                    parked.last_test)  # fmt: skip
        return vm

    def release(self) -> None:
        """Let go of a running QEMU without stopping it (parked for the next test): close
        QMP and the stderr handle, keep its sockets; shutdown() is a no-op afterwards."""
        if self._qmp is not None:
            try:
                self._qmp.close()
            except Exception:  # noqa: BLE001 - closing a socket
                pass
            self._qmp = None
        if self._stderr_fh is not None:
            self._stderr_fh.close()
            self._stderr_fh = None
        if isinstance(self._proc, subprocess.Popen):
            _RELEASED.append(self._proc)
        self._proc = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name}: not launched")
        return self._proc.pid

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def check_alive(self, doing: str = "") -> None:
        """Raise QemuCrashed / QemuExited if the process has gone."""
        if self._proc is None:
            raise RuntimeError(f"{self.name}: not launched")
        rc = self._proc.poll()
        if rc is None:
            return
        self._on_exit(rc)
        what = f" {doing}" if doing else ""
        if self.crash is not None:
            frames = "\n  ".join(self.crash.frames) or "(no backtrace: no core or gdb)"
            raise QemuCrashed(
                f"{self.name}: QEMU {self.binary} died on {self.crash.signal}{what}\n"
                f"backtrace:\n  {frames}\n{self.failure_context()}",
                self.crash,
            )
        why = (
            " (status 0 under -no-reboot: the guest reset or powered off, e.g. a triple fault"
            " or a panic; see the console)"
            if rc == 0 and "-no-reboot" in self.command_line
            else ""
        )
        shutdown = [e for e in self.events if e.get("event") == "SHUTDOWN"]
        if shutdown:  # QEMU says why: guest-reset, guest-shutdown, host-qmp-quit, ...
            why += f" (QMP SHUTDOWN event: {shutdown[-1].get('data', {}).get('reason')})"
        raise QemuExited(
            f"{self.name}: QEMU exited with status {rc}{what}{why}\n{self.failure_context()}"
        )

    def _on_exit(self, rc: int) -> None:
        """Record the exit status once; on a crash signal, find the core and backtrace it."""
        if self.exitcode is not None:
            return
        self.exitcode = rc
        if rc < 0 and -rc in [int(s) for s in CRASH_SIGNALS]:
            sig = signal.Signals(-rc).name
            frames = self._backtrace()
            self.crash = Crash(
                binary=str(self.binary), signal=sig, frames=frames, log=self.stderr_path
            )
            self.log.error("%s: QEMU died on %s", self.name, sig)
            (self.workdir / f"{self.name}.crash.json").write_text(
                json.dumps({"binary": str(self.binary), "signal": sig, "frames": list(frames)})
            )

    def _backtrace(self) -> tuple[str, ...]:
        assert self._proc is not None
        pid = self._proc.pid
        cores = [CORE_DIR / f"core.{pid}", self.workdir / f"core.{pid}", self.workdir / "core"]
        core = next((c for c in cores if c.exists()), None)
        if core is None or shutil.which("gdb") is None:  # without gdb the core stays
            return ()
        try:
            out = run_gdb("-ex", "bt 30", str(self.binary), str(core))
        except subprocess.TimeoutExpired:
            return ("(gdb timed out)",)
        finally:
            if core.parent == CORE_DIR:  # the test VM's RAM: keep the backtrace, not the core
                core.unlink(missing_ok=True)
        if out is None:
            return ()
        (self.workdir / f"{self.name}.gdb.txt").write_text(out)
        frames: list[str] = []
        for ln in out.splitlines():  # gdb prints frame #0 twice (signal banner, then bt)
            if re.match(r"^#\d+\s", ln) and ln not in frames:
                frames.append(ln)
        return tuple(frames)

    def shutdown(self, timeout: float = 15.0) -> None:
        """Quit via QMP, wait, then kill; always reaps. Records a crash, never raises for one."""
        if self._proc is None:
            return
        try:
            if self._proc.poll() is None and self._qmp is not None:
                try:
                    self._qmp.settimeout(5.0)
                    self._qmp.cmd("quit")
                except (QMPError, OSError, TimeoutError, EOFError):
                    pass  # it may already be gone
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.log.warning("%s: did not quit in %.0f s, killing", self.name, timeout)
                self.log.warning("%s", self.thread_report())
                kill_group(self._proc)
                self._wait_killed()
        finally:
            self._close()
        self._on_exit(self._proc.wait(timeout=0))  # reaped above: its return code

    def _wait_killed(self, timeout: float = 30.0) -> None:
        """Wait for a SIGKILLed QEMU; one stuck in the kernel cannot die: say where, give up."""
        assert self._proc is not None
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            report = self.thread_report()
            self.log.error("%s: still alive %.0f s after SIGKILL\n%s", self.name, timeout, report)
            raise QemuTimeout(
                f"{self.name}: QEMU (pid {self._proc.pid}) is stuck in the kernel and survives "
                f"SIGKILL\n{report}"
            ) from None

    def thread_report(self) -> str:
        """Each QEMU thread: name, state, wait channel and kernel stack (where it hangs)."""
        if self._proc is None or self._proc.poll() is not None:
            return f"{self.name}: not running"
        lines = [f"--- {self.name} threads (pid {self._proc.pid}):"]
        task_dir = Path(f"/proc/{self._proc.pid}/task")
        try:
            tids = sorted(task_dir.iterdir(), key=lambda p: int(p.name))
        except OSError as exc:
            return f"{self.name}: cannot list threads: {exc}"
        for task in tids:
            try:
                comm = (task / "comm").read_text().strip()
                state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
                wchan = (task / "wchan").read_text().strip()
            except OSError:
                continue
            lines.append(f"  {task.name} {comm} state={state} wchan={wchan}")
            try:
                stack = (task / "stack").read_text().strip()
            except OSError:
                stack = ""
            if stack and state == "D":
                lines += ["      " + ln for ln in stack.splitlines()[:12]]
        return "\n".join(lines)

    def kill(self) -> None:
        """SIGKILL the process group and reap (no QMP)."""
        if self._proc is None:
            return
        kill_group(self._proc)
        try:
            self._wait_killed()
        finally:
            self._close()
        self._on_exit(self._proc.wait(timeout=0))  # reaped above: its return code

    def wait_exit(self, timeout: float) -> int:
        """Wait for QEMU to exit on its own (e.g. after ``quit`` from the guest)."""
        assert self._proc is not None
        rc = self._proc.wait(timeout=timeout)
        self._close()
        self._on_exit(rc)
        return rc

    def _close(self) -> None:
        if self._qmp is not None:
            try:
                self._qmp.close()
            except Exception:  # noqa: BLE001 - closing a dead socket
                pass
            self._qmp = None
        if self._stderr_fh is not None:
            self._stderr_fh.close()
            self._stderr_fh = None
        self.qmp_path.unlink(missing_ok=True)

    def __enter__(self) -> VdpaMachine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- QMP ---------------------------------------------------------------------------

    def qmp(
        self, command: str, timeout: float = 30.0, *, stacks: bool = True, **arguments: Any
    ) -> Any:
        """Run a QMP command; its return value. QMP errors raise ``qemu.qmp.ExecuteError``.

        No answer within ``timeout`` raises :class:`QemuTimeout` with every thread's stack
        from gdb, taken before anyone kills the process (``stacks=False``: without, for
        best-effort status queries on a path that already reports a hang)."""
        if self._qmp is None:
            self.check_alive(f"before QMP {command}")
            raise RuntimeError(f"{self.name}: QMP not connected")
        self._qmp.settimeout(timeout)
        try:
            result = self._qmp.cmd(command, **arguments)
        except QMPError as exc:
            if type(exc).__name__ == "ExecuteError":
                raise
            self.check_alive(f"during QMP {command}")
            raise
        except (OSError, EOFError, TimeoutError) as exc:
            self.check_alive(f"during QMP {command}")
            if isinstance(exc, TimeoutError):
                where = ""
                if stacks and self.is_running():
                    where = thread_stacks(self.pid)
                    (self.workdir / f"{self.name}.hang-gdb.txt").write_text(where + "\n")
                    where = f"\n--- {self.name} threads (gdb):\n{where}"
                raise QemuTimeout(
                    f"{self.name} stopped answering QMP: {command} got no answer in "
                    f"{timeout:.0f} s{where}"
                ) from exc
            raise
        self._collect_events()
        return result

    def _collect_events(self, wait: float = 0.0) -> list[dict[str, Any]]:
        if self._qmp is None:
            return []
        try:
            new = self._qmp.get_events(wait=wait if wait > 0 else False)
        except TimeoutError:
            new = []
        for ev in new:
            self.log.debug("%s: event %s", self.name, json.dumps(ev, sort_keys=True))
        self.events.extend(new)
        return new

    def event_wait(
        self,
        name: str,
        match: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
        *,
        since: int = 0,
    ) -> dict[str, Any]:
        """The first event named ``name`` (partially matching ``match``) from ``events[since:]``.

        Events already received count, so a fast event is never missed; pass
        ``since=len(m.events)`` before triggering to wait for a new one.
        """
        deadline = time.monotonic() + timeout
        index = since
        while True:
            self._collect_events()
            while index < len(self.events):
                ev = self.events[index]
                index += 1
                if ev.get("event") == name and event_matches(ev, match):
                    return ev
            self.check_alive(f"while waiting for event {name}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise QemuTimeout(
                    f"{self.name}: no {name} event matching {match} within {timeout:.0f} s"
                )
            self._collect_events(wait=min(left, 0.5))

    # -- files -------------------------------------------------------------------------

    def trace(self) -> list[TraceEvent]:
        """The events traced so far (file flushed by QEMU per line)."""
        return read_trace(self.trace_path)

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def check_vhost(self) -> None:
        """Fail loudly when QEMU reports it is not running the vhost-vdpa datapath."""
        text = self.stderr_text()
        for pattern in VHOST_FALLBACK_PATTERNS:
            m = pattern.search(text)
            if m:
                raise VhostFallback(
                    f"{self.name}: QEMU says {m.group(0)!r}: the vDPA datapath is not in use "
                    "(queue size above the device maximum? see TESTENV.md)\n"
                    f"{self.failure_context()}"
                )

    def failure_context(self) -> str:
        """Command line, stderr, console tail and trace tail (and threads if alive)."""
        threads = f"\n{self.thread_report()}" if self.is_running() else ""
        return threads + (
            f"--- {self.name} command line:\n{' '.join(self.command_line)}\n"
            f"--- {self.name} stderr (tail):\n{_tail(self.stderr_path)}\n"
            f"--- {self.name} console (tail):\n{_tail(self.console_log)}\n"
            f"--- {self.name} trace (tail):\n{_tail(self.trace_path, 20)}"
        )

    def guarded(self, what: str, func: Callable[[], Any]) -> Any:
        """Run ``func``; if it fails and QEMU died meanwhile, raise the crash instead."""
        try:
            return func()
        except QemuFailure:
            raise
        except Exception:
            self.check_alive(what)
            raise
