#!/usr/bin/env python3
"""Benchmark the whole gate: time ``seriesgate run`` and print its verdict, stage by stage.

    make bench-gate                  (or: .venv/bin/python ci/bench_gate.py [--runs N] [ARGS...])

Each run is a real ``seriesgate run`` of the default series (extra ARGS are passed on, e.g.
``--tags quick``). Printed per run: wall time, exit code, the verdict line, stage times,
test-VM boots and deaths, whether the baseline came from the cache. Targets (issue 13):

- warm run with the baseline cached: <= 8 min (480 s)
- cold run from an empty cache: <= 20 min (1200 s)   (run with SERIESGATE_CACHE=<empty dir>)
- no verdict "undecided" because of the test VM over consecutive runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WARM_TARGET_S = 480.0
COLD_TARGET_S = 1200.0


def boots(results: Path) -> int:
    """Test-VM boots of the functional and bisect stages (one directory per boot; a bisect
    probe that ran on the cache booted nothing)."""
    probes = [d for d in results.glob("bisect/*/patch-*") if (d / "l1-console.log").exists()]
    return len(list(results.glob("functional/*/attempt-*"))) + len(probes) + bisect_losses(results)


def bisect_losses(results: Path) -> int:
    """Bisect probes whose test VM was lost and booted again (runner.PROBE_AGAIN_DIR)."""
    return len(list(results.glob("bisect/*/patch-*/again")))


def one_run(n: int, args: list[str]) -> dict[str, Any]:
    out = ROOT / "results" / f"bench-gate-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
    argv = [str(ROOT / ".venv" / "bin" / "seriesgate"), "run", "--out", str(out), *args]
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603
    wall = time.monotonic() - start
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    facts = summary.get("environment", {}).get("facts", {})
    total_boots = boots(out)
    losses = [str(r.get("error", "")) for r in facts.get("l1_retries", [])]
    died = len(losses) + bisect_losses(out)  # every lost functional test VM is in l1_retries
    # Tests that started from a guest an earlier test left running (guestpool).
    sources = [(t.get("measurements") or {}).get("source_guest") for t in summary.get("tests", [])]
    shared = [s for s in sources if isinstance(s, dict)]
    verdict_line = next(
        (ln for ln in proc.stdout.splitlines() if ln.startswith("seriesgate: verdict")), ""
    )
    return {
        "run": n,
        "wall_s": round(wall, 1),
        "exit": proc.returncode,
        "verdict": summary.get("overall", {}).get("verdict"),
        "verdict_line": verdict_line,
        "headline": summary.get("headline", ""),
        "stage_times": summary.get("stage_times", {}),
        "boots": total_boots,
        "l1_deaths": died,
        "l1_losses": [ln.splitlines()[0][:120] for ln in losses if ln],
        "baseline_reused": bool(facts.get("baseline_reuse")),
        "tests_on_shared_guests": len(shared),
        "shared_guest_checks_failed": sum("check_failed" in s for s in shared),
        "results": str(out),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cold", action="store_true", help="judge against the cold target")
    known, rest = parser.parse_known_args()
    target = COLD_TARGET_S if known.cold else WARM_TARGET_S
    runs = []
    for n in range(1, known.runs + 1):
        r = one_run(n, rest)
        runs.append(r)
        ok = "OK  " if r["wall_s"] <= target else "SLOW"
        stages = " ".join(f"{k}={v:.0f}s" for k, v in r["stage_times"].items())
        print(
            f"run {n}: {r['wall_s']:.0f} s {ok} (target <= {target:.0f} s) exit {r['exit']} "
            f"verdict {r['verdict']} baseline {'reused' if r['baseline_reused'] else 'measured'} "
            f"boots {r['boots']} L1 deaths {r['l1_deaths']} tests on shared guests "
            f"{r['tests_on_shared_guests']} (check failed {r['shared_guest_checks_failed']})",
            flush=True,
        )
        print(f"  {stages}", flush=True)
        for loss in r["l1_losses"]:
            print(f"  test VM lost: {loss}", flush=True)
        print(f"  {r['verdict_line'] or r['headline']}", flush=True)
    undecided = sum(r["verdict"] == "undecided" for r in runs)
    deaths = sum(r["l1_deaths"] for r in runs)
    total = sum(r["boots"] for r in runs)
    print(f"runs {len(runs)}: undecided {undecided}; L1 deaths {deaths} of {total} boots")
    path = ROOT / "results" / "bench-gate.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(runs, indent=2) + "\n")
    print(f"written: {path}")
    return 0 if undecided == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
