"""The L1 test VM's accelerator: KVM where the host's KVM boots the L1 kernel, else TCG.

``choose_l1_accel(kernel, dev_kvm) -> L1Accel`` decides, once per host:

- ``$SERIESGATE_L1_ACCEL``: ``auto`` (default), ``kvm`` or ``tcg`` (forced, no probe). A value
  with options (``tcg,thread=single,tb-size=256``) forces that accelerator with those options.
- auto: no usable /dev/kvm -> TCG. Otherwise the probe boots the L1 kernel with ``-accel kvm
  -cpu host`` (no initrd) until its first console line, under a hard timeout
  (``PROBE_TIMEOUT_S``); a KVM internal error on QEMU's stderr ends it at once (QEMU itself
  would sit paused). The probe's console and stderr are kept in
  ``cache_dir()/testenv/l1-accel/<key>.json``, keyed by the host kernel (``uname -r``,
  /proc/version, the loaded kvm modules), the L1 kernel's sha256 and the L1 QEMU's version:
  a later run on the same host reuses it (a timed-out probe only for ``TIMEOUT_REUSE_S``).
- ``decide(console, stderr, ...)`` is the pure decision on that captured text.

With KVM for L1, nested KVM for L2 needs the host to allow nesting (kvm_intel/kvm_amd
``nested`` parameter); inside L1 the init loads kvm_intel or kvm_amd, whichever the CPU
offers. Under TCG, ``-cpu max`` offers svm and L1 loads kvm_amd (as before).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seriesgate import proc
from seriesgate.errors import InfraError
from seriesgate.progress import say
from seriesgate.testenv import assets, l1qemu
from seriesgate.testenv.assets import STAGE, l1_lock

ACCEL_ENV = "SERIESGATE_L1_ACCEL"
SETTINGS = ("auto", "kvm", "tcg")
# TCG options. Tried: "tcg,thread=single,tb-size=256" (no cross-vCPU races in TCG): an L2
# guest with nested KVM then printed nothing in 4 min (15 s with thread=multi): not usable.
TCG_OPTIONS = "tcg,thread=multi,tb-size=256"
PROBE_VERSION = 1  # bump when the probe's command or its reading changes
PROBE_TIMEOUT_S = 10.0  # a real KVM prints the first console line in well under a second
TIMEOUT_REUSE_S = 24 * 3600.0  # a probe that only timed out is tried again after this
_POLL_S = 0.02
_KEEP_CHARS = 20_000  # of each captured stream, in the cache record
_KVM_ERROR = "KVM internal error"


@dataclass(frozen=True)
class L1Accel:
    """The accelerator L1 runs on, why, and whether L2 can have KVM inside it."""

    accel: str  # "kvm" or "tcg"
    reason: str  # one line, for the report
    l1_kvm: bool  # nested KVM inside L1 expected (TCG: -cpu max offers svm)
    options: str = ""  # the -accel option string ("" = the default for ``accel``)
    probe_file: Path | None = None  # the cached probe record this decision read
    probe_s: float | None = None  # how long that probe took


@dataclass(frozen=True)
class ProbeRecord:
    """One probe: what it booted and what came out (the cache entry)."""

    key: dict[str, str]
    command: list[str]
    console: str
    stderr: str
    returncode: int | None  # None: still running when the probe ended it
    elapsed_s: float
    timed_out: bool
    probed_at: float  # time.time()

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "command": self.command,
            "console": self.console,
            "stderr": self.stderr,
            "returncode": self.returncode,
            "elapsed_s": self.elapsed_s,
            "timed_out": self.timed_out,
            "probed_at": self.probed_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProbeRecord:
        rc = data.get("returncode")
        return cls(
            key={str(k): str(v) for k, v in dict(data["key"]).items()},
            command=[str(a) for a in data["command"]],
            console=str(data["console"]),
            stderr=str(data["stderr"]),
            returncode=None if rc is None else int(rc),
            elapsed_s=float(data["elapsed_s"]),
            timed_out=bool(data["timed_out"]),
            probed_at=float(data["probed_at"]),
        )

    @classmethod
    def load(cls, path: Path) -> ProbeRecord:
        return cls.from_json(json.loads(path.read_text()))


# -- the pure parts ------------------------------------------------------------------------


def parse_setting(value: str | None) -> tuple[str, str]:
    """``$SERIESGATE_L1_ACCEL`` -> (setting, options): auto/kvm/tcg, and -accel options.

    >>> parse_setting(None)
    ('auto', '')
    >>> parse_setting("KVM")
    ('kvm', '')
    >>> parse_setting("tcg,thread=single,tb-size=256")
    ('tcg', 'tcg,thread=single,tb-size=256')
    """
    text = (value or "").strip()
    if not text:
        return "auto", ""
    name = text.split(",", 1)[0].lower()
    if name not in SETTINGS or (name == "auto" and "," in text):
        raise InfraError(
            f"${ACCEL_ENV}={text!r}: expected auto, kvm or tcg (optionally with -accel "
            "options, e.g. tcg,thread=multi)"
        )
    return name, text if "," in text else ""


def first_console_line(console: str) -> str:
    """The first complete, non-blank console line ("" when none arrived).

    >>> first_console_line("\\n[    0.000000] Linux version 6.12\\n[    0.0")
    '[    0.000000] Linux version 6.12'
    >>> first_console_line("[    0.0")
    ''
    """
    for line in console.split("\n")[:-1]:
        if line.strip():
            return line.strip("\r")
    return ""


_CODE = re.compile(r"^Code=.*?<([0-9a-f]{2})>((?: [0-9a-f]{2}){0,4})", re.MULTILINE)
_RIP = re.compile(r"\bRIP=([0-9a-f]+)")
_SUBERROR = re.compile(r"KVM internal error\. Suberror: (\d+)")


def kvm_failure(stderr: str) -> str:
    """What QEMU's stderr says went wrong with KVM, in one line ("" when nothing did).

    >>> kvm_failure("qemu-system-x86_64: failed to initialize kvm: Permission denied\\n")
    'qemu-system-x86_64: failed to initialize kvm: Permission denied'
    """
    suberror = _SUBERROR.search(stderr)
    if suberror:
        words = [f"KVM internal error (suberror {suberror.group(1)}"]
        if "emulation failure" in stderr:
            words.append(", emulation failure")
        rip = _RIP.search(stderr)
        if rip:
            words.append(f" at RIP 0x{int(rip.group(1), 16):x}")
        code = _CODE.search(stderr)
        if code:
            words.append(f", instruction bytes {code.group(1)}{code.group(2)}")
        return "".join(words) + ")"
    for line in stderr.splitlines():
        if line.startswith("qemu-system") or _KVM_ERROR in line:
            return line.strip()[:200]
    return ""


def decide(console: str, stderr: str, *, elapsed_s: float, timed_out: bool) -> tuple[str, str]:
    """The accelerator for L1 from a KVM probe's captured console and stderr: (accel, why).

    KVM only when the kernel printed its first console line and KVM reported no error.
    """
    failure = kvm_failure(stderr)
    line = first_console_line(console)
    if line and not failure:
        return "kvm", (
            f"host KVM booted the L1 kernel to its first console line in {elapsed_s:.2f} s "
            f"({line.strip()[:60]!r})"
        )
    if failure:
        why = f"{failure} after {elapsed_s:.2f} s, before any console line"
        if line:
            why = f"{failure} after {elapsed_s:.2f} s"
    elif timed_out:
        why = f"no console line within {elapsed_s:.0f} s"
    else:
        why = f"QEMU ended after {elapsed_s:.2f} s before any console line"
    return "tcg", f"host KVM cannot boot the L1 kernel ({why}): L1 on TCG"


def nesting(sysfs_module: Path = Path("/sys/module")) -> tuple[bool, str]:
    """Whether the host's KVM lets L1 run KVM itself (kvm_intel/kvm_amd ``nested``)."""
    for module in ("kvm_intel", "kvm_amd"):
        param = sysfs_module / module / "parameters" / "nested"
        try:
            value = param.read_text().strip()
        except OSError:
            continue
        if value in ("Y", "y", "1"):
            return True, f"{module} nested={value}: nested KVM for L2"
        return False, f"{module} nested={value}: no nested KVM, L2 on TCG"
    others = sorted(p.name for p in sysfs_module.glob("kvm*")) if sysfs_module.is_dir() else []
    loaded = f" (loaded: {', '.join(others)})" if others else ""
    return False, f"no kvm_intel/kvm_amd on the host{loaded}: no nested KVM, L2 on TCG"


