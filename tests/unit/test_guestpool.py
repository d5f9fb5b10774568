"""The guest pool's process handling, on real processes (``sleep`` stands in for nothing:
the pool only sees pids, exits and records, whatever the process is).

The job side runs in a child Python: it makes itself a child subreaper, which must not leak
into the pytest process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from seriesgate.functional import guestpool
from seriesgate.functional.guestpool import GuestPool, ParkedGuest
from seriesgate.functional.machine import AdoptedProcess


def record(pid: int, **kw: object) -> ParkedGuest:
    base: dict[str, object] = {
        "pid": pid,
        "binary": "/b/qemu-system-x86_64",
        "spec": {"mem_mb": 256, "svq": False, "kvm": True, "prealloc": False, "memlock": None},
        "device": "vdpa1",
        "device_index": 1,
        "mac": "52:54:00:12:34:56",
        "iface": "eth0",
        "name": "destination",
        "workdir": "/r/1-Test",
        "qmp_path": "/tmp/q.sock",
        "agent_socket": "/tmp/a.sock",
        "first_test": "A.test_a",
        "last_test": "A.test_a",
        "tests_served": 1,
        "booted_at": time.time(),
    }
    base.update(kw)
    return ParkedGuest(**base)  # type: ignore[arg-type]


def test_record_round_trips_through_json() -> None:
    rec = record(123)
    assert ParkedGuest.from_json(json.loads(json.dumps(rec.to_json()))) == rec


def test_claim_takes_the_wanted_live_guest_and_drops_dead_ones(tmp_path: Path) -> None:
    pool = GuestPool(tmp_path)
    live = subprocess.Popen(["sleep", "30"])  # noqa: S607
    dead = subprocess.Popen(["true"])  # noqa: S607
    dead.wait()
    try:
        pool.park(record(dead.pid))
        pool.park(record(live.pid, spec={"mem_mb": 1024}))
        assert pool.claim(lambda g: g.spec == {"mem_mb": 256}) is None
        assert not (tmp_path / f"{dead.pid}.json").exists()  # dead: dropped
        got = pool.claim(lambda g: g.spec == {"mem_mb": 1024})
        assert got is not None and got.pid == live.pid
        assert (tmp_path / f"{live.pid}.claimed").exists()
        assert pool.claim(lambda g: True) is None  # claimed once
    finally:
        live.kill()
        live.wait()


JOB_SIDE = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time
    from pathlib import Path
    from seriesgate.functional import guestpool
    from seriesgate.functional.machine import AdoptedProcess

    pool_dir = Path(sys.argv[1])
    out = {}
    # A "test": starts a guest in its own session (output elsewhere, as QEMU's goes to a
    # file), parks it and exits, orphaning it.
    TEST = (
        "import subprocess as s;"
        "p = s.Popen(['sleep', '60'], start_new_session=True, stdout=s.DEVNULL, stderr=s.DEVNULL);"
        "print(p.pid)"
    )

    def test():
        run = subprocess.run([sys.executable, "-c", TEST], capture_output=True, text=True,
                             check=True)
        return int(run.stdout)

    assert not guestpool.is_subreaper()
    assert guestpool.become_subreaper() and guestpool.is_subreaper()  # what jobs.main does
    with guestpool.job_pool(pool_dir):
        crashed = test()
        (pool_dir / f"{crashed}.json").write_text("{}")
        left = test()
        (pool_dir / f"{left}.claimed").write_text("{}")
        time.sleep(0.3)
        out["reparented"] = int(open(f"/proc/{crashed}/stat").read().rsplit(")", 1)[1].split()[1])
        out["me"] = os.getpid()
        # The next "test" adopted it; it dies on a signal: the exit status must come through.
        adopted = AdoptedProcess(crashed, pool_dir)
        out["poll_alive"] = adopted.poll()
        os.kill(crashed, signal.SIGSEGV)
        out["wait"] = adopted.wait(timeout=10)
        out["exit_file"] = (pool_dir / f"{crashed}.exit").read_text().strip()
        out["left"] = left
        stray = test()  # a test killed before its tearDown: its QEMU is in no record
        time.sleep(0.3)
        out["stray_reaped"] = (
            guestpool.reap_orphaned_qemus(timeout=10, prefix="sleep", keep=[left]) == [stray]
        )
        out["stray_alive"] = os.path.exists(f"/proc/{stray}")
    # The job ended: the guest still in the pool is killed and reaped.
    out["left_exit"] = (pool_dir / f"{left}.exit").read_text().strip()
    out["left_alive"] = os.path.exists(f"/proc/{left}")
    print(json.dumps(out))
    """
)


def test_job_pool_reaps_orphaned_guests_with_their_signal_and_kills_the_rest(
    tmp_path: Path,
) -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-c", JOB_SIDE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["reparented"] == out["me"]  # the orphan became the job driver's child
    assert out["poll_alive"] is None
    assert out["wait"] == -signal.SIGSEGV
    assert out["exit_file"] == str(-signal.SIGSEGV)
    assert out["left_exit"] == str(-signal.SIGKILL)
    assert out["left_alive"] is False
    assert out["stray_reaped"] is True
    assert out["stray_alive"] is False


def test_adopted_process_of_a_pid_nobody_reaps_for_us_is_gone_with_status_unknown(
    tmp_path: Path,
) -> None:
    child = subprocess.Popen(["sleep", "30"])  # noqa: S607
    adopted = AdoptedProcess(child.pid, tmp_path)
    assert adopted.poll() is None
    os.kill(child.pid, signal.SIGKILL)
    child.wait()  # reaped here, not by a pool reaper: no status is recorded
    assert adopted.wait(timeout=10) == guestpool.EXIT_UNKNOWN


def test_evict_kills_parked_guests_and_removes_their_records(tmp_path: Path) -> None:
    pool = GuestPool(tmp_path)
    guest = subprocess.Popen(["sleep", "30"], start_new_session=True)  # noqa: S607
    pool.park(record(guest.pid))

    # This process is the parent here: stand in for the reaper, as the job driver would.
    def reap() -> None:
        guest.wait()
        (tmp_path / f"{guest.pid}.exit").write_text(f"{guest.returncode}\n")

    import threading

    t = threading.Thread(target=reap)
    t.start()
    evicted = pool.evict(timeout=10)
    t.join()
    assert [g.pid for g in evicted] == [guest.pid]
    assert guest.returncode == -signal.SIGKILL
    assert not list(tmp_path.glob("*.json"))
