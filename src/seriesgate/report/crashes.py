"""Crashes grouped by signature: one block per way the QEMU under test died (pure logic).

A crash (``summary["crashes"]``: build, test, signal, gdb frames, crash record path) is reduced
to its *signature*: the signal and the top frames of the backtrace as ``function file:line``
(no addresses, no arguments, no ``??`` frames, no ``<signal handler called>``). Tests that
died the same way share one group, which keeps one backtrace and the list of tests it hit;
the full gdb output stays in each test's directory (``<vm>.gdb.txt`` beside the crash record).

The group also says where the series comes in: ``culprit`` is the first frame in a file the
series changes (else the top frame), and ``first_bad_patch`` the bisect's answer for any of
its tests ("10/10").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath
from typing import Any

SIGNATURE_DEPTH = 3  # frames that make two crashes "the same" (bisect.crash_signature: 3)
BACKTRACE_FRAMES = 12  # frames kept in a group's backtrace

_FRAME = re.compile(r"^#(\d+)\s+(?:0x[0-9a-fA-F]+ in )?(.+?)\s*$")
_AT = re.compile(r"\s+at\s+(\S+):(\d+)\s*$")
_FROM = re.compile(r"\s+from\s+(\S+)\s*$")
_FUNC = re.compile(r"^([^\s(]+)")


def clean_path(path: str) -> str:
    """A source path as the report shows it: relative to the QEMU tree, never the machine's.

    >>> clean_path("../hw/net/virtio-net.c")
    'hw/net/virtio-net.c'
    >>> clean_path("/root/.cache/seriesgate/trees/qemu-10.0.13/build/../hw/net/virtio-net.c")
    'hw/net/virtio-net.c'
    >>> clean_path("/lib/x86_64-linux-gnu/libc.so.6")
    'libc.so.6'
    """
    parts = [p for p in PurePosixPath(path).parts if p not in ("/", ".")]
    if ".." in parts:
        parts = parts[len(parts) - parts[::-1].index("..") :]
    elif path.startswith("/"):
        parts = parts[-1:]
    return "/".join(parts)


def clean_frame(line: str) -> str | None:
    """One gdb frame as ``function file:line`` (None: not a frame, ``??`` or the signal banner).

    >>> clean_frame("#0  0x000055c4c29a20ba in qemu_get_subqueue (nic=0x0) at ../net/net.c:355")
    'qemu_get_subqueue net/net.c:355'
    >>> clean_frame("#2  qemu_loadvm_state (f=0x55c4ff04e000) at ../migration/savevm.c:3083")
    'qemu_loadvm_state migration/savevm.c:3083'
    >>> clean_frame("#5  0x00007f2b in __libc_start_main () from /lib/x86_64-linux-gnu/libc.so.6")
    '__libc_start_main (libc.so.6)'
    >>> clean_frame("#3  0x00007f2b3c in ?? ()") is None
    True
    >>> clean_frame("#1  <signal handler called>") is None
    True
    """
    m = _FRAME.match(line.strip())
    if not m:
        return None
    rest = m.group(2)
    if rest.startswith("<"):
        return None
    fn = _FUNC.match(rest)
    if fn is None or fn.group(1) == "??":
        return None
    where = ""
    if at := _AT.search(rest):
        where = f" {clean_path(at.group(1))}:{at.group(2)}"
    elif lib := _FROM.search(rest):
        where = f" ({clean_path(lib.group(1))})"
    return fn.group(1) + where


def clean_frames(frames: Iterable[str]) -> list[str]:
    return [f for f in (clean_frame(ln) for ln in frames) if f is not None]


def signature(crash: dict[str, Any]) -> tuple[str, ...]:
    """The signal and the top :data:`SIGNATURE_DEPTH` clean frames of a crash."""
    return (
        str(crash.get("signal") or "?"),
        *clean_frames(crash.get("frames") or ())[:SIGNATURE_DEPTH],
    )


def _function(frame: str) -> str:
    return frame.split(" ", 1)[0]


def _file(frame: str) -> str | None:
    parts = frame.split(" ", 1)
    if len(parts) < 2 or parts[1].startswith("("):
        return None
    return parts[1].rsplit(":", 1)[0]


def culprit(frames: Sequence[str], series_files: Iterable[str]) -> str | None:
    """The function a crash is told by: the first frame in a file the series changes, else
    the top frame (None without frames).

    >>> culprit(["qemu_get_subqueue net/net.c:355", "virtio_net_load_setup "
    ...          "hw/net/virtio-net.c:3890"], ["hw/net/virtio-net.c"])
    'virtio_net_load_setup'
    >>> culprit(["qemu_get_subqueue net/net.c:355"], [])
    'qemu_get_subqueue'
    """
    files = tuple(series_files)
    for f in frames:
        if _in_files(_file(f), files):
            return _function(f)
    return _function(frames[0]) if frames else None


def _in_files(path: str | None, files: Sequence[str]) -> bool:
    return path is not None and any(path == f or path.endswith("/" + f) for f in files)


def tree_prefix(frames: Sequence[str], series_files: Iterable[str]) -> str:
    """The directory the build's source paths carry before the QEMU tree's own (``src/``
    when QEMU was built from ``<dir>/src``), found from a frame in a file the series
    changes; "" when none says.

    >>> tree_prefix(["f src/hw/net/virtio-net.c:1"], ["hw/net/virtio-net.c"])
    'src/'
    """
    for f in frames:
        path = _file(f)
        for name in series_files:
            if path is not None and path.endswith("/" + name):
                return path[: -len(name)]
    return ""


def strip_prefix(frames: Sequence[str], prefix: str) -> list[str]:
    """Frames with the build's tree prefix taken off their paths (QEMU-relative paths)."""
    if not prefix:
        return list(frames)
    return [f.replace(" " + prefix, " ", 1) for f in frames]


