"""Which QEMU runs the L1 test VM (infrastructure, not the QEMU under test).

Two are installed by ci/setup-host.sh:

- ``system``: Debian 12's qemu-system-x86_64 (7.2) on the PATH;
- ``backports``: bookworm-backports' QEMU (10.0.x), unpacked (not installed, so the
  system's 7.2 stays) under ``cache_dir()/l1-qemu/bookworm-backports``; its own
  ``usr/share/qemu`` (option ROMs such as linuxboot_dma.bin) and the backports SeaBIOS are
  passed with ``-L`` ahead of the binary's built-in firmware path (the system's 7.2 data).

``$SERIESGATE_L1_QEMU`` picks one: ``system``, ``backports`` or a path to a
qemu-system-x86_64. The default (``DEFAULT``) was chosen by ``ci/bench_l1.py``
(docs/findings.md §5).
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from seriesgate import proc
from seriesgate.errors import InfraError
from seriesgate.paths import cache_dir

ENV = "SERIESGATE_L1_QEMU"
SYSTEM = "qemu-system-x86_64"
CHOICES = ("system", "backports")
# Chosen by measurement (ci/bench_l1.py, docs/findings.md §5): on 2026-12-07, 14 interleaved
# migration-group boots each, the 10.0.2 L1 died 4 times (triple faults at 34-47 s), 7.2 never.
DEFAULT = "system"


def backports_root() -> Path:
    """Where ci/setup-host.sh unpacks bookworm-backports' QEMU packages."""
    return cache_dir() / "l1-qemu" / "bookworm-backports"


def resolve(choice: str | None = None) -> str:
    """The L1 QEMU binary for ``choice`` (default: ``$SERIESGATE_L1_QEMU``, else DEFAULT)."""
    value = (choice if choice is not None else os.environ.get(ENV, "")).strip() or DEFAULT
    if value == "system":
        return SYSTEM
    if value == "backports":
        binary = backports_root() / "usr" / "bin" / "qemu-system-x86_64"
        if not binary.is_file():
            raise InfraError(
                f"the bookworm-backports L1 QEMU is not unpacked ({binary} missing)",
                hint="run `make setup` (ci/setup-host.sh)",
            )
        return str(binary)
    if "/" in value:
        return value
    raise InfraError(f"${ENV}={value!r}: expected one of {', '.join(CHOICES)} or a path")


def data_dirs(binary: str) -> list[str]:
    """``-L`` directories for an unpacked QEMU at ``<root>/usr/bin/``: its own data dir and
    an unpacked SeaBIOS, when present (none for a QEMU on the PATH).

    >>> data_dirs("qemu-system-x86_64")
    []
    """
    if "/" not in binary:
        return []
    root = Path(binary).resolve().parent.parent  # <root>/usr
    return [str(d) for d in (root / "share" / "qemu", root / "share" / "seabios") if d.is_dir()]


def command_prefix(binary: str | None = None) -> list[str]:
    """The binary and its ``-L`` options: the start of an L1 command line."""
    binary = binary or resolve()
    prefix = [binary]
    for directory in data_dirs(binary):
        prefix += ["-L", directory]
    return prefix


@functools.lru_cache(maxsize=8)
def _version_of(binary: str) -> str:
    path = binary if "/" in binary else shutil.which(binary) or binary
    try:
        first = proc.run([path, "--version"], timeout=20).stdout.splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise InfraError(f"cannot run {binary} --version: {exc}") from None
    return first.removeprefix("QEMU emulator version ")


def version(binary: str | None = None) -> str:
    """``10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)``: the L1 QEMU's version line."""
    return _version_of(binary or resolve())
