"""testenv pure parts on real captured data: vdpa -j parsing, apt resolution, module order,
mode selection, L1 console markers, the initramfs writer."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from seriesgate.errors import InfraError
from seriesgate.testenv import assets, check, vdpa, vm
from seriesgate.testenv.environment import VdpaEnvironment
from seriesgate.testenv.initramfs import Initramfs
from seriesgate.testenv.inside import RunSpec, device_specs
from seriesgate.testenv.model import DEFAULT_MAC, GuestImage, Mode

DATA = Path(__file__).parent / "data" / "testenv"


def read(name: str) -> str:
    return (DATA / name).read_text()


# -- vdpa -j -------------------------------------------------------------------------------


def test_dev_show_real_output() -> None:
    devs = vdpa.parse_dev_show(read("vdpa-dev-show.json"))
    assert sorted(devs) == ["vdpa0", "vdpa1"]
    assert devs["vdpa0"]["mgmtdev"] == "vdpasim_net"
    assert devs["vdpa0"]["max_vqs"] == 3
    assert devs["vdpa1"]["max_vq_size"] == 1024  # our test device's queue-max fix


def test_mgmtdev_show_real_output() -> None:
    mgmt = vdpa.parse_mgmtdev_show(read("vdpa-mgmtdev-show.json"))
    assert "CTRL_MAC_ADDR" in mgmt["vdpasim_net"]["dev_features"]


def test_config_show_strips_trailing_space_keys() -> None:
    config = vdpa.parse_config_show(read("vdpa-dev-config-show-vdpa0.json"), "vdpa0")
    assert config["mac"] == "52:54:00:12:34:56"
    assert config["link"] == "up"  # iproute2 prints "link " with a trailing space
    assert config["link_announce"] is False
    with pytest.raises(InfraError, match="no entry for vdpa9"):
        vdpa.parse_config_show(read("vdpa-dev-config-show-vdpa0.json"), "vdpa9")


def test_vstats_name_value_pairs_are_kept() -> None:
    text = '{"vstats":{"vdpa0":{"queue_type":"rx","name":"a","value":1,"name":"b","value":2}}}'
    assert vdpa.parse_vstats(text, "vdpa0") == {"queue_type": "rx", "a": 1, "b": 2}


def test_config_show_with_negotiated_features() -> None:
    config = vdpa.parse_config_show(read("vdpa-dev-config-show-vdpa0-negotiated.json"), "vdpa0")
    assert "CTRL_MAC_ADDR" in config["negotiated_features"]


def test_vstats_real_samples() -> None:
    for name in sorted(p.name for p in DATA.glob("vdpa-vstats-*.json")):
        stats = vdpa.parse_vstats(read(name), "vdpa0")
        assert "queue_type" in stats
        packets = [k for k in stats if k.endswith(" packets")]  # vdpa_sim_net's vendor names
        assert len(packets) == 1 and isinstance(stats[packets[0]], int)
    assert list(DATA.glob("vdpa-vstats-*.json")), "captured vstats samples are missing"


def test_datapath_counters_from_real_vstats() -> None:
    rx = vdpa.parse_vstats(read("vdpa-vstats-vdpa0-qidx0.json"), "vdpa0")
    tx = vdpa.parse_vstats(read("vdpa-vstats-vdpa0-qidx1.json"), "vdpa0")
    counters = vdpa.datapath_counters(rx, tx)
    # after the smoke check's 200 looped-back frames (64 B + 12 B virtio-net header)
    assert counters["rx_packets"] == counters["tx_packets"] == 200
    assert counters["rx_bytes"] == counters["tx_bytes"] == 200 * 76
    assert counters["rx_drops"] == counters["tx_drops"] == 0


def test_unreadable_vdpa_output_is_one_clear_error() -> None:
    with pytest.raises(InfraError, match="unreadable `vdpa -j dev show`"):
        vdpa.parse_dev_show("{not json")


def test_chardev_from_sysfs(tmp_path: Path) -> None:
    (tmp_path / "vdpa1" / "vhost-vdpa-1").mkdir(parents=True)
    assert vdpa.chardev_of("vdpa1", tmp_path) == Path("/dev/vhost-vdpa-1")
    (tmp_path / "vdpa2").mkdir()
    with pytest.raises(InfraError, match="vhost_vdpa"):
        vdpa.chardev_of("vdpa2", tmp_path)


# -- assets: apt resolution and modules ---------------------------------------------------------


def test_madison_and_abi() -> None:
    rows = assets.parse_madison(read("apt-madison-linux-source-6.12.txt"))
    sources = [v for p, v in rows if p == "linux-source-6.12"]
    assert sources[0] == "6.12.117-1~deb12u1"  # apt lists the newest first
    assert ("linux", "6.12.117-1") in rows  # deb-src lines are there and must be skipped
    assert assets.abi_of(sources[0]) == "6.12.117+deb12"
    parts = dict(assets.parse_madison(read("apt-madison-6.12.117-parts.txt")))
    pin = assets.KernelPin("6.12.117+deb12", "6.12.117-1~deb12u1")
    assert all(parts[p] == pin.version for p in pin.packages if p != "linux-source-6.12")
    with pytest.raises(InfraError):
        assets.abi_of("6.12.117-1")


def test_kernel_not_found_names_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        ("linux-source-6.12",): read("apt-madison-linux-source-6.12.txt"),
    }

    def fake_madison(*packages: str) -> list[tuple[str, str]]:
        return assets.parse_madison(answers.get(packages, ""))

    monkeypatch.setattr(assets, "_madison", fake_madison)
    with pytest.raises(InfraError) as err:
        assets.resolve_kernel("6.12.999+deb12")
    assert "linux-image-6.12.999+deb12-amd64-unsigned" in str(err.value)
    with pytest.raises(InfraError) as err2:  # parts missing for every source version
        assets.resolve_kernel()
    assert "linux-image-6.12.117+deb12-amd64-unsigned=6.12.117-1~deb12u1" in str(err2.value)


def test_load_order_puts_dependencies_first() -> None:
    deps = assets.parse_modules_dep(read("modules.dep.excerpt"))
    order = [assets.module_name(p) for p in assets.load_order(deps, assets.L1_MODULES)]
    assert order == ["netfs", "9pnet", "9pnet_virtio", "9p", "overlay"]
    l2 = [assets.module_name(p) for p in assets.load_order(deps, ["virtio_net"])]
    assert l2 == ["failover", "net_failover", "virtio_net"]
    sim = [assets.module_name(p) for p in assets.load_order(deps, ["vdpa_sim_net"])]
    assert sim.index("vringh") < sim.index("vdpa_sim") < sim.index("vdpa_sim_net")
    assert assets.module_name("kernel/arch/x86/kvm/kvm-amd.ko.xz") == "kvm_amd"
    with pytest.raises(InfraError, match="vdpa_sim_blk"):
        assets.load_order(deps, ["vdpa_sim_blk"])


def test_initramfs_is_a_valid_newc_archive(tmp_path: Path) -> None:
    img = Initramfs()
    img.add_char_device("dev/console", 5, 1)
    img.add_file("init", b"#!/bin/sh\n", 0o755)
    img.add_symlink("bin/sh", "busybox")
    img.add_file("lib/modules/x.ko", b"\x7fELF" + b"\0" * 7)
    out = tmp_path / "i.cpio"
    img.write(out)
    if shutil.which("cpio") is None:
        pytest.fail("cpio missing: ci/setup-host.sh installs it")
    listing = subprocess.run(
        ["cpio", "-itv"], input=out.read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    names = [
        line.split()[-1] if "->" not in line else line.split()[-3] for line in listing.splitlines()
    ]
    assert names == [
        "dev",
        "dev/console",
        "init",
        "bin",
        "bin/sh",
        "lib",
        "lib/modules",
        "lib/modules/x.ko",
    ]
    assert listing.splitlines()[1].startswith("crw")


# -- mode selection --------------------------------------------------------------------------

THIS_HOST = check.HostProbe(  # what probe_host() reported on the project machine
    kernel="6.18.44-fc-v595",
    modules_disabled=True,
    modules_loaded={"vhost_vdpa": False, "vdpa_sim": False, "vdpa_sim_net": False},
    modules_available={"vhost_vdpa": False, "vdpa_sim": False, "vdpa_sim_net": False},
    sys_bus_vdpa=False,
    vdpasim_net_mgmtdev=False,
    vhost_vdpa_devices=[],
    vdpa_tool=True,
    root=True,
    kvm="usable",
    memlock="8388608",
    l1_qemu=True,
)


def test_mode_vm_when_modules_cannot_load() -> None:
    mode, why = check.choose_mode(THIS_HOST)
    assert mode is Mode.VM
    assert "cannot load modules" in why


def test_mode_host_on_a_workstation_kernel() -> None:
    fedora = dataclasses.replace(
        THIS_HOST,
        kernel="6.11.4-301.fc41.x86_64",
        modules_disabled=False,
        modules_available=dict.fromkeys(check.NEEDED_MODULES, True),
    )
    assert check.choose_mode(fedora)[0] is Mode.HOST
    loaded = dataclasses.replace(
        THIS_HOST,
        modules_loaded=dict.fromkeys(check.NEEDED_MODULES, True),
        vdpasim_net_mgmtdev=True,
    )
    assert check.choose_mode(loaded)[0] is Mode.HOST  # even with module loading now off
    no_tool = dataclasses.replace(fedora, vdpa_tool=False)
    assert check.choose_mode(no_tool) == (
        Mode.VM,
        "the iproute2 `vdpa` tool is missing: tests run in the L1 test VM",
    )
    debian61 = dataclasses.replace(
        fedora, modules_available={"vhost_vdpa": True, "vdpa_sim": False, "vdpa_sim_net": False}
    )
    mode, why = check.choose_mode(debian61)
    assert mode is Mode.VM and "no vdpa_sim, vdpa_sim_net module" in why


def test_check_table_names_the_chosen_mode() -> None:
    rows = check.check_table(THIS_HOST)
    assert rows[-1][:2] == ("chosen mode", "vm")
    text = check.format_table(rows)
    assert "memlock limit" in text and "/dev/vhost-vdpa-*" in text


# -- L1 console and the run spec -----------------------------------------------------------------


def test_console_markers_of_a_real_l1_run() -> None:
    text = read("l1-console-smoke.log")
    nonce = text.split()[1]
    status = vm.parse_console(text, nonce)
    assert status.started and status.exit_status == 0 and status.setup_failure is None
    assert status.start_uptime is not None and status.start_uptime > 0
    other = vm.parse_console(text, "000000000000")  # markers of another run do not count
    assert other.exit_status is None and not other.started


def test_console_of_an_l1_killed_before_the_end() -> None:
    text = read("l1-console-avocado.log")  # a run its caller killed: no SGL1-EXIT
    status = vm.parse_console(text, "fa13aff41a65")
    assert status.started and status.exit_status is None and status.start_uptime == 5.47


def test_console_of_a_wedged_l1_names_the_lockup() -> None:
    # A CI run: khugepaged stuck in L1, the console kept printing soft-lockup reports.
    text = read("l1-console-soft-lockup.log")
    nonce = text.split()[1]
    status = vm.parse_console(text, nonce)
    assert status.started and status.exit_status is None
    assert status.wedged is not None
    assert "stuck for 52s" in status.wedged and "khugepaged" in status.wedged
    # The first report (26 s) is below the threshold: a slow vCPU alone is not fatal.
    first = text[: text.index("stuck for 26s!") + 40]
    assert vm.parse_console(first.rsplit("\n", 1)[0] + "\n", nonce).wedged is None


def test_console_setup_failure_line() -> None:
    text = (
        "SGL1-START ab 2.0\n"
        "SGL1-SETUP-FAILED: modules refused: modprobe vdpa_sim\n"
        "SGL1-EXIT ab 125\n"
    )
    status = vm.parse_console(text, "ab")
    assert status.setup_failure == "modules refused: modprobe vdpa_sim"
    assert status.exit_status == 125


def test_l1_command_shape(tmp_path: Path) -> None:
    argv = vm.l1_command(Path("/k"), Path("/i"), "x", tmp_path / "c.log", tmp_path, 1536)
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi,tb-size=256"
    assert argv[argv.index("-m") + 1] == "1536M"
    assert "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap" in argv
    assert f"local,id=results,path={tmp_path},security_model=none,multidevs=remap" in argv


def test_run_spec_and_environment_round_trip(tmp_path: Path) -> None:
    specs = device_specs(3, ["52:54:00:00:00:01"])
    assert [d.mac for d in specs] == ["52:54:00:00:00:01", DEFAULT_MAC, DEFAULT_MAC]
    guest = GuestImage(Path("/k"), Path("/i"), "console=ttyS0")
    spec = RunSpec(["true"], "/", str(tmp_path), Mode.VM, "6.12", guest, specs, "/m", True)
    assert RunSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    env_file = DATA / "testenv.json"
    env = VdpaEnvironment.from_file(env_file)
    assert [d.name for d in env.devices] == ["vdpa0", "vdpa1"]
    assert env.devices[0].mac == env.devices[1].mac  # a migration pair shares the MAC
    env.write(tmp_path / "again.json")
    assert VdpaEnvironment.from_file(tmp_path / "again.json") == env


def test_from_env_without_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERIESGATE_TESTENV", raising=False)
    with pytest.raises(InfraError, match="SERIESGATE_TESTENV is not set"):
        VdpaEnvironment.from_env()


def test_l1_lock_lets_a_waiter_in_before_the_holder_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    monkeypatch.setenv("SERIESGATE_CACHE", str(tmp_path))
    order: list[str] = []
    a_in = threading.Event()

    def holder() -> None:
        with assets.l1_lock("test"):
            a_in.set()
            time.sleep(0.4)  # meanwhile the other thread queues up
        with assets.l1_lock("test"):  # a loop of runs: straight back to the lock
            order.append("A again")

    def waiter() -> None:
        a_in.wait()
        with assets.l1_lock("test"):
            order.append("B")
            time.sleep(0.1)

    threads = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["B", "A again"]


def test_console_reason_names_the_l1_kernel_panic() -> None:
    # Captured from a real L1 crash (nested KVM under TCG, run of 2026-11-26).
    from seriesgate.testenv.vm import console_reason

    tail = (
        "[ 1254.767136] Kernel panic - not syncing: corrupted stack end detected inside scheduler\n"
        "[ 1254.780815]  ? kvm_arch_vcpu_ioctl_run+0x262/0x1760 [kvm]\n"
    )
    assert console_reason(tail) == (
        "Kernel panic - not syncing: corrupted stack end detected inside scheduler"
    )
    assert console_reason("[ 1.0] all quiet\n") == ""


def test_progress_watch_sees_new_writes_and_measures_silence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vm, "_IDLE_CHECK_EVERY", 0.0)
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "debug.log").write_text("x")
    watch = vm.ProgressWatch(tmp_path)
    assert watch.idle_for() < 1.0
    assert watch.last_path == "job/debug.log"
    watch.last_change -= 700.0  # 700 s without a write
    assert watch.idle_for() > vm.L1_IDLE_TIMEOUT
    later = tmp_path / "avocado.out"
    later.write_text("[functional] baseline: retrying 1 failed test(s) ...\n")
    future = os.stat(tmp_path / "job" / "debug.log").st_mtime + 5
    os.utime(later, (future, future))
    assert watch.idle_for() < 1.0
    assert watch.last_path == "avocado.out"


@pytest.mark.parametrize(
    ("where", "console", "text"),
    [
        # A wedged L1 kernel keeps printing soft-lockup reports: that is not progress.
        ("", "l1-console.log", "watchdog: BUG: soft lockup - CPU#1 stuck for 52s!\n"),
        # A hung migration test (bench-l1 round 15): the source guest printed virtio_net TX
        # timeouts to its console for 16 min while nothing else was written.
        (
            "baseline/job-1/test-results/1-MigrationAfterIntrospection",
            "source.console.log",
            "virtio_net virtio0 eth0: NETDEV WATCHDOG: transmit queue 0 timed out\n",
        ),
        # L1's heartbeat says L1 lives, not that a test moves on.
        ("", "l1-heartbeat", "370.52\n"),
    ],
)
def test_progress_watch_ignores_consoles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, console: str, text: str
) -> None:
    monkeypatch.setattr(vm, "_IDLE_CHECK_EVERY", 0.0)
    test_dir = tmp_path / where
    test_dir.mkdir(parents=True, exist_ok=True)
    (test_dir / "debug.log").write_text("x")
    watch = vm.ProgressWatch(tmp_path, ignore=vm.NOT_PROGRESS_FILES)
    watch.idle_for()
    watch.last_change -= 700.0
    (test_dir / console).write_text(text)
    future = os.stat(test_dir / "debug.log").st_mtime + 5
    os.utime(test_dir / console, (future, future))
    assert watch.idle_for() > vm.L1_IDLE_TIMEOUT
    # What the test itself writes (its agent transcript) is progress.
    (test_dir / "source.agent.log").write_text("> ip -j link\n")
    os.utime(test_dir / "source.agent.log", (future + 1, future + 1))
    assert watch.idle_for() < 1.0


def test_console_of_an_l1_with_a_stalled_vcpu_names_the_rcu_stall() -> None:
    # Cold run of 2026-12-07: L1's vCPU 0 stopped 130 s after boot; the heartbeat went on.
    text = read("l1-console-rcu-stall.log")
    status = vm.parse_console(text, text.split()[1])
    assert status.started and status.exit_status is None and status.wedged is None
    assert status.rcu_stall is not None
    assert status.rcu_stall.startswith("[  130.979239] rcu: INFO: rcu_preempt detected stalls")
    assert vm.parse_console(read("l1-console-soft-lockup.log"), "x").rcu_stall is None


def test_an_rcu_stall_then_silence_ends_the_l1_run_long_before_the_idle_watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live L1 (a real sleeping process) whose console reported an RCU stall and whose
    heartbeat goes on: killed once the results stay silent for L1_STALL_SILENCE_S."""
    monkeypatch.setattr(vm, "L1_STALL_SILENCE_S", 0.5)
    monkeypatch.setattr(vm, "_IDLE_CHECK_EVERY", 0.1)
    console = tmp_path / "l1-console.log"
    console.write_text(read("l1-console-rcu-stall.log"))
    nonce = console.read_text().split()[1]
    (tmp_path / vm.L1_HEARTBEAT).write_text("773.95\n")  # fresh: L1 still beats
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    started = time.monotonic()
    try:
        with pytest.raises(InfraError, match=r"L1 test VM wedged: .*detected stalls.* then"):
            vm._supervise(child, console, nonce, 60.0, None, {})
    finally:
        child.kill()
        child.wait()
    assert time.monotonic() - started < 10.0


