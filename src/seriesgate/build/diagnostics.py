"""Read a ninja/gcc/ld log: the first compiler errors, the edge count, infra failures.

Pure functions over log text, tested on real captured logs (tests/unit/data/build/).

>>> parse_compiler_errors("../src/hw/net/virtio-net.c:4062:19: error: bad thing [-Werror=x]\\n")
(CompilerError(file='hw/net/virtio-net.c', line=4062, message='bad thing [-Werror=x]'),)
"""

from __future__ import annotations

import re

from seriesgate.build.model import CompilerError

# gcc/clang: "path:line:col: error: message" (also "fatal error:"); col is optional.
_GCC_ERROR = re.compile(
    r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:\d+:)?\s+(?:fatal )?error:\s+(?P<message>.+)$"
)
# GNU ld with debug info: "path:line: undefined reference to `x'" / "multiple definition of".
_LD_ERROR = re.compile(
    r"^(?:/usr/bin/ld: )?(?P<file>[^\s:][^:]*):(?P<line>\d+):\s+"
    r"(?P<message>(?:undefined reference|multiple definition).+)$"
)
# ld without line information: "/usr/bin/ld: foo.o: in function `f': ...": no file:line.
_LD_PLAIN = re.compile(
    r"^/usr/bin/ld: (?P<message>.*(?:undefined reference|multiple definition).*)$"
)
_NINJA_PROGRESS = re.compile(r"^\[(?P<done>\d+)/(?P<total>\d+)\] ")
_NINJA_FAILED = re.compile(r"^FAILED: (?P<target>.+)$")
_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded")

# Source paths in the log are relative to the build directory: "../src/hw/x.c".
_SOURCE_PREFIXES = ("../src/", "../")

MAX_ERRORS = 10


def source_relative(path: str, source_dir: str | None = None) -> str:
    """``../src/hw/x.c`` (or an absolute path in the tree) -> ``hw/x.c``."""
    if source_dir and path.startswith(source_dir.rstrip("/") + "/"):
        return path[len(source_dir.rstrip("/")) + 1 :]
    for prefix in _SOURCE_PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


def parse_compiler_errors(
    log: str, *, source_dir: str | None = None, limit: int = MAX_ERRORS
) -> tuple[CompilerError, ...]:
    """The first ``limit`` distinct compiler/linker errors in ``log``, in log order.

    Warnings are not errors (with -Werror gcc reports them as ``error:``, which
    is what a maintainer's build sees). Notes and "In function" lines are skipped.
    """
    found: list[CompilerError] = []
    seen: set[tuple[str, int, str]] = set()
    for raw in log.splitlines():
        line = raw.rstrip()
        match = _GCC_ERROR.match(line) or _LD_ERROR.match(line)
        if match:
            error = CompilerError(
                file=source_relative(match["file"], source_dir),
                line=int(match["line"]),
                message=match["message"].strip(),
            )
        elif plain := _LD_PLAIN.match(line):
            error = CompilerError(file="(link)", line=0, message=plain["message"].strip())
        else:
            continue
        key = (error.file, error.line, error.message)
        if key in seen:
            continue
        seen.add(key)
        found.append(error)
        if len(found) >= limit:
            break
    return tuple(found)


def failed_targets(log: str) -> tuple[str, ...]:
    """Targets ninja reported as ``FAILED:``."""
    return tuple(m["target"].strip() for ln in log.splitlines() if (m := _NINJA_FAILED.match(ln)))


def ninja_progress(line: str) -> tuple[int, int] | None:
    """``[N/M] Compiling ...`` -> ``(N, M)``; None for other lines."""
    match = _NINJA_PROGRESS.match(line)
    return (int(match["done"]), int(match["total"])) if match else None


def edges_run(log: str) -> int:
    """How many ninja edges ran (the last ``[N/M]`` seen), 0 when ninja had no work."""
    last = 0
    for line in log.splitlines():
        progress = ninja_progress(line)
        if progress:
            last = progress[0]
    return last


def disk_full(log: str) -> bool:
    """True when the log says the disk (or quota) ran out: an infra failure, not the patch's."""
    return bool(_NO_SPACE.search(log))
