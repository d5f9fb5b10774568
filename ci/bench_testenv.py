#!/usr/bin/env python3
"""Benchmark the testenv stage against its speed targets; prints one line per number.

    make bench-testenv            (or: .venv/bin/python ci/bench_testenv.py [--no-cold] [--no-tcg])

1. asset build cold (downloads + module build + initramfs) into a throw-away cache ≤ 90 s
2. cached assets: validate ≤ 2 s
3. L1 boot to the command ≤ 5 s; device setup (modules + 2 devices) ≤ 2 s
4. two 256 MB L2 guests on vhost-vdpa with KVM in L1: boot to agent ready ≤ 15 s;
   host RSS of the VM stack (the L1 QEMU, which holds both L2 guests) ≤ 2 GB
5. the TCG fallback (L2 with TCG inside TCG): boot to agent ready, reported
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from seriesgate.paths import results_root
from seriesgate.testenv import prepare, run_in_env
from seriesgate.testenv.model import Mode

TARGETS = {
    "assets_cold_s": 90.0,
    "assets_cached_s": 2.0,
    "l1_boot_to_command_s": 5.0,
    "device_setup_s": 2.0,
    "l2_boot_kvm_s": 15.0,
    "vm_stack_rss_mb": 2048.0,
}


def line(name: str, value: float | None, unit: str, note: str = "") -> None:
    target = TARGETS.get(name)
    if value is None:
        verdict = "n/a"
    elif target is None:
        verdict = "(reported)"
    else:
        verdict = f"{'OK  ' if value <= target else 'SLOW'} (target ≤ {target:g} {unit})"
    shown = "-" if value is None else f"{value:.2f}"
    print(f"{name:<24} {shown:>9} {unit:<3} {verdict} {note}", flush=True)


def bench_cold() -> float:
    """A full asset build (downloads included) into a temporary cache."""
    with tempfile.TemporaryDirectory(prefix="sg-bench-cache-", dir="/var/tmp") as tmp:
        env = {**os.environ, "SERIESGATE_CACHE": tmp}
        start = time.monotonic()
        subprocess.run(
            [sys.executable, "-c", "from seriesgate.testenv import assets; assets.ensure_assets()"],
            env=env,
            check=True,
        )
        return time.monotonic() - start


def bench_cached() -> tuple[float, float]:
    """(in-process validation time, wall time of a fresh process doing it)."""
    code = (
        "import time; t=time.monotonic(); from seriesgate.testenv import assets; "
        "assets.ensure_assets(); print(time.monotonic()-t)"
    )
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip()), time.monotonic() - start


def run_smoke(out: Path, *, guests: int, tcg: bool, hold: float) -> dict[str, Any]:
    env = prepare(Mode.VM)
    argv = [
        sys.executable,
        "-m",
        "seriesgate.testenv.smoke",
        "--guests",
        str(guests),
        "--hold",
        str(hold),
        "--workdir",
        str(out / "smoke"),
    ]
    if tcg:
        argv.append("--tcg")
    status = run_in_env(env, argv, results_dir=out, devices=2, timeout=900)
    result: dict[str, Any] = {"exit_status": status}
    for name in ("l1-timing.json", "testenv-timing.json", "smoke/smoke.json"):
        path = out / name
        result[name] = json.loads(path.read_text()) if path.exists() else {}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-cold", action="store_true", help="skip the cold asset build")
    parser.add_argument("--no-tcg", action="store_true", help="skip the TCG-fallback L2 boot")
    args = parser.parse_args()
    if shutil.which("qemu-system-x86_64") is None:
        print("bench-testenv: qemu-system-x86_64 missing (run ci/setup-host.sh)", file=sys.stderr)
        return 2
    base = results_root() / time.strftime("bench-testenv-%Y%m%d-%H%M%S")
    base.mkdir(parents=True, exist_ok=True)
    print(f"bench-testenv: results in {base}; load average {os.getloadavg()[0]:.1f}", flush=True)
    numbers: dict[str, Any] = {}
    if not args.no_cold:
        numbers["assets_cold_s"] = bench_cold()
        line("assets_cold_s", numbers["assets_cold_s"], "s", "(apt-get download included)")
    inproc, wall = bench_cached()
    numbers["assets_cached_s"] = inproc
    line("assets_cached_s", inproc, "s", f"(fresh process wall {wall:.2f} s)")

    kvm = run_smoke(base / "kvm", guests=2, tcg=False, hold=3.0)
    numbers["kvm_run"] = kvm
    l1 = kvm["l1-timing.json"]
    line(
        "l1_boot_to_command_s",
        l1.get("boot_to_command_s"),
        "s",
        f"(guest uptime at command {l1.get('guest_uptime_at_command_s')} s)",
    )
    line("device_setup_s", kvm["testenv-timing.json"].get("setup_s"), "s")
    smoke = kvm["smoke/smoke.json"]
    for g in smoke.get("guests", []):
        line(
            "l2_boot_kvm_s",
            g.get("boot_to_agent_s"),
            "s",
            f"({g['device']}, l2_kvm={smoke.get('l2_kvm')}, traffic ok={g.get('ok')})",
        )
    line(
        "vm_stack_rss_mb",
        l1.get("l1_peak_rss_mb"),
        "MB",
        f"(L1 QEMU VmHWM with {len(smoke.get('guests', []))} x 256 MB L2 up)",
    )
    line("l1_total_s", l1.get("total_s"), "s", "(whole KVM run)")
    if not args.no_tcg:
        # The real fallback: an L1 CPU without svm, so L1 has no KVM and L2 runs with TCG.
        os.environ["SERIESGATE_L1_CPU"] = "Haswell-noTSX"
        tcg = run_smoke(base / "tcg", guests=1, tcg=False, hold=0.0)
        del os.environ["SERIESGATE_L1_CPU"]
        numbers["tcg_run"] = tcg
        for g in tcg["smoke/smoke.json"].get("guests", []):
            line(
                "l2_boot_tcg_s",
                g.get("boot_to_agent_s"),
                "s",
                f"(TCG inside TCG, traffic ok={g.get('ok')})",
            )
    (base / "bench-testenv.json").write_text(json.dumps(numbers, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