def test_a_stopped_heartbeat_ends_the_l1_run_long_before_the_idle_watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live L1 QEMU (here a real sleeping process) whose init stopped beating: killed on
    the heartbeat's age, with the reason, not after L1_IDLE_TIMEOUT of silence."""
    monkeypatch.setattr(vm, "L1_BEAT_TIMEOUT", 0.5)
    console = tmp_path / "l1-console.log"
    console.write_text("SGL1-START abc 3.04\n")
    beat = tmp_path / vm.L1_HEARTBEAT
    beat.write_text("3.10\n")
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    started = time.monotonic()
    try:
        with pytest.raises(InfraError, match=r"L1 test VM stopped: its heartbeat is \d+ s old"):
            vm._supervise(child, console, "abc", 60.0, None, {})
    finally:
        child.kill()
        child.wait()
    assert time.monotonic() - started < 10.0
    assert child.returncode is not None


def _firmware(tmp_path: Path, triple_fault: bool) -> Path:
    """A 64 KiB BIOS image: at the reset vector either ``lidt`` of a zero-limit IDT and
    ``int3`` (a triple fault at once, EIP 0xfff6) or ``hlt`` for ever."""
    image = bytearray(b"\xf4" * 65536)  # hlt
    if triple_fault:
        image[0xFFE0:0xFFE6] = bytes(6)  # the IDT descriptor: limit 0, base 0
        image[0xFFF0:0xFFF8] = bytes([0x2E, 0x0F, 0x01, 0x1E, 0xE0, 0xFF, 0xCC, 0xF4])
    path = tmp_path / "bios.bin"
    path.write_bytes(bytes(image))
    return path


