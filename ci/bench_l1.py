#!/usr/bin/env python3
"""How often the L1 test VM dies, per L1 QEMU: boots of the migration group, interleaved.

    make bench-l1                 (or: .venv/bin/python ci/bench_l1.py [--boots N]
                                   [--qemu system --qemu backports] [--until HH:MM])

For each of N rounds, one boot per L1 QEMU (``$SERIESGATE_L1_QEMU``: ``system`` = Debian's
7.2, ``backports`` = bookworm-backports' 10.0, or a path), the order alternating round by
round, so the machine's noise hits both alike. Each boot is one ``seriesgate functional``
run of the migration group's classes (``TESTS``) on the cached baseline build, no retry
(``seriesgate functional`` never reuses stored baseline results). Per boot: whether L1 died
and how (the console's panic/Oops line, a triple fault in l1-qemu.log, a wedge or hang),
``l1-timing.json``'s boot_to_command_s, the L2 guests' boot to agent ready (the tests'
"guest agent ready in X s" log lines) and the wall time. Prints one line per boot and a
summary per QEMU; writes ``bench-l1.json`` (rewritten after every boot) in the results dir.

``--until HH:MM`` (UTC): start a round only if it can end by then (estimated from the
slowest round so far); a boot still running then is stopped (SIGTERM), none starts after it,
and that round is not counted for either QEMU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TESTS = (
    "tests/functional/test_migration.py:MigrationCorrectness",
    "tests/functional/test_migration.py:MigrationSvqDestination",
    "tests/functional/test_migration.py:MigrationAfterIntrospection",
)
FIRMWARE_DIRS = ("/usr/share/qemu", "/usr/share/seabios", "/usr/lib/ipxe/qemu")
ROOT = Path(__file__).resolve().parents[1]
_START = re.compile(r"^SGL1-START (\S+)", re.MULTILINE)
_AGENT_READY = re.compile(r"(\w+): guest agent ready in ([0-9.]+) s")
_SOFT_LOCKUP = re.compile(r"BUG: soft lockup - CPU#\d+ stuck for \d+s!.*")
_PANIC_MARKERS = ("Kernel panic", "Oops:", "BUG:", "general protection fault")
_RESULT_LINE = re.compile(r"^(baseline)\s+(PASS|FAIL|ERROR|SKIP|INTERRUPTED|CANCEL|WARN)\s")


# -- reading one boot's files (pure) ---------------------------------------------------------


def l1_death(console: str, qemu_log: str, stderr: str = "") -> str | None:
    """How L1 died in this boot, or None if its command ran to its exit status.

    ``console``: l1-console.log; ``qemu_log``: l1-qemu.log (``-d cpu_reset``); ``stderr``:
    the seriesgate command's stderr (for a wedge or hang the supervisor ended).

    >>> l1_death("SGL1-START ab 3.1\\nSGL1-EXIT ab 0\\n", "")
    >>> l1_death("SGL1-START ab 3.1\\n[ 40.9] Kernel panic - not syncing: x\\n", "")
    'Kernel panic - not syncing: x'
    >>> l1_death("SGL1-START ab 3.1\\n", "CPU Reset (CPU 0)\\nTriple fault\\n")
    'triple fault'
    """
    starts = _START.findall(console)
    nonce = starts[-1] if starts else None
    if nonce is not None and re.search(rf"^SGL1-EXIT {re.escape(nonce)} -?\d+", console, re.M):
        return None
    for line in console.splitlines():
        for marker in _PANIC_MARKERS:
            if marker in line and "soft lockup" not in line:
                return line[line.index(marker) :].strip()[:160]
    if "Triple fault" in qemu_log:
        return "triple fault"
    lockup = _SOFT_LOCKUP.search(console)
    if lockup:
        return "wedged: " + lockup.group(0)[:120]
    for what in ("hung: nothing written", "timed out after", "wedged, killed"):
        if what in stderr:
            return "L1 " + what.split(":")[0].split(",")[0]
    if nonce is None:
        return "no command start on the console"
    return "ended without an exit status"


def boot_crashes(results_dir: Path) -> list[str]:
    """The crashes while booting that vm.run_l1 retried (l1-console.boot-crash-N.log)."""
    found = []
    for log in sorted(results_dir.glob("l1-console.boot-crash-*.log")):
        found.append(l1_death(log.read_text(errors="replace"), "") or "crash while booting")
    return found


def agent_ready_times(results_dir: Path) -> list[float]:
    """Boot to agent ready (s) of every L2 guest the tests booted, from their debug.logs."""
    times = []
    for log in sorted(results_dir.rglob("debug.log")):
        for match in _AGENT_READY.finditer(log.read_text(errors="replace")):
            times.append(float(match.group(2)))
    return times


def test_counts(stdout: str) -> dict[str, int]:
    """``{"PASS": 5, "FAIL": 1}`` from ``seriesgate functional``'s summary lines."""
    counts: dict[str, int] = {}
    for line in stdout.splitlines():
        match = _RESULT_LINE.match(line)
        if match:
            counts[match.group(2)] = counts.get(match.group(2), 0) + 1
    return counts


