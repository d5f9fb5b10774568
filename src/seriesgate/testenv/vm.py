"""The L1 test VM: boot our kernel + initramfs on the host's root, run one command, power off.

Debian's qemu-system-x86_64 (7.2, from ci/setup-host.sh; ``$SERIESGATE_L1_QEMU`` picks another,
see l1qemu.py) runs L1: it is infrastructure, not the QEMU under test. One L1 at a time (a
lock in the cache). The console goes to ``results_dir/l1-console.log``; the exit status
comes back as ``SGL1-EXIT <nonce> <status>`` on it. A hard timeout kills the whole process
group and reports the console tail.
"""

from __future__ import annotations

import base64
import compileall
import fnmatch
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from seriesgate import proc
from seriesgate.errors import InfraError
from seriesgate.progress import say
from seriesgate.testenv import accel as l1accel
from seriesgate.testenv import l1qemu
from seriesgate.testenv.assets import STAGE, l1_lock
from seriesgate.testenv.inside import SETUP_FAILED, RunSpec
from seriesgate.testenv.l1monitor import L1Monitor, symbolize

# 3 GiB (room for two pinned 1 GiB guests, the migration overrun case) went with test-VM
# crashes within 64-353 s in CI dry runs, 1 GiB with 668-1254 s: 1 GiB until that is
# understood (the overrun test then sizes down).
L1_MEMORY_MB = 1024
# L1 vCPUs (-smp); $SERIESGATE_L1_SMP (an integer >= 1) overrides it. Two, by measurement
# (ci/bench_l1.py, docs/findings.md §5b): on 2026-12-07, 13 interleaved migration-group boots
# each, 2 vCPUs died once (a triple fault), 1 vCPU never (Fisher p = 1.0: no difference), but
# 1 vCPU took 146 s of L1 per boot against 101 s (+45%) and failed 14 of 52 baseline tests
# ("after_migration: guest did not transmit"), 2 vCPUs 2 of 48 on the boots that survived.
L1_SMP_ENV = "SERIESGATE_L1_SMP"
L1_SMP = 2
# -cpu max under TCG offers svm (nested KVM for L2); under KVM -cpu host (vmx/svm where the
# host allows nesting). $SERIESGATE_L1_CPU overrides it, e.g. "Haswell-noTSX" (no svm/vmx
# under TCG) to see the TCG fallback. ("max,-svm" made static busybox abort in
# _dl_get_origin under QEMU 7.2 TCG: not usable.)
L1_CPU_ENV = "SERIESGATE_L1_CPU"
# The accelerator (KVM where the host's KVM boots L1, else TCG) is chosen by accel.py;
# $SERIESGATE_L1_ACCEL=auto|kvm|tcg[,options] overrides it.
L1_ACCEL_ENV = l1accel.ACCEL_ENV
L1_ACCEL = l1accel.TCG_OPTIONS
# Extra L1 kernel parameters; "module.param=value" words also reach the modules the L1 init
# loads (as modprobe would pass them), e.g. "kvm_amd.npt=0" (shadow paging for L2).
L1_APPEND_ENV = "SERIESGATE_L1_APPEND_EXTRA"
CONSOLE_TAIL = 25
BOOT_ATTEMPTS = 2
BOOT_CRASH_SIGNS = ("Kernel panic", "Oops:")
# A run that writes no results file for this long is hung: L1 is killed.
# Longer than any test's own timeout (Avocado's, 600 s), which should fire first.
L1_IDLE_TIMEOUT = 660.0
# Files that are not progress for that watch: L1's console (l1-console.log) and every L2
# guest's (<vm>.console.log), and L1's heartbeat.
L1_HEARTBEAT = "l1-heartbeat"
# After SGL1-EXIT the L1 guest powers off; this long is allowed for it (s).
L1_POWEROFF_PATIENCE = 5.0
# Every vCPU's registers when L1 shut down or reset without the command's exit status.
L1_REGISTERS = "l1-registers.txt"
L1_KVM_SYMBOLS = "l1-kvm-symbols.txt"  # the KVM modules' symbols, written by the L1 init
NOT_PROGRESS_FILES = ("*console.log", L1_HEARTBEAT)
# The L1 init rewrites l1-heartbeat (results dir, over 9p) every 10 s. Older than this: the
# L1 itself has stopped (2026-12-07: an L1 silent on its console from 370 s on, ended by
# the idle watch only at 1272 s). Soft lockups of up to 26 s were seen in L1s that lived.
L1_BEAT_TIMEOUT = 90.0
_IDLE_CHECK_EVERY = 10.0
# A CPU of L1 stuck this long (the kernel's soft-lockup report) means L1 is wedged: the
# console keeps printing reports, so only this, not the idle watch, ends such a run early.
L1_LOCKUP_FATAL_S = 50
_SOFT_LOCKUP = re.compile(r"BUG: soft lockup - CPU#\d+ stuck for (\d+)s!")
# An RCU stall report (a vCPU of L1 did not run for 21 s) followed by this long with no
# results written: L1 is wedged. 2026-12-07: vCPU 0's timer stopped 130 s after boot
# ("rcu_preempt detected stalls", "timer wakeup didn't happen"); vCPU 1 kept the heartbeat
# going and nothing else happened until the idle watch ended it at 780 s.
L1_STALL_SILENCE_S = 120.0
_RCU_STALL = re.compile(r"rcu: INFO: rcu_\w+ (?:detected stalls|self-detected stall)")


