"""``seriesgate bench``: migration downtime, baseline versus patched (and repaired), per guest size.

The builds: baseline and patched, and ``repaired`` (series + fixups + our repairs of the
series' own defects) when the run that built them had repairs: the posted series may crash
every incoming migration, and then only the repaired build shows what the series changes.
For each guest size (default 256, 1024, 2048 MiB) and each build, ``--runs`` migrations of an
idle L2 guest with a frame stream running, inside the test environment (two vdpa_sim devices,
same MAC). Per run it records, from QMP and the destination trace:

- ``downtime_ms``, ``total_ms``: ``query-migrate`` on the source;
- ``stop_to_resume_ms``: source ``STOP`` → destination ``RESUME`` (QMP event timestamps);
- ``guest_pause_ms``: source ``STOP`` → destination ``MIGRATION completed`` (the vCPUs resume
  at the end of ``vm_start``, after vhost start: the pause the guest really has);
- ``maps_in_downtime``: guest-memory ``vhost_vdpa_dma_map`` inside [STOP, completed].

It writes ``bench.json`` (a list of those rows; the report's bench plot reads it) and prints
the median and spread per build and size. Builds are interleaved run by run so that noise of
the shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seriesgate import progress
from seriesgate.errors import EXIT_PASS, InfraError, InputError
from seriesgate.paths import results_root

DEFAULT_SIZES = (256, 1024, 2048)
METRICS = (
    "downtime_ms",
    "total_ms",
    "stop_to_resume_ms",
    "guest_pause_ms",
    "maps_in_downtime",
)
INNER_CONFIG_ENV = "SERIESGATE_BENCH_CONFIG"
# In this order, run by run; the last one only where the series has repairs.
BUILDS = ("baseline", "patched", "repaired")
OPTIONAL_BUILD = "repaired"


def l1_memory_mb(sizes: Sequence[int]) -> int:
    """L1 memory for two pinned guests of the largest size plus ~768 MiB for L1 itself."""
    return max(1024, 2 * max(sizes) + 768)


def measure_once(
    binary: Path,
    firmware: Sequence[Path],
    mem_mb: int,
    workdir: Path,
) -> dict[str, Any]:
    """One migration of a ``mem_mb`` guest with ``binary`` on both sides; its numbers."""
    from seriesgate.functional.migration import GuestSpec, launch_l2, migrate
    from seriesgate.testenv.environment import VdpaEnvironment

    env = VdpaEnvironment.from_env()
    if len(env.devices) < 2:
        raise InfraError("the bench needs two vdpa devices with one MAC")
    dev_a = env.recreate(env.devices[0].name)
    dev_b = env.recreate(env.devices[1].name)
    spec = GuestSpec(mem_mb=mem_mb, kvm=env.l2_kvm)
    guests = []
    try:
        src = launch_l2(binary, workdir, "source", env, dev_a, spec, incoming=False,
                        firmware_dirs=firmware)  # fmt: skip
        guests.append(src)
        src.run(f"sgpkt stream {src.iface} 2000 /root/stream.txt </dev/null >/dev/null 2>&1 &")
        dst = launch_l2(binary, workdir, "destination", env, dev_b, spec, incoming=True,
                        firmware_dirs=firmware)  # fmt: skip
        guests.append(dst)
        uri = f"unix:/tmp/sg-bench-{os.getpid()}.sock"
        rec = migrate(src.machine, dst.machine, uri, timeout=300)
        rec.write(workdir / "migration.json")
        if rec.status != "completed":
            if not dst.machine.is_running():
                # The source only saw a broken pipe: name the destination's death instead.
                time.sleep(0.5)  # let the crash record (signal, backtrace) be written
                dst.machine.check_alive("during the incoming migration")
            raise InfraError(f"bench migration ended {rec.status}: {rec.error}")
        dst.machine.check_vhost()
        summary = rec.timeline().summary()
        return {
            "downtime_ms": rec.downtime_ms,
            "total_ms": rec.total_ms,
            "stop_to_resume_ms": summary["stop_to_resume_ms"],
            "guest_pause_ms": summary["guest_pause_ms"],
            "maps_in_downtime": summary["maps_in_downtime"],
            "guest_maps": summary["guest_maps"],
            "maps_per_phase": summary["maps_per_phase"],
            "map_busy_ms": summary["map_busy_ms"],
            "resume_to_device_ready_ms": summary["resume_to_device_ready_ms"],
        }
    finally:
        for g in guests:
            g.agent.close()
            g.machine.shutdown()


def run_inner(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Inside the test environment: every (size, run, build); rows appended to bench.json."""
    out = Path(config["out"])
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    firmware = [Path(p) for p in config.get("firmware", [])]
    for mem in config["sizes"]:
        for run in range(1, int(config["runs"]) + 1):
            for build, binary in config["binaries"].items():
                workdir = out / "runs" / f"{build}-{mem}M-{run}"
                if workdir.exists():
                    shutil.rmtree(workdir)
                with progress.step("bench", f"{build} {mem} MiB run {run}"):
                    start = time.monotonic()
                    try:
                        row = measure_once(Path(binary), firmware, mem, workdir)
                    except Exception as exc:  # noqa: BLE001 - a failed run is a row, not a stop
                        row = {m: None for m in METRICS} | {"error": str(exc).splitlines()[0]}
                rows.append({"build": build, "guest_mem_mb": mem, "run": run, **row,
                             "wall_s": round(time.monotonic() - start, 1)})  # fmt: skip
                (out / "bench.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median, min and max of every metric per (build, size), rounded for printing.

    The statistics are the report's (:func:`seriesgate.report.bench_plot.bench_stats`), so
    the printed table and the report's cannot disagree.
    """
    from seriesgate.report.bench_plot import bench_stats

    out = []
    for stats in bench_stats(list(rows)):
        entry: dict[str, Any] = {
            "build": stats["build"],
            "guest_mem_mb": stats["guest_mem_mb"],
            "runs": stats["runs"],
        }
        for metric in METRICS:
            if metric in stats:
                entry[metric] = {k: round(v, 1) for k, v in stats[metric].items()}
        entry["failed_runs"] = stats["failed"]
        out.append(entry)
    return out


def format_summary(summary: Sequence[dict[str, Any]]) -> str:
    """A plain table: median [min-max] per metric."""
    head = f"{'build':<9} {'MiB':>5} " + " ".join(f"{m:>22}" for m in METRICS)
    lines = [head]
    for e in summary:
        cells = []
        for m in METRICS:
            s = e.get(m)
            cells.append(f"{s['median']:>8} [{s['min']}-{s['max']}]" if s else "-")
        lines.append(
            f"{e['build']:<9} {e['guest_mem_mb']:>5} " + " ".join(f"{c:>22}" for c in cells)
        )
    return "\n".join(lines)


def newest_build_json(root: Path | None = None) -> dict[str, Any]:
    """The newest complete ``build.json`` of an earlier run under the results root ({} if none)."""
    root = root or results_root()
    if not root.is_dir():
        return {}
    for path in sorted(root.glob("*/**/build.json"), key=lambda p: p.stat().st_mtime)[::-1]:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("complete") and data.get("builds"):
            return data
    return {}


def resolve_builds(
    args: argparse.Namespace, found: dict[str, Any] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The binaries to measure (flags first, else the newest run's ``build.json``: ``found``)
    and the -L directories.

    Baseline and patched are required; repaired is measured when given or when the newest
    run built it (``--no-repaired`` leaves it out).
    """
    found = newest_build_json() if found is None else found
    binaries: dict[str, str] = {}
    for build in BUILDS:
        given = getattr(args, build)
        if given is None:
            given = (found.get("builds", {}).get(build) or {}).get("binary")
        optional = build == OPTIONAL_BUILD
        if optional and (args.no_repaired or given is None):
            continue
        if given is None or not os.access(given, os.X_OK):
            raise InputError(
                f"no {build} QEMU binary ({given or 'none found in earlier runs'})",
                hint=f"run `seriesgate run` first or pass --{build} PATH",
            )
        binaries[build] = str(given)
    firmware = [str(p) for p in args.firmware] or [str(p) for p in found.get("firmware_dirs", [])]
    return binaries, firmware


def _cmd_bench(args: argparse.Namespace) -> int:
    sizes = tuple(args.sizes)
    out = args.out or results_root() / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    binaries, firmware = resolve_builds(args)
    config = {
        "binaries": binaries,
        "firmware": firmware,
        "sizes": list(sizes),
        "runs": args.runs,
        "out": str(out.resolve()),
    }
    (out / "bench-config.json").write_text(json.dumps(config, indent=1) + "\n")
    progress.say("bench", f"results in {out}; builds: {', '.join(binaries)}")
    if os.environ.get("SERIESGATE_TESTENV"):
        rows = run_inner(config)  # already inside the test environment
    else:
        rows = _run_in_testenv(out / "bench-config.json", sizes)
    summary = summarize(rows)
    (out / "bench-summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(format_summary(summary))
    from seriesgate.report.bench_plot import plot_bench

    plot = plot_bench(rows, out / "bench.png")
    print(f"bench.json: {out / 'bench.json'}; plot: {plot}")
    print(
        f"into a run's report: seriesgate report --from RUN/summary.json --bench {out}/bench.json"
    )
    return EXIT_PASS


def _run_in_testenv(config_path: Path, sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Run :func:`run_inner` inside the test VM (or host environment) with two devices."""
    from seriesgate.testenv import prepare, run_in_env

    env = prepare()
    argv = [sys.executable, "-m", "seriesgate.bench", "--inner", str(config_path)]
    memory = l1_memory_mb(sizes)
    progress.say("bench", f"test environment: {env.mode}, L1 memory {memory} MiB")
    run_in_env(
        env,
        argv,
        results_dir=config_path.parent,
        devices=2,
        timeout=3 * 3600.0,
        memory_mb=memory,
        echo=sys.stderr,
    )
    bench = config_path.parent / "bench.json"
    if not bench.exists():
        raise InfraError(f"the bench wrote no {bench}", hint="see the test VM console log")
    rows: list[dict[str, Any]] = json.loads(bench.read_text())
    return rows


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="migration downtime benchmark: baseline, patched (and repaired), per guest size",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument(
        "--baseline", type=Path, help="baseline qemu-system-x86_64 (default: newest run)"
    )
    p.add_argument("--patched", type=Path, help="patched qemu-system-x86_64 (default: newest run)")
    p.add_argument(
        "--repaired",
        type=Path,
        help="repaired qemu-system-x86_64: series + our repairs (default: newest run's, if any)",
    )
    p.add_argument("--no-repaired", action="store_true", help="measure baseline and patched only")
    p.add_argument("--firmware", type=Path, action="append", default=[], help="-L directory")
    p.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), metavar="MIB")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, help="results directory (default: results/bench-<time>)")
    p.set_defaults(func=_cmd_bench)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m seriesgate.bench --inner CONFIG``: the part that runs in the test env."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "--inner":
        print("usage: python -m seriesgate.bench --inner CONFIG.json", file=sys.stderr)
        return 2
    run_inner(json.loads(Path(args[1]).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