def fisher_p(deaths_a: int, boots_a: int, deaths_b: int, boots_b: int) -> float:
    """Two-sided Fisher exact test: how likely death counts at least this lopsided are when
    both L1 QEMUs die at the same rate (the tables no more likely than the observed one).

    >>> fisher_p(1, 20, 1, 20)
    1.0
    >>> round(fisher_p(6, 20, 0, 20), 3)
    0.02
    """
    dead = deaths_a + deaths_b
    total = boots_a + boots_b

    def prob(k: int) -> float:
        return math.comb(boots_a, k) * math.comb(boots_b, dead - k) / math.comb(total, dead)

    seen = prob(deaths_a)
    lo, hi = max(0, dead - boots_b), min(dead, boots_a)
    return min(1.0, sum(p for k in range(lo, hi + 1) if (p := prob(k)) <= seen * (1 + 1e-9)))


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


@dataclass
class Boot:
    qemu: str
    round: int
    results_dir: str
    exit_code: int | None
    wall_s: float
    died: str | None = None  # how L1 died (None: it ran the command to its end)
    boot_crashes: list[str] = field(default_factory=list)
    boot_to_command_s: float | None = None
    l1_total_s: float | None = None
    l2_ready_s: list[float] = field(default_factory=list)
    tests: dict[str, int] = field(default_factory=dict)
    cut: bool = False  # its round was stopped at --until: not counted (equal counts per QEMU)


def read_boot(
    qemu: str, rnd: int, results_dir: Path, exit_code: int | None, wall: float, cut: bool = False
) -> Boot:
    def text(name: str) -> str:
        path = results_dir / name
        return path.read_text(errors="replace") if path.is_file() else ""

    boot = Boot(qemu, rnd, str(results_dir), exit_code, round(wall, 1), cut=cut)
    timing = json.loads(text("l1-timing.json") or "{}")
    boot.boot_to_command_s = timing.get("boot_to_command_s")
    boot.l1_total_s = timing.get("total_s")
    if not cut:
        boot.died = l1_death(text("l1-console.log"), text("l1-qemu.log"), text("stderr.log"))
    boot.boot_crashes = boot_crashes(results_dir)
    boot.l2_ready_s = agent_ready_times(results_dir)
    boot.tests = test_counts(text("stdout.log"))
    return boot


def summary(boots: list[Boot], qemu: str) -> dict[str, Any]:
    mine = [b for b in boots if b.qemu == qemu and not b.cut]
    ready = [t for b in mine for t in b.l2_ready_s]
    uptime = sum(b.l1_total_s or 0.0 for b in mine)
    deaths = [b for b in mine if b.died]
    return {
        "qemu": qemu,
        "boots": len(mine),
        "deaths": len(deaths),
        "boot_crashes": sum(len(b.boot_crashes) for b in mine),
        "how": [b.died for b in deaths],
        "l1_uptime_s": round(uptime, 1),
        "median_boot_to_command_s": median(
            [b.boot_to_command_s for b in mine if b.boot_to_command_s is not None]
        ),
        "median_l2_ready_s": median(ready),
        "l2_guests": len(ready),
        "median_wall_s": median([b.wall_s for b in mine]),
        "median_wall_s_survived": median([b.wall_s for b in mine if not b.died]),
    }


def summary_line(s: dict[str, Any], version: str) -> str:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    return (
        f"{s['qemu']:<10} {version:<48} died {s['deaths']}/{s['boots']} "
        f"(+{s['boot_crashes']} boot crashes retried) in {s['l1_uptime_s']:.0f} s of L1; "
        f"boot-to-command {num(s['median_boot_to_command_s'])} s, "
        f"L2 ready {num(s['median_l2_ready_s'])} s (n={s['l2_guests']}), "
        f"wall {num(s['median_wall_s'])} s (median)"
    )


def print_summary(boots: list[Boot], qemus: list[str], versions: dict[str, str]) -> None:
    sums = [summary(boots, q) for q in qemus]
    for s in sums:
        print(summary_line(s, versions[s["qemu"]]))
    if len(sums) == 2:
        a, b = sums
        p = fisher_p(a["deaths"], a["boots"], b["deaths"], b["boots"])
        print(
            f"death counts {a['deaths']}/{a['boots']} vs {b['deaths']}/{b['boots']}: "
            f"two-sided Fisher exact p = {p:.3f}"
        )


# -- running -----------------------------------------------------------------------------------


