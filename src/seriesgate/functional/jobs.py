"""Run the Avocado jobs for several builds in one go (inside the test environment).

``python -m seriesgate.functional.jobs --results-dir DIR --build NAME=QEMU [...]`` runs one
Avocado job per build (``DIR/<build>/job-*``), then re-runs each failed test once in a
second job (``DIR/<build>-retry/job-*``), and writes ``DIR/jobs.json`` saying which job
directory holds which build's first run and retry. The host side
(:mod:`seriesgate.functional.runner`) starts this once per L1 boot, since booting the test
VM is the costly part; the jobs run through the warm Avocado of
:mod:`seriesgate.functional.zygote` (``$SERIESGATE_WARM_AVOCADO=0``: without).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from seriesgate.functional import zygote
from seriesgate.paths import PROJECT_ROOT

FUNCTIONAL_DIR = PROJECT_ROOT / "tests" / "functional"
AVOCADO_CFG = PROJECT_ROOT / "avocado.cfg"
# Owned by the testenv stage: checks the environment itself, not a QEMU build.
NOT_BUILD_TESTS = ("test_testenv_smoke.py",)
FAILED = ("FAIL", "ERROR", "INTERRUPTED")
# "0": a fresh Avocado process per job and per test, no warm server (for comparing; zygote).
WARM_AVOCADO_ENV = "SERIESGATE_WARM_AVOCADO"


def test_files(directory: Path = FUNCTIONAL_DIR) -> list[Path]:
    """The functional test files that test a QEMU build."""
    return sorted(p for p in directory.glob("test_*.py") if p.name not in NOT_BUILD_TESTS)


def avocado_bin() -> Path:
    """Avocado from the same environment as this Python (the project's venv)."""
    return Path(sys.executable).parent / "avocado"


def newest_job(results: Path) -> Path | None:
    jobs = sorted(results.glob("job-*"), key=lambda p: p.stat().st_mtime)
    return jobs[-1] if jobs else None


def avocado_argv(
    *,
    qemu_bin: Path,
    results: Path,
    tests: Sequence[str],
    firmware_dirs: Sequence[Path],
    tags: Sequence[str] | None,
    params: Sequence[str] = (),
) -> list[str]:
    argv = [
        str(avocado_bin()),
        "--config", str(AVOCADO_CFG),
        "run",
        # With a tag filter, files without a matching test must not abort the job.
        "--ignore-missing-references",
        "--job-results-dir", str(results),
        "-p", f"qemu_bin={qemu_bin}",
        "-p", f"firmware_dirs={':'.join(str(d) for d in firmware_dirs)}",
    ]  # fmt: skip
    for p in params:
        argv += ["-p", p]
    for tag in tags or ():
        argv += ["-t", tag]
    return [*argv, "--", *tests]


def run_job(
    argv: list[str], results: Path, timeout: float, warm: zygote.WarmAvocado | None = None
) -> tuple[Path | None, int]:
    """Run one Avocado job; its job directory and exit code (output to a log file)."""
    if warm is not None:
        argv = [str(warm.avocado), *argv[1:]]
    results.mkdir(parents=True, exist_ok=True)
    log = results / "avocado.out"
    with log.open("ab") as out:
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
        try:
            proc = subprocess.run(  # noqa: S603 - argv list
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                cwd=PROJECT_ROOT,
                env=None if warm is None else warm.env,
            )
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = -1
    return newest_job(results), rc


def failed_test_refs(job: Path) -> list[str]:
    """Test references (``file:Class.method``) of the failed tests of a job."""
    data = json.loads((job / "results.json").read_text())
    refs = []
    for t in data.get("tests", []):
        if t.get("status") in FAILED:
            # Avocado matches the method part as a regex: anchor it, or retrying
            # test_traffic would also run test_traffic_svq.
            refs.append(str(t["name"]).split(";")[0] + "$")
    return refs


@contextlib.contextmanager
def warm_avocado(results_dir: Path) -> Iterator[zygote.WarmAvocado | None]:
    """The warm Avocado (:mod:`seriesgate.functional.zygote`), unless disabled; its server
    logs to ``results_dir/zygote.log``."""
    if os.environ.get(WARM_AVOCADO_ENV, "1") == "0":
        yield None
        return
    # Local temporary space: a unix socket cannot be bound on 9p (the results in L1).
    with (
        tempfile.TemporaryDirectory(prefix="sg-zygote-") as tmp,
        zygote.running(Path(tmp), log_path=results_dir / "zygote.log") as warm,
    ):
        yield warm


def run_builds(
    builds: dict[str, Path],
    results_dir: Path,
    *,
    firmware_dirs: Sequence[Path] = (),
    tags: Sequence[str] | None = None,
    params: Sequence[str] = (),
    retry: bool = True,
    job_timeout: float = 3600.0,
    tests: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run every build's job (and retries); return and write the jobs index.

    ``tests``: Avocado references to run (default: every build test file).
    """
    if not tests:
        tests = [str(p.relative_to(PROJECT_ROOT)) for p in test_files()]
    with warm_avocado(results_dir) as warm:
        index: dict[str, Any] = {"builds": {}, "warm_avocado": warm is not None}
        for name, qemu_bin in builds.items():
            start = time.monotonic()
            print(f"[functional] {name}: avocado job ...", file=sys.stderr, flush=True)
            argv = avocado_argv(
                qemu_bin=qemu_bin,
                results=results_dir / name,
                tests=tests,
                firmware_dirs=firmware_dirs,
                tags=tags,
                params=params,
            )
            job, rc = run_job(argv, results_dir / name, job_timeout, warm)
            entry: dict[str, Any] = {"qemu_bin": str(qemu_bin), "job": str(job) if job else None}
            entry["rc"] = rc
            index["builds"][name] = entry
            # Written before the retry too: if the test VM dies during the retry, the first
            # job's results still count (the host side reads this file after the VM is gone).
            (results_dir / "jobs.json").write_text(json.dumps(index, indent=2) + "\n")
            if job is not None and retry and (job / "results.json").exists():
                refs = failed_test_refs(job)
                if refs:
                    entry["retry_pending"] = True
                    (results_dir / "jobs.json").write_text(json.dumps(index, indent=2) + "\n")
                    print(
                        f"[functional] {name}: retrying {len(refs)} failed test(s) ...",
                        file=sys.stderr,
                    )
                    argv = avocado_argv(
                        qemu_bin=qemu_bin,
                        results=results_dir / f"{name}-retry",
                        tests=refs,
                        firmware_dirs=firmware_dirs,
                        tags=None,
                        params=params,
                    )
                    rjob, rrc = run_job(argv, results_dir / f"{name}-retry", job_timeout, warm)
                    entry["retry_job"] = str(rjob) if rjob else None
                    entry["retry_rc"] = rrc
                    entry.pop("retry_pending")
            entry["wall_s"] = round(time.monotonic() - start, 1)
            print(f"[functional] {name}: done ({entry['wall_s']} s)", file=sys.stderr, flush=True)
            index["builds"][name] = entry
            (results_dir / "jobs.json").write_text(json.dumps(index, indent=2) + "\n")
        return index


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seriesgate.functional.jobs")
    parser.add_argument("--results-dir", type=Path, required=True)
    parser.add_argument("--build", action="append", default=[], metavar="NAME=QEMU")
    parser.add_argument("--firmware-dir", action="append", default=[], type=Path)
    parser.add_argument("--tags", action="append", default=None)
    parser.add_argument("-p", dest="params", action="append", default=[])
    parser.add_argument("--no-retry", action="store_true")
    parser.add_argument("--test", action="append", default=None, help="Avocado test reference")
    args = parser.parse_args(argv)
    builds = {}
    for spec in args.build:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"--build wants NAME=PATH, got {spec!r}")
        builds[name] = Path(path)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    index = run_builds(
        builds,
        args.results_dir,
        firmware_dirs=args.firmware_dir,
        tags=args.tags,
        params=args.params,
        retry=not args.no_retry,
        tests=args.test,
    )
    # The gate judges the tests' results; this exit code only says the jobs ran.
    return 0 if all(e.get("job") for e in index["builds"].values()) else 3


if __name__ == "__main__":
    sys.exit(main())
