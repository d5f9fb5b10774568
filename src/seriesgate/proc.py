"""Run external commands: argument lists only (never a shell), output kept, always reaped.

>>> run(["true"]).returncode
0
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from seriesgate.errors import CommandError

TAIL_LINES = 30


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    input: str | None = None,
    what: str | None = None,
    hint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` and capture stdout/stderr as text.

    On a non-zero exit (with ``check``) or a timeout, raises CommandError
    carrying the command line and the output tail. The child runs in its own
    process group, which is killed on timeout or KeyboardInterrupt so nothing
    outlives us.
    """
    args = [os.fspath(a) for a in argv]
    full_env = None if env is None else {**os.environ, **env}
    label = what or args[0]
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=full_env,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise CommandError(
            f"{label} timed out after {timeout:.0f} s",
            argv=args,
            returncode=None,
            output=tail(out + err),
            hint=hint,
        ) from None
    except BaseException:
        kill_group(proc)
        proc.wait()
        raise
    result = subprocess.CompletedProcess(args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        first = next((ln for ln in (err or out).splitlines() if ln.strip()), "")
        raise CommandError(
            f"{label} failed (exit {proc.returncode}): {first.strip()[:200]}",
            argv=args,
            returncode=proc.returncode,
            output=tail(out + err),
            hint=hint,
        )
    return result


class HasPid(Protocol):
    @property
    def pid(self) -> int: ...


def kill_group(proc: HasPid) -> None:
    """SIGKILL the process group of ``proc`` (started with start_new_session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