def find_baseline() -> Path:
    """The baseline binary of the newest run whose build.json names one that still exists."""
    candidates = sorted(
        Path("/work").glob("*/results/*/build.json"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for build_json in candidates:
        try:
            binary = json.loads(build_json.read_text())["builds"]["baseline"]["binary"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if binary and Path(binary).is_file():
            return Path(binary)
    raise SystemExit("no baseline build found: pass --baseline PATH")


def qemu_version(choice: str) -> str:
    from seriesgate.testenv import l1qemu

    return l1qemu.version(l1qemu.resolve(choice))


def run_boot(
    qemu: str, baseline: Path, results_dir: Path, deadline: float | None
) -> tuple[int | None, float, bool]:
    """One ``seriesgate functional`` run with this L1 QEMU; (exit code, wall, cut)."""
    results_dir.mkdir(parents=True)
    argv = [
        str(ROOT / ".venv" / "bin" / "seriesgate"),
        "functional",
        "--build",
        "baseline",
        "--bin",
        f"baseline={baseline}",
        "--no-retry",
        "--results-dir",
        str(results_dir),
    ]
    for d in FIRMWARE_DIRS:
        argv += ["--firmware-dir", d]
    for test in TESTS:
        argv += ["--test", test]
    env = {**os.environ, "SERIESGATE_L1_QEMU": qemu}
    started = time.monotonic()
    with open(results_dir / "stdout.log", "w") as out, open(results_dir / "stderr.log", "w") as err:
        child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=err)
        try:
            timeout = None if deadline is None else max(1.0, deadline - time.time())
            code: int | None = child.wait(timeout=timeout)
            cut = False
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGTERM)  # the runner kills L1 on SIGTERM
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            code, cut = None, True
    return code, time.monotonic() - started, cut


def until_epoch(hhmm: str) -> float:
    now = dt.datetime.now(dt.UTC)
    hour, minute = (int(x) for x in hhmm.split(":"))
    when = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if when <= now:
        when += dt.timedelta(days=1)
    return when.timestamp()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--boots", type=int, default=20, help="boots per L1 QEMU (default 20)")
    p.add_argument("--qemu", action="append", help="L1 QEMU (system, backports or a path)")
    p.add_argument("--baseline", type=Path, help="the QEMU under test (default: newest baseline)")
    p.add_argument("--until", help="UTC HH:MM: no boot runs past it (rounds that fit only)")
    p.add_argument("--results-dir", type=Path)
    p.add_argument("--summarize", type=Path, help="only print the summary of a bench-l1.json")
    args = p.parse_args()
    if args.summarize:
        record = json.loads(args.summarize.read_text())
        done = [Boot(**b) for b in record["boots"]]
        names = [s["qemu"] for s in record["summary"]]
        print_summary(done, names, record["l1_qemu_versions"])
        return 0
    qemus = args.qemu or ["system", "backports"]
    baseline = (args.baseline or find_baseline()).resolve()
    out = args.results_dir or ROOT / "results" / time.strftime("bench-l1-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    versions = {q: qemu_version(q) for q in qemus}
    deadline = until_epoch(args.until) if args.until else None
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    print(f"bench-l1: {baseline} on L1 QEMUs {versions}; results {out}", flush=True)
    boots: list[Boot] = []
    slowest_round = 0.0
    for rnd in range(1, args.boots + 1):
        if deadline is not None and time.time() + slowest_round * 1.1 > deadline:
            print(f"bench-l1: stopping before round {rnd}: it would not end by {args.until} UTC")
            break
        round_start = time.monotonic()
        order = qemus if rnd % 2 else list(reversed(qemus))
        for qemu in order:
            if deadline is not None and time.time() >= deadline:
                print(f"bench-l1: {args.until} UTC reached: round {rnd} not counted")
                break
            bdir = out / f"round-{rnd:02d}-{qemu.replace('/', '_')}"
            code, wall, cut = run_boot(qemu, baseline, bdir, deadline)
            boot = read_boot(qemu, rnd, bdir, code, wall, cut)
            boots.append(boot)
            state = "CUT at --until" if cut else f"DIED: {boot.died}" if boot.died else "ok"
            print(
                f"round {rnd:2d} {qemu:<10} {state}; exit {code}; wall {wall:.0f} s; "
                f"boot-to-command {boot.boot_to_command_s} s; L2 ready {boot.l2_ready_s}; "
                f"tests {boot.tests}"
                + (f"; boot crashes {boot.boot_crashes}" if boot.boot_crashes else ""),
                flush=True,
            )
            write(out, command, baseline, versions, boots, qemus)
        this_round = [b for b in boots if b.round == rnd]
        if len(this_round) < len(qemus) or any(b.cut for b in this_round):
            for b in this_round:
                b.cut = True  # a partial round would make the counts unequal
            write(out, command, baseline, versions, boots, qemus)
            break
        slowest_round = max(slowest_round, time.monotonic() - round_start)
    print_summary(boots, qemus, versions)
    print(f"bench-l1: {out / 'bench-l1.json'}")
    return 0


def write(
    out: Path,
    command: str,
    baseline: Path,
    versions: dict[str, str],
    boots: list[Boot],
    qemus: list[str],
) -> None:
    record = {
        "command": command,
        "baseline": str(baseline),
        "tests": list(TESTS),
        "l1_qemu_versions": versions,
        "summary": [summary(boots, q) for q in qemus],
        "boots": [asdict(b) for b in boots],
    }
    (out / "bench-l1.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
