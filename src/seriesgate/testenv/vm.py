"""The L1 test VM: boot our kernel + initramfs on the host's root, run one command, power off.

Debian's qemu-system-x86_64 (7.2, from ci/setup-host.sh) runs L1: it is infrastructure, not
the QEMU under test. One L1 at a time (a lock in the cache). The console goes to
``results_dir/l1-console.log``; the exit status comes back as ``SGL1-EXIT <nonce> <status>``
on it. A hard timeout kills the whole process group and reports the console tail.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from seriesgate import proc
from seriesgate.errors import InfraError
from seriesgate.progress import say
from seriesgate.testenv.assets import STAGE, l1_lock
from seriesgate.testenv.inside import SETUP_FAILED, RunSpec

L1_QEMU = "qemu-system-x86_64"
L1_MEMORY_MB = 1024
L1_SMP = 2
# -cpu max under TCG offers svm (nested KVM for L2). $SERIESGATE_L1_CPU overrides it, e.g.
# "max,-svm" to see the TCG fallback.
L1_CPU_ENV = "SERIESGATE_L1_CPU"
CONSOLE_TAIL = 25


@dataclass(frozen=True)
class ConsoleStatus:
    """What the L1 console says so far."""

    started: bool  # SGL1-START seen: the command is about to run
    exit_status: int | None  # from SGL1-EXIT
    setup_failure: str | None  # the SGL1-SETUP-FAILED reason, if any
    start_uptime: float | None  # L1 uptime (s) when the command started


def parse_console(text: str, nonce: str) -> ConsoleStatus:
    """Find this run's markers in the L1 console text (other nonces are ignored)."""
    started = False
    status: int | None = None
    failure: str | None = None
    uptime: float | None = None
    for line in text.splitlines():
        line = line.strip("\r")
        words = line.split()
        if len(words) >= 2 and words[0] == "SGL1-START" and words[1] == nonce:
            started = True
            if len(words) >= 3:
                try:
                    uptime = float(words[2])
                except ValueError:
                    pass
        elif len(words) == 3 and words[0] == "SGL1-EXIT" and words[1] == nonce:
            try:
                status = int(words[2])
            except ValueError:
                pass
        elif line.startswith(SETUP_FAILED) and failure is None:
            failure = line[len(SETUP_FAILED) :].strip()
        elif line.startswith("sg-l1: FAILED:") and failure is None:
            failure = line[len("sg-l1: FAILED:") :].strip()
    return ConsoleStatus(started, status, failure, uptime)


def l1_command(
    kernel: Path,
    initrd: Path,
    append: str,
    console_log: Path,
    results_dir: Path,
    memory_mb: int = L1_MEMORY_MB,
) -> list[str]:
    """The L1 QEMU command line (TCG, nested svm via -cpu max, 9p host root + results)."""
    return [
        L1_QEMU,
        "-name",
        "seriesgate-l1",
        "-machine",
        "q35",
        "-accel",
        "tcg,thread=multi,tb-size=256",
        "-cpu",
        os.environ.get(L1_CPU_ENV, "max"),
        "-smp",
        str(L1_SMP),
        "-m",
        f"{memory_mb}M",
        "-nodefaults",
        "-no-reboot",
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


def run_l1(
    spec: RunSpec,
    *,
    kernel: Path,
    initrd: Path,
    timeout: float,
    echo: TextIO | None = None,
    memory_mb: int = L1_MEMORY_MB,
) -> int:
    """Boot L1, run ``spec`` inside it, return the command's exit status.

    ``echo``: stream the command's console output there while it runs.
    Raises InfraError on a setup failure, a timeout or an L1 that died without a status.
    """
    results = Path(spec.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    spec_file = results / "testenv-spec.json"
    spec_file.write_text(json.dumps(spec.to_json(), indent=2) + "\n")
    console = results / "l1-console.log"
    qemu_log = results / "l1-qemu.log"
    nonce = secrets.token_hex(6)
    use_va = "1" if spec.use_va else "0"
    conf = "\n".join([nonce, str(results), sys.executable, str(spec_file), use_va]) + "\n"
    append = (
        "console=ttyS0 panic=-1 quiet mitigations=off sgl1="
        + base64.b64encode(conf.encode()).decode()
    )
    argv = l1_command(kernel, initrd, append, console, results, memory_mb)
    with l1_lock("another L1 test VM"):
        results.mkdir(parents=True, exist_ok=True)
        console.write_text("")
        say(STAGE, f"boot L1 test VM (console: {console})")
        started = time.monotonic()
        with open(qemu_log, "w") as log:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            timing: dict[str, float] = {}
            try:
                status = _supervise(child, console, nonce, timeout, echo, timing)
            finally:
                proc.kill_group(child)
                child.wait()
        elapsed = time.monotonic() - started
        timing["total_s"] = round(elapsed, 2)
        if status.start_uptime is not None:
            timing["guest_uptime_at_command_s"] = status.start_uptime
        (results / "l1-timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    if status.setup_failure is not None:
        raise InfraError(
            f"test VM setup failed: {status.setup_failure}", hint=f"console log: {console}"
        )
    if status.exit_status is None:
        qemu_out = proc.tail(qemu_log.read_text(errors="replace"), 5)
        raise InfraError(
            f"L1 test VM ended after {elapsed:.0f} s without the command's exit status; "
            f"console tail:\n{proc.tail(console.read_text(errors='replace'), CONSOLE_TAIL)}"
            + (f"\nqemu: {qemu_out}" if qemu_out else ""),
            hint=f"console log: {console}",
        )
    say(STAGE, f"L1 test VM done: exit {status.exit_status} ({elapsed:.1f} s)")
    return status.exit_status


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of ``pid`` in MiB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _supervise(
    child: subprocess.Popen[bytes],
    console: Path,
    nonce: str,
    timeout: float,
    echo: TextIO | None,
    timing: dict[str, float],
) -> ConsoleStatus:
    started = time.monotonic()
    deadline = started + timeout
    echoed = 0
    text = ""
    while True:
        done = child.poll() is not None
        rss = peak_rss_mb(child.pid) if not done else None
        if rss is not None:
            timing["l1_peak_rss_mb"] = round(rss, 1)
        text = console.read_text(errors="replace")
        status = parse_console(text, nonce)
        if status.started and "boot_to_command_s" not in timing:
            timing["boot_to_command_s"] = round(time.monotonic() - started, 2)
        if echo is not None and status.started:
            echoed = _echo(text, nonce, echoed, echo)
        if done or status.exit_status is not None:
            # After SGL1-EXIT the guest only powers off: give it a moment, then move on.
            if not done:
                try:
                    child.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            return status
        if time.monotonic() > deadline:
            proc.kill_group(child)
            raise InfraError(
                f"L1 test VM timed out after {timeout:.0f} s and was killed; console tail:\n"
                + proc.tail(text, CONSOLE_TAIL),
                hint=f"console log: {console}",
            )
        time.sleep(0.05)


def _echo(text: str, nonce: str, done_lines: int, out: TextIO) -> int:
    """Write the console lines after SGL1-START not yet echoed; return how many are done."""
    lines = text.split("\n")
    complete = lines[:-1]  # the last piece may be a partial line
    start = next(
        (i + 1 for i, ln in enumerate(complete) if ln.startswith(f"SGL1-START {nonce}")), None
    )
    if start is None:
        return done_lines
    first = max(start, done_lines)
    for line in complete[first:]:
        if line.startswith(f"SGL1-EXIT {nonce}"):
            break
        out.write(line.rstrip("\r") + "\n")
    out.flush()
    return len(complete)
