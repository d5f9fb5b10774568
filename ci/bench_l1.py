#!/usr/bin/env python3
"""How often the L1 test VM dies, per L1 configuration: migration-group boots, interleaved.

    make bench-l1                 (or: .venv/bin/python ci/bench_l1.py [--boots N]
                                   [--qemu system --qemu backports] [--until HH:MM])
    .venv/bin/python ci/bench_l1.py --variant smp2=SERIESGATE_L1_SMP=2 \
                                    --variant smp1=SERIESGATE_L1_SMP=1

A variant is a name and the environment its boots run with: ``--qemu Q`` is the variant
``Q`` with ``SERIESGATE_L1_QEMU=Q`` (``system`` = Debian's 7.2, ``backports`` =
bookworm-backports' 10.0, or a path); ``--variant NAME=VAR=VALUE[,VAR=VALUE...]`` sets any
variables (e.g. ``SERIESGATE_L1_SMP``). Default: ``--qemu system --qemu backports``.

For each of N rounds, one boot per variant, the order alternating round by round (reversed
every other round), so the machine's noise hits all alike. Each boot is one
``seriesgate functional`` run of the migration group's classes (``TESTS``) on the cached
baseline build, no retry (``seriesgate functional`` never reuses stored baseline results).
Per boot: whether L1 died
and how (the console's panic/Oops line, a triple fault in l1-qemu.log, a wedge or hang),
``l1-timing.json``'s boot_to_command_s, the L2 guests' boot to agent ready (the tests'
"guest agent ready in X s" log lines) and the wall time. Prints one line per boot and a
summary per variant; writes ``bench-l1.json`` (rewritten after every boot) in the results dir.

Two variables of a variant are the bench's own, not passed on: ``BENCH_QEMU_UNDER_TEST=PATH``
runs that variant's boots on another QEMU build (e.g. patched against baseline: does the
QEMU under test change how often L1 dies?) and ``BENCH_TESTS=REF[;REF...]`` runs other tests
than ``TESTS``.

``--until HH:MM`` (UTC): start a round only if it can end by then (estimated from the
slowest round so far); a boot still running then is stopped (SIGTERM), none starts after it,
and that round is not counted for any variant.

The boots run ``python -m seriesgate`` with this interpreter and this checkout's ``src`` first
on ``$PYTHONPATH`` (forwarded into L1), so a git worktree measures its own code.
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
    both variants die at the same rate (the tables no more likely than the observed one).

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


@dataclass(frozen=True)
class Variant:
    """A configuration to measure: a name and the environment its boots run with."""

    name: str
    env: dict[str, str]


def parse_variant(text: str) -> Variant:
    """``NAME=VAR=VALUE[,VAR=VALUE...]`` (the --variant argument). A comma starts the next
    setting only before an upper-case ``VAR=``, so a value may hold commas
    (``SERIESGATE_L1_ACCEL=tcg,thread=single``).

    >>> parse_variant("smp1=SERIESGATE_L1_SMP=1,SERIESGATE_L1_QEMU=system")
    Variant(name='smp1', env={'SERIESGATE_L1_SMP': '1', 'SERIESGATE_L1_QEMU': 'system'})
    """
    name, sep, settings = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ValueError(f"--variant {text!r}: expected NAME=VAR=VALUE[,VAR=VALUE...]")
    env: dict[str, str] = {}
    for item in re.split(r",(?=[A-Z_][A-Z0-9_]*=)", settings):
        var, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", var):
            raise ValueError(f"--variant {text!r}: {item!r} is not VAR=VALUE")
        if var in env:
            raise ValueError(f"--variant {text!r}: {var} set twice")
        env[var] = value
    return Variant(name, env)


def variants_of(qemus: list[str] | None, variants: list[str] | None) -> list[Variant]:
    """The variants of ``--qemu`` (each ``SERIESGATE_L1_QEMU=Q``) then ``--variant``
    arguments; neither: ``system`` and ``backports``. Names must differ.

    >>> [v.name for v in variants_of(None, None)]
    ['system', 'backports']
    >>> variants_of(["system"], None)
    [Variant(name='system', env={'SERIESGATE_L1_QEMU': 'system'})]
    """
    if not qemus and not variants:
        qemus = ["system", "backports"]
    found = [Variant(q, {"SERIESGATE_L1_QEMU": q}) for q in qemus or []]
    found += [parse_variant(v) for v in variants or []]
    names = [v.name for v in found]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"variant {name!r} given twice")
    return found


BENCH_VARS = ("BENCH_QEMU_UNDER_TEST", "BENCH_TESTS")  # read by the bench, not passed on


def child_env(variant: Variant, base: dict[str, str]) -> dict[str, str]:
    """The environment of a boot: ``base`` (ours), this checkout's src first on PYTHONPATH,
    then the variant's variables (except the bench's own, ``BENCH_VARS``).

    >>> e = child_env(Variant("x", {"SERIESGATE_L1_SMP": "1", "BENCH_TESTS": "t"}),
    ...               {"PYTHONPATH": "/a"})
    >>> e["SERIESGATE_L1_SMP"], e["PYTHONPATH"] == f"{ROOT / 'src'}:/a", "BENCH_TESTS" in e
    ('1', True, False)
    """
    src = str(ROOT / "src")
    path = [p for p in base.get("PYTHONPATH", "").split(":") if p and p != src]
    own = {k: v for k, v in variant.env.items() if k not in BENCH_VARS}
    return {**base, "PYTHONPATH": ":".join([src, *path]), **own}


@dataclass
class Boot:
    qemu: str  # the variant's name (an L1 QEMU choice in benches from before --variant)
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
    cut: bool = False  # its round was stopped at --until: not counted (equal counts per variant)
    smp: int | None = None  # the L1 vCPUs of this boot (l1-timing.json; None before it said)


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
    boot.smp = timing.get("smp")
    if not cut:
        boot.died = l1_death(text("l1-console.log"), text("l1-qemu.log"), text("stderr.log"))
    boot.boot_crashes = boot_crashes(results_dir)
    boot.l2_ready_s = agent_ready_times(results_dir)
    boot.tests = test_counts(text("stdout.log"))
    return boot


def summary(boots: list[Boot], qemu: str) -> dict[str, Any]:
    mine = [b for b in boots if b.qemu == qemu and not b.cut]
    smps = sorted({b.smp for b in mine if b.smp is not None})
    ready = [t for b in mine for t in b.l2_ready_s]
    uptime = sum(b.l1_total_s or 0.0 for b in mine)
    deaths = [b for b in mine if b.died]
    return {
        "qemu": qemu,
        "boots": len(mine),
        "deaths": len(deaths),
        "boot_crashes": sum(len(b.boot_crashes) for b in mine),
        "how": [b.died for b in deaths],
        "died_at": [[b.round, b.l1_total_s] for b in deaths],  # round, L1 seconds at its end
        "smp": smps,
        "l1_uptime_s": round(uptime, 1),
        "median_boot_to_command_s": median(
            [b.boot_to_command_s for b in mine if b.boot_to_command_s is not None]
        ),
        "median_l2_ready_s": median(ready),
        "l2_guests": len(ready),
        "median_wall_s": median([b.wall_s for b in mine]),
        # The L1's own time (l1-timing.json total_s): the wall without a wait for the L1 lock
        # (another party's L1 run between two boots) nor the host-side setup.
        "median_l1_s": median([b.l1_total_s for b in mine if b.l1_total_s is not None]),
        "median_wall_s_survived": median([b.wall_s for b in mine if not b.died]),
    }


def summary_line(s: dict[str, Any], version: str) -> str:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    return (
        f"{s['qemu']:<10} {version:<56} died {s['deaths']}/{s['boots']} "
        f"(+{s['boot_crashes']} boot crashes retried) in {s['l1_uptime_s']:.0f} s of L1; "
        f"boot-to-command {num(s['median_boot_to_command_s'])} s, "
        f"L2 ready {num(s['median_l2_ready_s'])} s (n={s['l2_guests']}), "
        f"wall {num(s['median_wall_s'])} s, L1 {num(s.get('median_l1_s'))} s (medians)"
    )


def print_summary(boots: list[Boot], qemus: list[str], versions: dict[str, str]) -> None:
    sums = [summary(boots, q) for q in qemus]
    for s in sums:
        print(summary_line(s, versions[s["qemu"]]))
        for how, (rnd, at) in zip(s["how"], s.get("died_at", []), strict=False):
            print(f"    round {rnd}: {how} (L1 ended at {at} s)")
    for i, a in enumerate(sums):
        for b in sums[i + 1 :]:
            p = fisher_p(a["deaths"], a["boots"], b["deaths"], b["boots"])
            print(
                f"{a['qemu']} vs {b['qemu']}: death counts {a['deaths']}/{a['boots']} vs "
                f"{b['deaths']}/{b['boots']}: two-sided Fisher exact p = {p:.3f}"
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


def qemu_version(choice: str | None) -> str:
    from seriesgate.testenv import l1qemu

    return l1qemu.version(l1qemu.resolve(choice))


def describe(variant: Variant) -> str:
    """The variant's L1 QEMU version and its settings other than the QEMU choice."""
    qemu = variant.env.get("SERIESGATE_L1_QEMU", os.environ.get("SERIESGATE_L1_QEMU"))
    extra = [f"{k}={v}" for k, v in variant.env.items() if k != "SERIESGATE_L1_QEMU"]
    return " ".join([qemu_version(qemu), *extra])