def accel_option(accel: str, options: str = "") -> str:
    """The ``-accel`` value for ``accel`` (``options`` when given, e.g. from the env)."""
    if options:
        return options
    return TCG_OPTIONS if accel == "tcg" else "kvm"


# -- the probe -----------------------------------------------------------------------------


def probe_key(kernel: Path, qemu: str | None = None) -> dict[str, str]:
    """What the probe's answer depends on: host kernel and KVM, L1 kernel, L1 QEMU."""
    qemu = qemu or l1qemu.resolve()
    sysfs = Path("/sys/module")
    kvm_modules = sorted(p.name for p in sysfs.glob("kvm*")) if sysfs.is_dir() else []
    try:
        version = proc.run([qemu, "--version"], timeout=20).stdout.splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise InfraError(f"cannot run {qemu} --version: {exc}") from None
    digest = hashlib.sha256()
    with open(kernel, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {
        "probe_version": str(PROBE_VERSION),
        "uname_r": os.uname().release,
        "proc_version": Path("/proc/version").read_text().strip(),
        "kvm_modules": ",".join(kvm_modules),
        "l1_kernel_sha256": digest.hexdigest(),
        "l1_qemu": version,
    }


def cache_file(key: dict[str, str]) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return assets.testenv_cache() / "l1-accel" / f"{name}.json"


def probe_command(kernel: Path, console_log: Path, qemu: str | None = None) -> list[str]:
    """Boot the L1 kernel alone on KVM with the host's CPU; console to ``console_log``."""
    return [
        *l1qemu.command_prefix(qemu),
        "-name",
        "seriesgate-l1-kvm-probe",
        "-machine",
        "q35",
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-smp",
        "2",
        "-m",
        "1024M",
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
        "-kernel",
        str(kernel),
        "-append",
        "console=ttyS0 panic=-1",
        "-chardev",
        f"file,id=con,path={console_log}",
        "-serial",
        "chardev:con",
    ]


def run_probe(
    kernel: Path, *, timeout: float = PROBE_TIMEOUT_S, argv: list[str] | None = None
) -> ProbeRecord:
    """Boot ``kernel`` under ``-accel kvm -cpu host`` until its first console line, a KVM
    error, QEMU's exit or ``timeout``; QEMU is killed then. ``argv``: another command with
    the same console file (``{console}`` is replaced), e.g. to capture a TCG boot."""
    key = probe_key(kernel)
    with tempfile.TemporaryDirectory(prefix="sg-l1-probe-") as tmp:
        console_log = Path(tmp) / "console.log"
        console_log.write_text("")
        command = (
            [a.replace("{console}", str(console_log)) for a in argv]
            if argv
            else probe_command(kernel, console_log)
        )
        with open(Path(tmp) / "stderr.log", "w+b") as err:
            started = time.monotonic()
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
            timed_out = False
            try:
                timed_out = _watch(child, console_log, Path(err.name), started + timeout)
            finally:
                returncode = child.poll()
                proc.kill_group(child)
                child.wait()
            elapsed = time.monotonic() - started
        console = console_log.read_text(errors="replace")
        stderr = (Path(tmp) / "stderr.log").read_text(errors="replace")
    return ProbeRecord(
        key=key,
        command=command,
        console=console[:_KEEP_CHARS],
        stderr=stderr[:_KEEP_CHARS],
        returncode=returncode,
        elapsed_s=round(elapsed, 3),
        timed_out=timed_out,
        probed_at=time.time(),
    )


def _watch(child: subprocess.Popen[bytes], console: Path, stderr: Path, deadline: float) -> bool:
    """Wait for the probe's end; True when it timed out."""
    while True:
        if first_console_line(console.read_text(errors="replace")):
            return False
        if _KVM_ERROR in stderr.read_text(errors="replace"):
            # QEMU pauses the VM after the register dump: let the dump finish, then stop.
            size, settle = -1, time.monotonic() + 0.5
            while size != stderr.stat().st_size and time.monotonic() < settle:
                size = stderr.stat().st_size
                time.sleep(0.05)
            return False
        if child.poll() is not None:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(_POLL_S)


def cached_probe(kernel: Path) -> tuple[ProbeRecord, Path, bool]:
    """The probe for this host and L1 kernel: (record, its file, reused from the cache)."""
    key = probe_key(kernel)
    path = cache_file(key)
    found = _reusable(path, key)
    if found is not None:
        return found, path, True
    with l1_lock("another L1 test VM before probing KVM for L1"):
        found = _reusable(path, key)  # probed meanwhile by someone else
        if found is not None:
            return found, path, True
        record = run_probe(kernel)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(record.to_json(), indent=2) + "\n")
    tmp.replace(path)
    return record, path, False


