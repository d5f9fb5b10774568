"""``seriesgate testenv``: show what this machine offers, build the test VM, run commands in it.

seriesgate testenv --check                 table: modules, /sys/bus/vdpa, kvm, memlock, mode
seriesgate testenv [--env host|vm]         build/validate the assets, print the result
seriesgate testenv --smoke [--qemu BIN]    L2 on vhost-vdpa: frames loop back, counters agree
seriesgate testenv [--env vm] -- CMD ...   run CMD next to the devices; exit with its status
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from seriesgate.paths import results_root
from seriesgate.testenv.model import Mode

DEFAULT_L2_QEMU = "/usr/bin/qemu-system-x86_64"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "testenv",
        help="vdpa_sim devices for the tests: check, build the test VM, run commands in it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--check", action="store_true", help="print what is available and why not")
    p.add_argument(
        "--env", choices=[m.value for m in Mode], help="force host or vm mode (default: auto)"
    )
    p.add_argument("--smoke", action="store_true", help="run the smoke check in the environment")
    p.add_argument("--qemu", default=DEFAULT_L2_QEMU, help="QEMU for the smoke check's L2 guest")
    p.add_argument("--devices", type=int, default=2, help="how many vdpasim_net devices")
    p.add_argument(
        "--mac", action="append", default=[], help="MAC of device N (repeat; default all same)"
    )
    p.add_argument("--use-va", action="store_true", help="vdpa_sim use_va=1 (dead datapath)")
    p.add_argument("--results", type=Path, help="results directory (default: a new one)")
    p.add_argument("--timeout", type=float, default=900.0, help="hard timeout in seconds")
    p.add_argument("--rebuild", action="store_true", help="rebuild the test VM assets")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...: run CMD")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seriesgate.testenv import assets, check, prepare, run_in_env

    if args.check:
        probe = check.probe_host()
        print(check.format_table(check.check_table(probe)))
        return 0
    if args.rebuild:
        assets.ensure_assets(rebuild=True)
    env = prepare(Mode(args.env) if args.env else None)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if args.smoke:
        command = [sys.executable, "-m", "seriesgate.testenv.smoke", "--qemu", args.qemu]
    if not command:
        print(f"mode:    {env.mode} ({env.reason})")
        print(f"kernel:  {env.kernel_version}")
        print(f"L1:      {env.l1_accel} ({env.l1_accel_reason})")
        print(f"assets:  {env.assets_dir}")
        print(f"L2:      {env.l2_guest.kernel} + {env.l2_guest.initrd}")
        for note in env.manifest.get("test_device_patches", []):
            print(f"patched: {note} (the test device, not code under test)")
        return 0
    results = args.results or results_root() / time.strftime("testenv-%Y%m%d-%H%M%S")
    results = results.resolve()
    if args.smoke:
        command += ["--workdir", str(results / "smoke")]
    status = run_in_env(
        env,
        command,
        results_dir=results,
        devices=args.devices,
        timeout=args.timeout,
        macs=args.mac,
        use_va=args.use_va,
        echo=sys.stdout,
    )
    print(f"[testenv] exit status {status}; results in {results}", file=sys.stderr)
    return status
