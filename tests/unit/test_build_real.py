"""The build stage on the default series, for real: fetch -> apply -> build (cached).

Slow the first time (a cold QEMU build, ~7 min on 2 cores); later runs take the
results from the binary store under ~/.cache/seriesgate and finish in seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

from seriesgate.build import BuildSet, build_all
from seriesgate.proc import kill_group

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> BuildSet:
    from seriesgate.series import fetch_series_set
    from seriesgate.tree import prepare_tree

    out = tmp_path_factory.mktemp("build-run")
    series_set = fetch_series_set(None, workdir=out / "series")
    tree = prepare_tree(series_set, base_spec=None, workdir=out)
    return build_all(tree, out_dir=out, each_patch=True, series_set=series_set)


def query_version(
    binary: Path, firmware: tuple[Path, ...], machine: list[str]
) -> dict[str, object]:
    """Start ``binary``, ask QMP query-version, quit; the process is always reaped."""
    with _qemu(binary, firmware, machine) as qmp:
        reply: dict[str, object] = qmp.cmd("query-version")
        qmp.cmd("quit")
    return reply


class _qemu:
    """QEMU with a QMP unix socket; killed (group) on any exit from the block."""

    def __init__(self, binary: Path, firmware: tuple[Path, ...], machine: list[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sg-qmp-"))
        self.sock = self.dir / "qmp.sock"
        self.argv = [
            str(binary),
            *(a for d in firmware for a in ("-L", str(d))),
            *machine,
            "-nodefaults",
            "-display",
            "none",
            "-qmp",
            f"unix:{self.sock},server=on,wait=off",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> QEMUMonitorProtocol:
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = (
                    self.proc.communicate()[0].decode(errors="replace") if self.proc.stdout else ""
                )
                raise AssertionError(f"QEMU did not open QMP: {' '.join(self.argv)}\n{out}")
            time.sleep(0.05)
        self.qmp = QEMUMonitorProtocol(str(self.sock))
        self.qmp.connect()
        return self.qmp

    def __exit__(self, *exc: object) -> None:
        try:
            self.qmp.close()
        except Exception:  # noqa: BLE001 - QEMU may already be gone after "quit"
            pass
        assert self.proc is not None
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_baseline_and_patched_binaries_answer_qmp(builds: BuildSet) -> None:
    for build in (builds.baseline, builds.patched):
        assert build.ok and build.binary is not None, build
        reply = query_version(build.binary, builds.firmware_dirs, ["-machine", "none"])
        qemu = reply["qemu"]
        assert isinstance(qemu, dict) and qemu["major"] >= 9, reply


@pytest.mark.parametrize("machine", ["pc", "q35"])
def test_patched_binary_boots_firmware_with_virtio_net(builds: BuildSet, machine: str) -> None:
    # BIOS, VGA BIOS and the virtio-net option ROM come from Debian's packages via -L: a
    # missing or unreadable ROM makes QEMU exit before QMP answers.
    assert builds.patched.binary is not None
    args = ["-machine", f"{machine},accel=tcg", "-vga", "std", "-device", "virtio-net-pci"]
    reply = query_version(builds.patched.binary, builds.firmware_dirs, args)
    assert "qemu" in reply


def test_series_as_posted_fails_with_the_compiler_error(builds: BuildSet) -> None:
    posted = builds.posted
    assert posted is not None and not posted.ok and posted.binary is None
    assert posted.errors, "a failed build must carry its first compiler errors"
    first = posted.errors[0]
    assert first.file == "hw/net/virtio-net.c" and first.line > 0
    assert "load_setup" in first.message or "incompatible pointer" in first.message
    assert posted.log.is_file() and "FAILED:" in posted.log.read_text()


def test_every_patch_table_and_checkpatch(builds: BuildSet) -> None:
    assert builds.each_patch, "every series commit gets a build"
    failing = [p for p in builds.each_patch if not p.builds]
    assert [p.index for p in failing] == [builds.each_patch[-1].index]
    assert all(p.binary is not None and p.binary.is_file() for p in builds.each_patch if p.builds)
    # Per-commit binaries are distinct files: a later checkout never overwrites them.
    binaries = [p.binary for p in builds.each_patch if p.binary]
    assert len(set(binaries)) == len(binaries)
    assert len(builds.checkpatch) >= len(builds.each_patch)
    assert all(c.errors >= 0 and c.warnings >= 0 for c in builds.checkpatch)


def test_build_json_records_configure_line_and_results(builds: BuildSet) -> None:
    assert builds.build_json is not None
    data = json.loads(builds.build_json.read_text())
    assert data["complete"] is True
    assert "--enable-vhost-vdpa" in data["configure_line"]
    assert set(data["builds"]) >= {"baseline", "posted", "patched"}
    assert data["builds"]["posted"]["ok"] is False and data["builds"]["posted"]["errors"]
    assert len(data["each_patch"]) == len(builds.each_patch)


def test_repaired_is_built_after_patched_and_recorded(builds: BuildSet) -> None:
    repaired = builds.repaired
    assert repaired is not None and repaired.ok and repaired.binary is not None, repaired
    assert repaired.commit != builds.patched.commit and repaired.binary != builds.patched.binary
    assert builds.build_json is not None
    data = json.loads(builds.build_json.read_text())
    assert data["builds"]["repaired"]["commit"] == repaired.commit


def incoming_migration(
    binary: Path, firmware: tuple[Path, ...], nic: list[str], work: Path
) -> tuple[str, int | None]:
    """Migrate a paused 64 MB q35 guest (TCG) between two ``binary`` QEMUs over a unix
    socket; (source's final migration status, destination's exit code or None if alive)."""
    sock = work / "mig.sock"
    machine = ["-machine", "q35,accel=tcg", "-m", "64", *nic]
    dst = _qemu(binary, firmware, [*machine, "-incoming", f"unix:{sock}"])
    src = _qemu(binary, firmware, [*machine, "-S"])
    with dst as dqmp, src as sqmp:
        sqmp.cmd("migrate", uri=f"unix:{sock}")
        status = "active"
        deadline = time.monotonic() + 60
        while status not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
            status = sqmp.cmd("query-migrate").get("status", "?")
        assert dst.proc is not None
        try:
            code = dst.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
            dqmp.cmd("quit")
        sqmp.cmd("quit")
    return status, code


@pytest.mark.parametrize(
    "nic",
    [
        ["-netdev", "hubport,id=n0,hubid=0", "-device", "virtio-net-pci,netdev=n0"],
        ["-device", "virtio-net-pci"],  # no peer: what repair 0002 is about
    ],
    ids=["hubport", "no-peer"],
)
def test_repaired_destination_survives_the_incoming_migration_patched_dies_of(
    builds: BuildSet, nic: list[str], tmp_path: Path
) -> None:
    # findings §1: patched's destination dies on SIGSEGV in virtio_net_load_setup on any
    # q35 machine, with or without vDPA; the repaired build must migrate.
    assert builds.patched.binary is not None and builds.repaired is not None
    assert builds.repaired.binary is not None
    status, code = incoming_migration(builds.patched.binary, builds.firmware_dirs, nic, tmp_path)
    assert (status, code) == ("failed", -11), "the posted series' crash is gone?"
    status, code = incoming_migration(builds.repaired.binary, builds.firmware_dirs, nic, tmp_path)
    assert (status, code) == ("completed", None)
