"""Run a long build command with its output in a log and a condensed progress line.

ninja prints one ``[N/M]`` line per edge (~1,600 for a cold build); the user
sees one line every 10 % or every 30 s instead. The child runs in its own
process group, killed on Ctrl-C, so an interrupted build leaves nothing running
(ninja's own state is consistent: the next run resumes where it stopped).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from seriesgate import progress
from seriesgate.build.diagnostics import ninja_progress
from seriesgate.proc import kill_group

PROGRESS_STEP = 0.10  # report every 10 % ...
PROGRESS_INTERVAL = 30.0  # ... or every 30 s, whichever comes first
SMALL_BUILD = 100  # fewer edges than this: only the 30 s heartbeat, no percentages


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Treat SIGTERM (a CI timeout, ``kill``) like Ctrl-C while a build runs.

    The build runs in its own process group (so a terminal's Ctrl-C reaches only
    us); without this, SIGTERM would end Python and leave ninja compiling.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class StreamedRun:
    returncode: int
    wall_time: float
    edges: int  # last N of [N/M]: the edges ninja ran


def run_logged(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    label: str,
) -> StreamedRun:
    """Run ``argv``, append its combined output to ``log``, print condensed progress."""
    args = [os.fspath(a) for a in argv]
    start = time.monotonic()
    last_say = start
    next_fraction = PROGRESS_STEP
    edges = 0
    log.parent.mkdir(parents=True, exist_ok=True)
    with sigterm_interrupts(), log.open("a", encoding="utf-8", errors="replace") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                counts = ninja_progress(line)
                if counts is None:
                    continue
                edges, total = counts
                now = time.monotonic()
                fraction = edges / total if total else 1.0
                due = fraction >= next_fraction and total >= SMALL_BUILD
                if due or now - last_say >= PROGRESS_INTERVAL:
                    progress.say(
                        "build",
                        f"{label}: [{edges}/{total}] {fraction:4.0%} ({now - start:.0f} s)",
                    )
                    last_say = now
                    while next_fraction <= fraction:
                        next_fraction += PROGRESS_STEP
            returncode = proc.wait()
        except BaseException:
            kill_group(proc)
            proc.wait()
            raise
    return StreamedRun(returncode=returncode, wall_time=time.monotonic() - start, edges=edges)