@dataclass
class ConsoleStatus:
    """What the L1 console says so far."""

    started: bool = False  # SGL1-START seen: the command is about to run
    exit_status: int | None = None  # from SGL1-EXIT
    setup_failure: str | None = None  # the SGL1-SETUP-FAILED / init FAILED reason, if any
    start_uptime: float | None = None  # L1 uptime (s) when the command started
    wedged: str | None = None  # a soft-lockup report of L1_LOCKUP_FATAL_S or more
    rcu_stall: str | None = None  # the first RCU stall report, if any


class ConsoleWatcher:
    """Reads the L1 console incrementally (the log may grow to megabytes) for this run's
    markers, optionally echoing the command's lines (between START and EXIT)."""

    def __init__(self, nonce: str, echo: TextIO | None = None) -> None:
        self.nonce = nonce
        self.echo = echo
        self.status = ConsoleStatus()
        self._partial = ""
        self._tail: list[str] = []

    def feed(self, text: str) -> ConsoleStatus:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line.rstrip("\r"))
        if self.echo is not None:
            self.echo.flush()
        return self.status

    def tail(self) -> str:
        return "\n".join([*self._tail, self._partial][-CONSOLE_TAIL:])

    def _line(self, line: str) -> None:
        self._tail = [*self._tail[-CONSOLE_TAIL:], line]
        st = self.status
        words = line.split()
        if len(words) >= 2 and words[0] == "SGL1-START" and words[1] == self.nonce:
            st.started = True
            if len(words) >= 3:
                try:
                    st.start_uptime = float(words[2])
                except ValueError:
                    pass
            return
        if len(words) == 3 and words[0] == "SGL1-EXIT" and words[1] == self.nonce:
            try:
                st.exit_status = int(words[2])
            except ValueError:
                pass
            return
        lockup = _SOFT_LOCKUP.search(line)
        if lockup and int(lockup.group(1)) >= L1_LOCKUP_FATAL_S and st.wedged is None:
            st.wedged = line.strip()
        if st.rcu_stall is None and _RCU_STALL.search(line):
            st.rcu_stall = line.strip()
        for marker in (SETUP_FAILED, "sg-l1: FAILED:"):
            if line.startswith(marker) and st.setup_failure is None:
                st.setup_failure = line[len(marker) :].strip()
        if self.echo is not None and st.started and st.exit_status is None:
            self.echo.write(line + "\n")


def l1_smp(value: str | None = None) -> int:
    """The L1 vCPU count: ``value`` (default ``$SERIESGATE_L1_SMP``), else ``L1_SMP``.

    >>> l1_smp("1"), l1_smp(" "), l1_smp("4")
    (1, 2, 4)
    """
    raw = (value if value is not None else os.environ.get(L1_SMP_ENV, "")).strip()
    if not raw:
        return L1_SMP
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise InfraError(f"${L1_SMP_ENV}={raw!r}: expected a whole number of L1 vCPUs, 1 or more")
    return count


def parse_console(text: str, nonce: str) -> ConsoleStatus:
    """Find this run's markers in the L1 console text (other nonces are ignored)."""
    watcher = ConsoleWatcher(nonce)
    watcher.feed(text if text.endswith("\n") else text + "\n")
    return watcher.status