def _reusable(path: Path, key: dict[str, str]) -> ProbeRecord | None:
    try:
        record = ProbeRecord.load(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record.key != key:
        return None
    if record.timed_out and time.time() - record.probed_at > TIMEOUT_REUSE_S:
        return None
    return record


# -- the choice ----------------------------------------------------------------------------


def choose_l1_accel(kernel: Path, dev_kvm: str) -> L1Accel:
    """KVM or TCG for L1 (``dev_kvm``: check.HostProbe.kvm, "usable" when /dev/kvm opens)."""
    setting, options = parse_setting(os.environ.get(ACCEL_ENV))
    nested, nested_why = nesting()
    forced = f"${ACCEL_ENV}={os.environ.get(ACCEL_ENV, '').strip()}"
    if setting == "tcg":
        return L1Accel("tcg", f"forced by {forced}", True, options)
    if setting == "kvm":
        return L1Accel("kvm", f"forced by {forced}; {nested_why}", nested, options)
    if dev_kvm != "usable":
        return L1Accel("tcg", f"/dev/kvm on the host: {dev_kvm}: L1 on TCG", True)
    record, path, reused = cached_probe(kernel)
    accel, why = decide(
        record.console, record.stderr, elapsed_s=record.elapsed_s, timed_out=record.timed_out
    )
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.probed_at))
    source = f"probe of {when}, cached" if reused else "probed now"
    if accel == "kvm":
        return L1Accel("kvm", f"{why}; {nested_why} ({source})", nested, "", path, record.elapsed_s)
    say(STAGE, f"L1 on TCG: {why} ({source}: {path})")
    return L1Accel("tcg", f"{why} ({source})", True, "", path, record.elapsed_s)
