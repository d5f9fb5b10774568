"""The warm Avocado server (seriesgate.functional.zygote), with real Avocado jobs on the host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seriesgate.functional import zygote
from seriesgate.paths import PROJECT_ROOT

SAMPLE = "tests/unit/data/zygote/sample_tests.py"
AVOCADO = Path(sys.executable).parent / "avocado"


def _job(avocado: Path, results: Path, tests: list[str], env: dict[str, str] | None) -> dict:
    proc = subprocess.run(
        [str(avocado), "--config", str(PROJECT_ROOT / "avocado.cfg"), "run"]
        + ["--job-results-dir", str(results), "--", *tests],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    (job,) = results.glob("job-*")
    data = json.loads((job / "results.json").read_text())
    return {
        "rc": proc.returncode,
        **{t["name"].rsplit(".", 1)[-1]: t["status"] for t in data["tests"]},
    }


def test_job_through_the_server_matches_the_real_avocado(tmp_path: Path) -> None:
    tests = [f"{SAMPLE}:Sample.test_pass", f"{SAMPLE}:Sample.test_fail"]
    cold = _job(AVOCADO, tmp_path / "cold", tests, None)
    with zygote.running(tmp_path / "z") as warm:
        hot = _job(warm.avocado, tmp_path / "warm", tests, warm.env)
    assert cold == {"rc": 1, "test_pass": "PASS", "test_fail": "FAIL"}
    assert hot == cold
    log = (tmp_path / "z" / "server.log").read_text()
    assert "preloaded in" in log


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_killing_the_client_kills_the_test(tmp_path: Path) -> None:
    """What a timeout in jobs.py does (SIGKILL to avocado): the test under it must not survive."""
    pidfile = tmp_path / "pid"
    with zygote.running(tmp_path / "z") as warm:
        job = subprocess.Popen(
            [str(warm.avocado), "--config", str(PROJECT_ROOT / "avocado.cfg"), "run"]
            + ["--job-results-dir", str(tmp_path / "r"), "--", f"{SAMPLE}:Sample.test_sleep"],
            cwd=PROJECT_ROOT,
            env={**warm.env, "SG_SAMPLE_PIDFILE": str(pidfile)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while not pidfile.exists() or not pidfile.read_text():
                assert time.monotonic() < deadline, "the sample test did not start"
                time.sleep(0.1)
            test_pid = int(pidfile.read_text())
            job.send_signal(signal.SIGKILL)
            job.wait(timeout=10)
            assert _gone(test_pid, 10), f"test process {test_pid} outlived its killed job"
        finally:
            job.kill()
            job.wait()


def test_client_without_server_runs_the_real_runner(tmp_path: Path) -> None:
    clients = zygote.write_clients(tmp_path / "bin", tmp_path / "zygote.sock", server_pid=0)
    out = subprocess.run(
        [str(clients[zygote.RUNNER_NAME]), "capabilities"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "avocado-instrumented" in json.loads(out.stdout)["runnables"]


@pytest.mark.parametrize("entry", sorted(zygote.ENTRIES))
def test_real_console_scripts_exist(entry: str) -> None:
    """The fallback names a script of this venv (or python -m)."""
    command = zygote.real_command(entry)
    assert Path(command[0]).exists()


def test_job_timeout_reaches_the_test_through_the_client(tmp_path: Path) -> None:
    """Avocado ends a task on --job-timeout with SIGTERM to the runner it started (our client):
    the client relays it, so the test is interrupted and the job ends on time."""
    with zygote.running(tmp_path / "z") as warm:
        start = time.monotonic()
        proc = subprocess.run(
            [str(warm.avocado), "--config", str(PROJECT_ROOT / "avocado.cfg"), "run"]
            + ["--job-timeout", "4", "--job-results-dir", str(tmp_path / "r")]
            + ["--", f"{SAMPLE}:Sample.test_sleep"],
            cwd=PROJECT_ROOT,
            env={**warm.env, "SG_SAMPLE_PIDFILE": str(tmp_path / "pid")},
            capture_output=True,
            text=True,
            timeout=90,
        )
        elapsed = time.monotonic() - start
    (job,) = (tmp_path / "r").glob("job-*")
    (test,) = json.loads((job / "results.json").read_text())["tests"]
    assert test["status"] == "INTERRUPTED", proc.stdout[-2000:]
    assert proc.returncode != 0 and elapsed < 60
    assert _gone(int((tmp_path / "pid").read_text()), 10)
