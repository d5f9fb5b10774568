"""Benchmark the build stage on the default series; prints the numbers the targets name.

    make bench-build                 # cold: empty build cache + empty ccache (~7-8 min)
    python ci/bench_build.py --warm  # reuse the normal cache (no cold number)

Steps, each timed on the wall clock:
  cold      configure + baseline build in an empty build cache (target <= 7 min)
  patched   posted + patched rebuild right after the baseline      (target <= 90 s)
  each      every-patch pass over the series (other builds stored) (target <= 4 min)
  no-op     `seriesgate build` again, nothing changed, whole CLI   (target <= 10 s)
The cold cache lives under the seriesgate cache and is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time

from seriesgate import paths
from seriesgate.build import build_all
from seriesgate.series import fetch_series_set
from seriesgate.tree import prepare_tree


def children_cpu() -> float:
    """User+system CPU seconds of reaped children (ninja and its compilers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


TARGETS = {"cold": 7 * 60.0, "patched": 90.0, "each": 4 * 60.0, "no-op": 10.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true", help="reuse the normal build cache")
    args = parser.parse_args()
    work = paths.cache_dir() / f"bench-build-{os.getpid()}"
    work.mkdir(parents=True)
    if not args.warm:
        os.environ["SERIESGATE_BUILD_CACHE"] = str(work / "build-cache")
    numbers: dict[str, float] = {}
    cpu: dict[str, float] = {}
    try:
        series_set = fetch_series_set(None, workdir=work / "series")
        tree = prepare_tree(series_set, base_spec=None, workdir=work / "apply")

        start, cpu0 = time.monotonic(), children_cpu()
        first = build_all(tree, out_dir=work / "run1", each_patch=False, series_set=series_set)
        total_first = time.monotonic() - start
        cpu["first run"] = children_cpu() - cpu0
        rebuild = first.patched.wall_time + (first.posted.wall_time if first.posted else 0.0)
        if not first.baseline.cached:
            # configure + baseline ninja: everything before the first patched checkout.
            numbers["cold"] = total_first - rebuild
        if not first.patched.cached:
            numbers["patched"] = rebuild
        stored = ", stored" if first.baseline.cached else ""
        print(
            f"first run: {total_first:.1f} s (baseline {first.baseline.wall_time:.1f} s "
            f"ninja, {first.baseline.compile_steps} steps{stored}"
            f"; posted {'builds' if first.posted and first.posted.ok else 'FAILS'}"
            f"; patched {'builds' if first.patched.ok else 'FAILS'})"
        )

        start, cpu0 = time.monotonic(), children_cpu()
        each = build_all(tree, out_dir=work / "run2", each_patch=True, series_set=series_set)
        numbers["each"] = time.monotonic() - start
        cpu["each"] = children_cpu() - cpu0
        table = " ".join(f"{p.index:02d}:{'ok' if p.builds else 'FAIL'}" for p in each.each_patch)
        print(f"every patch: {table}")

        # The whole command as a user runs it: fetch + apply + build, all stored.
        start = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "seriesgate", "-q", "build", "--out", str(work / "run3")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        numbers["no-op"] = time.monotonic() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the cold build cache lives inside it

    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other work shares the 2 cores)")
    for name, seconds in cpu.items():
        print(f"  CPU time of {name}: {seconds:.0f} s (user+sys of ninja and compilers)")
    print("build benchmark (wall clock, seconds):")
    failed = False
    for name, target in TARGETS.items():
        if name not in numbers:
            print(f"  {name:8s}    n/a  (target <= {target:.0f})")
            continue
        ok = numbers[name] <= target
        failed |= not ok
        print(
            f"  {name:8s} {numbers[name]:6.1f}  (target <= {target:.0f}) {'ok' if ok else 'SLOW'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
