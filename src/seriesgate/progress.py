"""One line per long step on stderr; quiet otherwise.

>>> import contextlib, io
>>> was_quiet = _quiet
>>> set_quiet(False)  # ``-q`` (or an earlier test) may have silenced it
>>> err = io.StringIO()
>>> with contextlib.redirect_stderr(err), step("build", "baseline"):
...     pass
>>> print(err.getvalue(), end="")
[build] baseline ...
[build] baseline done (0.0 s)
>>> set_quiet(was_quiet)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def say(stage: str, message: str) -> None:
    """Print one progress line: ``[stage] message``."""
    if not _quiet:
        print(f"[{stage}] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(stage: str, what: str) -> Iterator[None]:
    """Announce a long step, then its outcome and wall time, on one line each."""
    say(stage, f"{what} ...")
    start = time.monotonic()
    try:
        yield
    except BaseException:
        say(stage, f"{what} FAILED after {time.monotonic() - start:.1f} s")
        raise
    say(stage, f"{what} done ({time.monotonic() - start:.1f} s)")