def _paused_l1(tmp_path: Path, firmware: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A real QEMU (the L1 QEMU of the host) with L1's ending options and a QMP socket."""
    sock = Path(tempfile.mkdtemp(prefix="sg-t-")) / "qmp.sock"
    argv = vm.l1_command(Path("/k"), Path("/i"), "x", tmp_path / "c.log", tmp_path, 64,
                         qmp_socket=sock)  # fmt: skip
    ending = argv[argv.index("-action") : argv.index("-action") + 4]
    assert "-no-reboot" not in argv and ending[1] == "reboot=shutdown,shutdown=pause"
    cmd = ["qemu-system-x86_64", "-M", "q35", "-accel", "tcg", "-smp", "2", "-nodefaults",
           "-display", "none", "-bios", str(firmware), "-d", "cpu_reset", *ending]  # fmt: skip
    log = open(tmp_path / "l1-qemu.log", "w")  # noqa: SIM115 (closed with the process)
    child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return child, sock


def test_an_l1_triple_fault_leaves_every_vcpu_s_registers(tmp_path: Path) -> None:
    """A real triple fault under the L1 options: QEMU pauses, the host reads the vCPUs'
    state over QMP (the faulting EIP), quits QEMU and names the fault."""
    from seriesgate.testenv.l1monitor import L1Monitor

    child, sock = _paused_l1(tmp_path, _firmware(tmp_path, triple_fault=True))
    console = tmp_path / "l1-console.log"
    console.write_text("")
    started = time.monotonic()
    try:
        status = vm._supervise(child, console, "n", 30.0, None, {}, L1Monitor(sock))
        child.wait(timeout=10)
    finally:
        proc_kill(child)
    assert status.exit_status is None and time.monotonic() - started < 10.0
    registers = (tmp_path / vm.L1_REGISTERS).read_text()
    assert "CPU#0" in registers and "CPU#1" in registers
    assert L1Monitor.rips(registers)[0] == "0000fff6"  # the int3 that faulted
    assert child.returncode == 0  # quit over QMP, not killed
    reason = vm.l1_qemu_reason((tmp_path / "l1-qemu.log").read_text(), child.returncode)
    assert reason == "L1 triple fault (L1 QEMU exit 0)"


def test_an_l1_that_finished_is_quit_after_the_poweroff_patience(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SGL1-EXIT seen and the guest does not power off (here: it halts): QEMU is asked to
    quit once the patience is over, and no registers are kept (nothing went wrong)."""
    from seriesgate.testenv.l1monitor import L1Monitor

    monkeypatch.setattr(vm, "L1_POWEROFF_PATIENCE", 0.5)
    child, sock = _paused_l1(tmp_path, _firmware(tmp_path, triple_fault=False))
    console = tmp_path / "l1-console.log"
    console.write_text("SGL1-START n 1.00\nSGL1-EXIT n 0\n")
    monitor = L1Monitor(sock)
    deadline = time.monotonic() + 10
    while not monitor.connected() and time.monotonic() < deadline:
        time.sleep(0.05)  # so that quit reaches it: the console says EXIT at once
    try:
        status = vm._supervise(child, console, "n", 30.0, None, {}, monitor)
        child.wait(timeout=10)
    finally:
        proc_kill(child)
    assert status.exit_status == 0 and child.returncode == 0
    assert not (tmp_path / vm.L1_REGISTERS).exists()


def proc_kill(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.kill()
        child.wait()


def test_the_rip_of_a_real_l1_triple_fault_is_named_in_kvm_amd() -> None:
    """bench-l1 2026-12-07 round 8: an L1 triple fault with vCPU 0 in L1 KVM's VMRUN; the
    registers from QMP, the symbols (kvm_amd's lines) from that boot's L1 init."""
    from seriesgate.testenv.l1monitor import L1Monitor, symbolize

    registers = read("l1-registers-triple-fault.txt")
    symbols = read("l1-kvm-amd-symbols.txt")
    rips = L1Monitor.rips(registers)
    assert rips == ["ffffffffc0861c60", "00007f33c696c6b0"]
    assert symbolize(rips[0], symbols) == "__svm_vcpu_run+0xa0 [kvm_amd]"
    assert symbolize(rips[1], symbols) == ""  # L1 user space: not in the modules
    assert "CR2=fffffe0000000080" in registers  # the IDT's double-fault gate