def vm_name(crash: dict[str, Any]) -> str | None:
    """The VM that died, from its crash record's name (``destination.crash.json``)."""
    log = crash.get("log")
    if not log:
        return None
    name = PurePosixPath(str(log)).name
    return name.removesuffix(".crash.json") if name.endswith(".crash.json") else None


def gdb_path(crash: dict[str, Any]) -> str | None:
    """The full gdb output beside the crash record (``<vm>.gdb.txt``), as recorded."""
    vm = vm_name(crash)
    if vm is None:
        return None
    return str(PurePosixPath(str(crash["log"])).with_name(f"{vm}.gdb.txt"))


def group_crashes(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """``summary["crash_groups"]``: one entry per signature, most tests first.

    Each: ``signal``, ``frames`` (the signature's frames), ``backtrace`` (clean, up to
    :data:`BACKTRACE_FRAMES`), ``culprit``, ``vms``, ``builds``, ``tests`` (``test``,
    ``build``, ``vm``, ``gdb``), ``first_bad_patch`` ("10/10" or None).
    """
    series_files = {
        f for p in summary.get("patches", []) if p.get("role") == "series" for f in p["files"]
    }
    bisect = {b.get("test"): b for b in summary.get("bisect") or [] if b.get("test")}
    totals = {p["index"]: p["total"] for p in summary.get("patches", []) if p["role"] == "series"}
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for c in summary.get("crashes", []):
        frames = clean_frames(c.get("frames") or ())
        frames = strip_prefix(frames, tree_prefix(frames, series_files))
        key = (str(c.get("signal") or "?"), *frames[:SIGNATURE_DEPTH])
        g = groups.get(key)
        if g is None:
            g = groups[key] = {
                "signal": key[0],
                "frames": list(key[1:]),
                "backtrace": frames[:BACKTRACE_FRAMES],
                "culprit": culprit(frames, series_files),
                "vms": [],
                "builds": [],
                "tests": [],
                "first_bad_patch": None,
            }
        vm = vm_name(c)
        if vm and vm not in g["vms"]:
            g["vms"].append(vm)
        if c["build"] not in g["builds"]:
            g["builds"].append(c["build"])
        g["tests"].append({"test": c["test"], "build": c["build"], "vm": vm, "gdb": gdb_path(c)})
        found = bisect.get(c["test"])
        if g["first_bad_patch"] is None and found and found.get("first_bad_patch_index"):
            idx = int(found["first_bad_patch_index"])
            total = totals.get(idx) or max(totals.values(), default=idx)
            g["first_bad_patch"] = f"{idx}/{total}"
    return sorted(groups.values(), key=lambda g: -len(g["tests"]))


def describe(group: dict[str, Any]) -> str:
    """``SIGSEGV in virtio_net_load_setup`` (``SIGABRT, no backtrace``)."""
    if group["culprit"]:
        return f"{group['signal']} in {group['culprit']}"
    return f"{group['signal']}, no backtrace"