def l1_overrides(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The L1 settings the environment (default ``os.environ``) overrides that can change
    test results: ``$SERIESGATE_L1_CPU`` and ``$SERIESGATE_L1_APPEND_EXTRA``.

    >>> l1_overrides({L1_APPEND_ENV: " kvm_amd.npt=0 ", L1_CPU_ENV: ""})
    {'append_extra': 'kvm_amd.npt=0'}
    >>> l1_overrides({})
    {}
    """
    env = os.environ if environ is None else environ
    found = {}
    for key, name in (("cpu", L1_CPU_ENV), ("append_extra", L1_APPEND_ENV)):
        value = env.get(name, "").strip()
        if value:
            found[key] = value
    return found


def l1_command(
    kernel: Path,
    initrd: Path,
    append: str,
    console_log: Path,
    results_dir: Path,
    memory_mb: int = L1_MEMORY_MB,
    accel: str = "tcg",
    accel_options: str = "",
    smp: int | None = None,
    qmp_socket: Path | None = None,
) -> list[str]:
    """The L1 QEMU command line (TCG with -cpu max for nested svm, or KVM with -cpu host;
    9p host root + results); ``smp`` vCPUs (default: ``l1_smp()``). With ``qmp_socket`` L1
    pauses when it shuts down or resets instead of exiting (:mod:`.l1monitor` reads its
    registers then quits it); without, ``-no-reboot`` makes it exit."""
    if qmp_socket is None:
        ending = ["-no-reboot"]
    else:
        ending = [
            "-action",
            "reboot=shutdown,shutdown=pause",
            "-qmp",
            f"unix:{qmp_socket},server=on,wait=off",
        ]
    return [
        *l1qemu.command_prefix(),
        "-name",
        "seriesgate-l1",
        "-machine",
        "q35",
        "-accel",
        l1accel.accel_option(accel, accel_options),
        "-cpu",
        l1_overrides().get("cpu", "host" if accel == "kvm" else "max"),
        "-smp",
        str(smp or l1_smp()),
        "-m",
        f"{memory_mb}M",
        "-nodefaults",
        *ending,
        # A triple fault ends L1 silently under -no-reboot: log resets (to l1-qemu.log).
        "-d",
        "cpu_reset",
        "-display",
        "none",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        append,
        "-chardev",
        f"file,id=con,path={console_log}",
        "-serial",
        "chardev:con",
        "-fsdev",
        "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device",
        "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        "-fsdev",
        f"local,id=results,path={results_dir},security_model=none,multidevs=remap",
        "-device",
        "virtio-9p-pci,fsdev=results,mount_tag=results",
    ]


def precompile(dirs: list[Path]) -> None:
    """Write the bytecode of the Python sources L1 will import, on the host.

    Why: L1 sees the host's files read-only; without ``__pycache__`` next to a source (pip
    writes it for installed packages, an editable checkout has none when
    PYTHONDONTWRITEBYTECODE is set) every L1 run compiles it again under TCG.
    Up-to-date files are skipped, so a warm call costs milliseconds.
    """
    for directory in dirs:
        if directory.is_dir():
            compileall.compile_dir(directory, quiet=2, workers=1)


def run_l1(
    spec: RunSpec,
    *,
    kernel: Path,
    initrd: Path,
    timeout: float,
    echo: TextIO | None = None,
    memory_mb: int = L1_MEMORY_MB,
    accel: str = "tcg",
    accel_options: str = "",
    smp: int | None = None,
) -> int:
    """Boot L1, run ``spec`` inside it, return the command's exit status.

    ``accel``: "tcg" or "kvm" (TestEnv.l1_accel), ``accel_options`` its -accel options;
    ``smp``: L1 vCPUs (TestEnv.l1_smp; default ``l1_smp()``).

    ``echo``: stream the command's console output there while it runs.
    Raises InfraError on a setup failure, a timeout or an L1 that died without a status.
    """
    results = Path(spec.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    precompile([Path(__file__).parent.parent, Path(spec.cwd) / "tests"])
    spec_file = results / "testenv-spec.json"
    spec_file.write_text(json.dumps(spec.to_json(), indent=2) + "\n")
    console = results / "l1-console.log"
    qemu_log = results / "l1-qemu.log"
    nonce = secrets.token_hex(6)
    use_va = "1" if spec.use_va else "0"
    conf = "\n".join([nonce, str(results), sys.executable, str(spec_file), use_va]) + "\n"
    append = (
        # THP stays on: with transparent_hugepage=never the L2 guest's DMA map failed
        # ("failed to write, fd=15, errno=14 (Bad address)", "vhost vdpa map fail!") and
        # the datapath was dead from boot, although khugepaged once wedged L1 (soft lockup).
        "console=ttyS0 panic=-1 quiet mitigations=off "
        # e.g. "loglevel=7" to see where boot time goes
        + l1_overrides().get("append_extra", "")
        + " sgl1="
        + base64.b64encode(conf.encode()).decode()
    )
    smp = smp or l1_smp()
    # The QMP socket is not in the results dir: that is shared into L1, and sun_path holds
    # only 108 bytes.
    with (
        _sigterm_raises(),
        l1_lock("another L1 test VM"),
        tempfile.TemporaryDirectory(prefix="sg-l1-") as monitor_dir,
    ):
        qmp_socket = Path(monitor_dir) / "qmp.sock"
        argv = l1_command(
            kernel, initrd, append, console, results, memory_mb, accel, accel_options, smp,
            qmp_socket,
        )  # fmt: skip
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            status, elapsed, returncode = _boot_once(
                argv, results, nonce, timeout, echo, L1Monitor(qmp_socket)
            )
            if (
                status.started
                or status.exit_status is not None
                or status.setup_failure is not None
                or attempt == BOOT_ATTEMPTS
            ):
                break
            text = console.read_text(errors="replace")
            if not any(sign in text for sign in BOOT_CRASH_SIGNS):
                break
            # Nothing of the command ran: a crash while booting is safe to retry. Seen: an
            # "Oops: int3" in jump-label patching, a multi-threaded TCG cross-modifying-code
            # race in the L1 QEMU (infrastructure, not the QEMU under test).
            kept = results / f"l1-console.boot-crash-{attempt}.log"
            console.rename(kept)
            say(
                STAGE,
                f"L1 kernel crashed while booting ({accel.upper()}); retrying once (log: {kept})",
            )
    if status.setup_failure is not None:
        raise InfraError(
            f"test VM setup failed: {status.setup_failure}", hint=f"console log: {console}"
        )
    if status.exit_status is None:
        tail_text = proc.tail(console.read_text(errors="replace"), CONSOLE_TAIL)
        # The whole tail goes to stderr; the error itself stays one line.
        print(f"[{STAGE}] L1 console tail:\n{tail_text}", file=sys.stderr)
        # A panic's backtrace is longer than the tail shown: look further back for its line.
        reason = console_reason(
            proc.tail(console.read_text(errors="replace"), 300)
        ) or l1_qemu_reason(qemu_log.read_text(errors="replace"), returncode)
        registers = results / L1_REGISTERS
        rips = L1Monitor.rips(registers.read_text()) if registers.exists() else []
        symbols_file = results / L1_KVM_SYMBOLS
        symbols = symbols_file.read_text(errors="replace") if symbols_file.exists() else ""
        named = [" ".join(filter(None, (rip, symbolize(rip, symbols)))) for rip in rips]
        where = f"; vCPU RIPs {', '.join(named)} ({L1_REGISTERS})" if rips else ""
        raise InfraError(
            f"L1 test VM ended after {elapsed:.0f} s without the command's exit status"
            + (f": {reason}" if reason else "")
            + where,
            hint=f"console log: {console}",
        )
    say(STAGE, f"L1 test VM done: exit {status.exit_status} ({elapsed:.1f} s)")
    return status.exit_status


_CRASH_MARKERS = ("Kernel panic", "BUG:", "Oops", "general protection fault", "watchdog:")


def console_reason(tail_text: str) -> str:
    """The console line that says why L1 died (a panic, BUG or Oops), "" when none does.

    >>> console_reason("[ 1.0] x\\n[ 2.0] Kernel panic - not syncing: corrupted stack end\\n")
    'Kernel panic - not syncing: corrupted stack end'
    """
    for line in tail_text.splitlines():
        for marker in _CRASH_MARKERS:
            if marker in line:
                return line[line.index(marker) :].strip()[:200]
    return ""


def l1_qemu_reason(qemu_log: str, returncode: int | None) -> str:
    """Why the L1 QEMU ended, from its own log (``-d cpu_reset``) and exit status.

    >>> l1_qemu_reason("CPU Reset (CPU 0)\\nTriple fault\\nCPU Reset (CPU 0)\\n", 0)
    'L1 triple fault (L1 QEMU exit 0)'
    >>> l1_qemu_reason("", -11)
    'L1 QEMU killed by SIGSEGV'
    """
    if returncode is not None and returncode < 0:
        try:
            return f"L1 QEMU killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"L1 QEMU killed by signal {-returncode}"
    errors = [line.strip() for line in qemu_log.splitlines() if line.startswith("qemu-system")]
    what = "L1 triple fault" if "Triple fault" in qemu_log else errors[-1] if errors else ""
    if what or returncode is not None:
        return f"{what or 'L1 guest reset or powered off'} (L1 QEMU exit {returncode})"
    return ""


class Terminated(InfraError):
    """SIGTERM arrived while L1 ran (it was killed; results so far are kept)."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception so every `finally` reaps L1 (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated("terminated (SIGTERM): the L1 test VM was killed")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _boot_once(
    argv: list[str],
    results: Path,
    nonce: str,
    timeout: float,
    echo: TextIO | None,
    monitor: L1Monitor | None = None,
) -> tuple[ConsoleStatus, float, int | None]:
    """One L1 boot and run; writes l1-timing.json (and l1-registers.txt when L1 ended
    without the command's exit status); returns the console status, wall time and the L1
    QEMU's exit status."""
    console = results / "l1-console.log"
    results.mkdir(parents=True, exist_ok=True)
    console.write_text("")
    # A heartbeat left by an earlier boot in this directory would look like a stopped L1.
    (results / L1_HEARTBEAT).unlink(missing_ok=True)
    (results / L1_REGISTERS).unlink(missing_ok=True)
    if monitor is not None:
        monitor.path.unlink(missing_ok=True)  # an earlier boot's socket
    say(STAGE, f"boot L1 test VM (console: {console})")
    started = time.monotonic()
    with open(results / "l1-qemu.log", "w") as log:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timing: dict[str, float] = {}
        try:
            status = _supervise(child, console, nonce, timeout, echo, timing, monitor)
        finally:
            if monitor is not None:
                monitor.close()
            proc.kill_group(child)
            child.wait()
    elapsed = time.monotonic() - started
    timing["total_s"] = round(elapsed, 2)
    timing["l1_qemu_exit"] = child.returncode
    if "-smp" in argv:
        timing["smp"] = int(argv[argv.index("-smp") + 1])  # the L1 vCPUs this boot had
    if status.start_uptime is not None:
        timing["guest_uptime_at_command_s"] = status.start_uptime
    (results / "l1-timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    return status, elapsed, child.returncode


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of ``pid`` in MiB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class ProgressWatch:
    """How long nothing under ``root`` changed (newest mtime), checked every few seconds.

    ``ignore``: shell patterns (fnmatch) of file names that do not count as progress:
    consoles. A wedged L1 kernel keeps printing to its console, and an L2 guest whose test
    hangs keeps printing (e.g. virtio_net TX timeouts) to its own: progress is what the
    tests and Avocado write, not what a guest prints.
    """

    def __init__(self, root: Path, ignore: tuple[str, ...] = ()) -> None:
        self.root = root
        self.ignore = ignore
        self.newest = 0.0
        self.last_path = ""
        self.last_change = time.monotonic()
        self._checked = 0.0

    def idle_for(self) -> float:
        now = time.monotonic()
        if now - self._checked >= _IDLE_CHECK_EVERY:
            self._checked = now
            newest, path = self._scan()
            if newest > self.newest:
                self.newest, self.last_path, self.last_change = newest, path, now
        return now - self.last_change

    def _scan(self) -> tuple[float, str]:
        newest, path = 0.0, ""
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if any(fnmatch.fnmatchcase(name, pat) for pat in self.ignore):
                    continue
                try:
                    mtime = os.stat(os.path.join(dirpath, name)).st_mtime
                except OSError:
                    continue
                if mtime > newest:
                    newest, path = mtime, os.path.join(dirpath, name)
        return newest, os.path.relpath(path, self.root) if path else ""


def heartbeat_age(path: Path, now: float | None = None) -> float | None:
    """Seconds since the L1 init last wrote its heartbeat file (host clock: the 9p server
    sets the mtime), or None before the first beat.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     os.utime(f.name, (100.0, 100.0))
    ...     heartbeat_age(Path(f.name), now=130.0)
    30.0
    >>> heartbeat_age(Path("/nonexistent/l1-heartbeat")) is None
    True
    """
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return (time.time() if now is None else now) - mtime


def _killed(child: subprocess.Popen[bytes], why: str, console: Path) -> InfraError:
    """Kill the L1 QEMU (its whole group) and say why, pointing at its console."""
    proc.kill_group(child)
    return InfraError(why, hint=f"console log: {console}")


def _wait_for_poweroff(
    child: subprocess.Popen[bytes], monitor: L1Monitor | None, patience: float
) -> None:
    """Let the L1 QEMU end: it exits by itself under -no-reboot; with a monitor it pauses
    once the guest is off (within ``patience`` s), and is asked to quit."""
    deadline = time.monotonic() + patience
    while monitor is not None and time.monotonic() < deadline and child.poll() is None:
        if monitor.ended(now=True):
            break
        time.sleep(0.1)
    if monitor is not None:
        monitor.quit()
    try:
        child.wait(timeout=5 if monitor is not None else patience)
    except subprocess.TimeoutExpired:
        pass


def _supervise(
    child: subprocess.Popen[bytes],
    console: Path,
    nonce: str,
    timeout: float,
    echo: TextIO | None,
    timing: dict[str, float],
    monitor: L1Monitor | None = None,
) -> ConsoleStatus:
    started = time.monotonic()
    deadline = started + timeout
    watcher = ConsoleWatcher(nonce, echo)
    progress = ProgressWatch(console.parent, ignore=NOT_PROGRESS_FILES)
    stall_seen: float | None = None  # when the console's RCU stall report was first read
    with open(console, errors="replace") as reader:
        while True:
            done = child.poll() is not None
            rss = peak_rss_mb(child.pid) if not done else None
            if rss is not None:
                timing["l1_peak_rss_mb"] = round(rss, 1)
            status = watcher.feed(reader.read())
            if status.started and "boot_to_command_s" not in timing:
                timing["boot_to_command_s"] = round(time.monotonic() - started, 2)
            if done or status.exit_status is not None:
                # After SGL1-EXIT the guest only powers off: give it a moment, then move on.
                if not done:
                    _wait_for_poweroff(child, monitor, L1_POWEROFF_PATIENCE)
                return watcher.feed(reader.read() + "\n")
            if monitor is not None and monitor.ended():
                # Shut down or reset without the command's exit status: a triple fault or
                # a panic. Keep every vCPU's state, then let QEMU go.
                status = watcher.feed(reader.read())
                if status.exit_status is None:
                    (console.parent / L1_REGISTERS).write_text(monitor.registers())
                _wait_for_poweroff(child, monitor, 0.0)
                return watcher.feed(reader.read() + "\n")
            if time.monotonic() > deadline:
                raise _killed(
                    child,
                    f"L1 test VM timed out after {timeout:.0f} s and was killed; console tail:\n"
                    + watcher.tail(),
                    console,
                )
            if status.wedged:
                raise _killed(
                    child,
                    f"L1 test VM wedged, killed after {time.monotonic() - started:.0f} s: "
                    f"{status.wedged}",
                    console,
                )
            beat_age = heartbeat_age(console.parent / L1_HEARTBEAT)
            if status.started and beat_age is not None and beat_age > L1_BEAT_TIMEOUT:
                raise _killed(
                    child,
                    f"L1 test VM stopped: its heartbeat is {beat_age:.0f} s old (written every "
                    f"10 s); killed after {time.monotonic() - started:.0f} s",
                    console,
                )
            idle = progress.idle_for()
            if status.rcu_stall and stall_seen is None:
                stall_seen = time.monotonic()
            # Silent since the stall report, not merely before it.
            silent = min(idle, time.monotonic() - stall_seen) if stall_seen else 0.0
            if silent > L1_STALL_SILENCE_S:
                raise _killed(
                    child,
                    f"L1 test VM wedged: {status.rcu_stall!r}, then nothing written for "
                    f"{silent:.0f} s; killed after {time.monotonic() - started:.0f} s",
                    console,
                )
            if idle > L1_IDLE_TIMEOUT:
                raise _killed(
                    child,
                    f"L1 test VM hung: nothing written for {idle:.0f} s (results files: "
                    f"last {progress.last_path}); killed after {time.monotonic() - started:.0f} s",
                    console,
                )
            time.sleep(0.05)