def run_boot(
    variant: Variant, baseline: Path, results_dir: Path, deadline: float | None
) -> tuple[int | None, float, bool]:
    """One ``seriesgate functional`` run in this variant; (exit code, wall, cut)."""
    results_dir.mkdir(parents=True)
    argv = [
        sys.executable,
        "-m",
        "seriesgate",
        "functional",
        "--build",
        "baseline",
        "--bin",
        f"baseline={variant.env.get('BENCH_QEMU_UNDER_TEST', baseline)}",
        "--no-retry",
        "--results-dir",
        str(results_dir),
    ]
    for d in FIRMWARE_DIRS:
        argv += ["--firmware-dir", d]
    tests = variant.env["BENCH_TESTS"].split(";") if "BENCH_TESTS" in variant.env else TESTS
    for test in tests:
        argv += ["--test", test]
    env = child_env(variant, dict(os.environ))
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
    p.add_argument("--boots", type=int, default=20, help="boots per variant (default 20)")
    p.add_argument("--qemu", action="append", help="L1 QEMU (system, backports or a path)")
    p.add_argument(
        "--variant",
        action="append",
        metavar="NAME=VAR=VALUE[,VAR=VALUE]",
        help="a configuration: its name and environment (repeatable; after the --qemu ones)",
    )
    p.add_argument("--baseline", type=Path, help="the QEMU under test (default: newest baseline)")
    p.add_argument("--until", help="UTC HH:MM: no boot runs past it (rounds that fit only)")
    p.add_argument("--results-dir", type=Path)
    p.add_argument("--summarize", type=Path, help="only print the summary of a bench-l1.json")
    args = p.parse_args()
    if args.summarize:
        record = json.loads(args.summarize.read_text())
        done = [Boot(**b) for b in record["boots"]]
        names = [s["qemu"] for s in record["summary"]]
        print_summary(done, names, record.get("variant_descriptions", record["l1_qemu_versions"]))
        return 0
    try:
        variants = variants_of(args.qemu, args.variant)
    except ValueError as exc:
        p.error(str(exc))
    qemus = [v.name for v in variants]
    baseline = (args.baseline or find_baseline()).resolve()
    out = args.results_dir or ROOT / "results" / time.strftime("bench-l1-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    descriptions = {v.name: describe(v) for v in variants}
    deadline = until_epoch(args.until) if args.until else None
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    print(f"bench-l1: {baseline} in variants {descriptions}; results {out}", flush=True)
    boots: list[Boot] = []
    slowest_round = 0.0
    for rnd in range(1, args.boots + 1):
        if deadline is not None and time.time() + slowest_round * 1.1 > deadline:
            print(f"bench-l1: stopping before round {rnd}: it would not end by {args.until} UTC")
            break
        round_start = time.monotonic()
        order = variants if rnd % 2 else list(reversed(variants))
        for variant in order:
            qemu = variant.name
            if deadline is not None and time.time() >= deadline:
                print(f"bench-l1: {args.until} UTC reached: round {rnd} not counted")
                break
            bdir = out / f"round-{rnd:02d}-{qemu.replace('/', '_')}"
            code, wall, cut = run_boot(variant, baseline, bdir, deadline)
            boot = read_boot(qemu, rnd, bdir, code, wall, cut)
            boots.append(boot)
            state = "CUT at --until" if cut else f"DIED: {boot.died}" if boot.died else "ok"
            print(
                f"round {rnd:2d} {qemu:<10} {state}; exit {code}; wall {wall:.0f} s; "
                f"smp {boot.smp}; boot-to-command {boot.boot_to_command_s} s; "
                f"L2 ready {boot.l2_ready_s}; "
                f"tests {boot.tests}"
                + (f"; boot crashes {boot.boot_crashes}" if boot.boot_crashes else ""),
                flush=True,
            )
            write(out, command, baseline, variants, descriptions, boots)
        this_round = [b for b in boots if b.round == rnd]
        if len(this_round) < len(qemus) or any(b.cut for b in this_round):
            for b in this_round:
                b.cut = True  # a partial round would make the counts unequal
            write(out, command, baseline, variants, descriptions, boots)
            break
        slowest_round = max(slowest_round, time.monotonic() - round_start)
    print_summary(boots, qemus, descriptions)
    print(f"bench-l1: {out / 'bench-l1.json'}")
    return 0


def write(
    out: Path,
    command: str,
    baseline: Path,
    variants: list[Variant],
    descriptions: dict[str, str],
    boots: list[Boot],
) -> None:
    record = {
        "command": command,
        "baseline": str(baseline),
        "tests": list(TESTS),
        "variants": {v.name: v.env for v in variants},
        "variant_descriptions": descriptions,
        "l1_qemu_versions": descriptions,  # the key benches before --variant wrote
        "summary": [summary(boots, v.name) for v in variants],
        "boots": [asdict(b) for b in boots],
    }
    (out / "bench-l1.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
