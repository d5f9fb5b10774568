"""Benchmark the apply stage on the default series: cold (unpack + git base) and warm.

Cold uses a scratch cache that shares only the downloaded Debian source files
(hard links), so the real cached work tree is left alone. Prints one line per
measurement. Targets: cold <= 180 s, warm < 60 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seriesgate import paths

TARGETS = {"cold": 180.0, "warm": 60.0}


def timed_apply(cache: Path, out: Path) -> float:
    env = {**os.environ, "SERIESGATE_CACHE": str(cache)}
    start = time.monotonic()
    argv = [sys.executable, "-m", "seriesgate", "-q", "apply", "--out", str(out)]
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def main() -> int:
    downloads = paths.cache_dir() / "downloads" / "debian-src"
    with tempfile.TemporaryDirectory(prefix="seriesgate-bench-apply-") as tmp:
        cache = Path(tmp) / "cache"
        if downloads.is_dir():
            shutil.copytree(downloads, cache / "downloads" / "debian-src", copy_function=os.link)
        ok = True
        for label in ("cold", "warm"):
            seconds = timed_apply(cache, Path(tmp) / f"out-{label}")
            verdict = "ok" if seconds <= TARGETS[label] else "SLOW"
            print(f"apply {label}: {seconds:.1f} s (target {TARGETS[label]:.0f} s) {verdict}")
            ok = ok and verdict == "ok"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
