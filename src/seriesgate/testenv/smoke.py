"""Smoke check of a test environment, run inside it: ``python -m seriesgate.testenv.smoke``.

Boots L2 guests on ``-netdev vhost-vdpa`` (guest i on device i) with the QEMU given, sends
frames to each guest's own MAC (vdpa_sim_net loops them back), and compares the guest's
counters with the device's ``vdpa dev vstats``. Writes every observation to ``smoke.json``
in the work directory and exits 0 only when, for every guest, all frames came back and the
counters agree.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seriesgate import proc
from seriesgate.testenv import vdpa
from seriesgate.testenv.agent import AgentError, GuestAgent, l2_qemu_args
from seriesgate.testenv.environment import VdpaEnvironment
from seriesgate.testenv.model import VdpaDevice

FRAMES = 200
COUNTERS = ("tx_packets", "rx_packets", "tx_dropped", "rx_dropped")
FALLBACK = "falling back on userspace virtio"
DEBIAN_QEMU = "/usr/bin/qemu-system-x86_64"
# A QEMU built from source without its blobs finds BIOS and option ROMs in Debian's packages.
FIRMWARE_DIRS = ("/usr/share/qemu", "/usr/share/seabios")


def l2_command(
    qemu: str,
    env: VdpaEnvironment,
    device: VdpaDevice,
    workdir: Path,
    *,
    kvm: bool,
    memory_mb: int = 256,
) -> tuple[list[str], Path]:
    """The L2 QEMU command line and its agent socket path."""
    # A unix socket cannot be bound on 9p (the results directory in L1): use local /tmp.
    sock = Path(tempfile.mkdtemp(prefix="sg-smoke-")) / f"{device.name}.agent.sock"
    accel = ["-accel", "kvm", "-cpu", "host"] if kvm else ["-accel", "tcg", "-cpu", "max"]
    firmware = (
        []
        if qemu == DEBIAN_QEMU
        else [arg for d in FIRMWARE_DIRS if Path(d).is_dir() for arg in ("-L", d)]
    )
    image = env.l2_guest
    extra = os.environ.get("SERIESGATE_L2_APPEND_EXTRA", "")  # e.g. "loglevel=7" to debug
    if extra:
        image = dataclasses.replace(image, append=f"{image.append} {extra}")
    argv = [
        qemu,
        *firmware,
        "-machine",
        "q35",
        *accel,
        "-m",
        str(memory_mb),
        "-smp",
        "1",
        *l2_qemu_args(image, agent_socket=sock, console_log=workdir / f"{device.name}.console.log"),
        "-netdev",
        f"vhost-vdpa,vhostdev={device.chardev},id=n0",
        "-device",
        f"virtio-net-pci,netdev=n0,mac={device.mac}",
    ]
    return argv, sock


def parse_counters(text: str) -> dict[str, int]:
    """``name value`` lines (from the guest's sysfs statistics) → {name: value}."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    return values


def guest_counters(agent: GuestAgent) -> dict[str, int]:
    cmd = "; ".join(f"echo {c} $(cat /sys/class/net/eth0/statistics/{c})" for c in COUNTERS)
    return parse_counters(agent.run(cmd).output)


@dataclass
class L2:
    device: VdpaDevice
    child: subprocess.Popen[bytes]
    agent: GuestAgent
    qemu_log: Path
    started: float


def _launch(
    qemu: str, env: VdpaEnvironment, device: VdpaDevice, workdir: Path, kvm: bool, stack: ExitStack
) -> L2:
    argv, sock = l2_command(qemu, env, device, workdir, kvm=kvm)
    (workdir / f"{device.name}.argv.json").write_text(json.dumps(argv) + "\n")
    qemu_log = workdir / f"{device.name}.qemu.log"
    log = stack.enter_context(open(qemu_log, "w"))
    child = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )

    def reap() -> None:
        proc.kill_group(child)
        child.wait()

    stack.callback(reap)
    agent = GuestAgent(
        sock, log=workdir / f"{device.name}.agent.log", alive=lambda: child.poll() is None
    )
    stack.callback(agent.close)
    return L2(device, child, agent, qemu_log, time.monotonic())


def _traffic(env: VdpaEnvironment, guest: L2, frames: int, kvm: bool) -> dict[str, Any]:
    name = guest.device.name
    agent = guest.agent
    out: dict[str, Any] = {}
    out["guest_mac"] = agent.run("cat /sys/class/net/eth0/address").output.strip()
    out["config"] = env.config(name)
    before = guest_counters(agent)
    dev_before = env.counters(name)
    # TCG inside TCG is ~20x slower: frames keep coming back for seconds.
    wait_ms = 3000 if kvm else 30000
    sent = agent.run(f"sgpkt send eth0 {frames} {wait_ms}", timeout=wait_ms / 1000 + 60)
    out["sgpkt"] = {"exit_status": sent.exit_status, "output": sent.output.strip()}
    after = guest_counters(agent)
    # The raw `vdpa -j` text too: unit tests of the parsers use these real samples.
    out["vstats_raw"] = {
        str(q): vdpa.run_vdpa("dev", "vstats", "show", name, "qidx", str(q)) for q in (0, 1)
    }
    out["config_raw"] = vdpa.run_vdpa("dev", "config", "show", name)
    dev_after = env.counters(name)
    out["guest_delta"] = {c: after.get(c, 0) - before.get(c, 0) for c in COUNTERS}
    out["vstats_delta"] = {k: v - dev_before.get(k, 0) for k, v in dev_after.items()}
    out["uptime"] = agent.run("cat /proc/uptime").output.split()[0]
    return out


def smoke(
    qemu: str,
    workdir: Path,
    *,
    frames: int = FRAMES,
    guests: int = 1,
    tcg: bool = False,
    hold: float = 0.0,
) -> dict[str, Any]:
    """Run the checks; every observation goes into the returned dict (``ok`` last)."""
    env = VdpaEnvironment.from_env()
    kvm = env.l2_kvm and not tcg
    report: dict[str, Any] = {
        "qemu": qemu,
        "devices": [d.to_json() for d in env.devices],
        "l2_kvm": kvm,
        "l2_kvm_reason": env.l2_kvm_reason if not tcg else "TCG forced (--tcg)",
        "chardevs_exist": all(Path(d.chardev).exists() for d in env.devices),
        "show": env.show(),
        "guests": [],
    }
    # L2 boots in ~15-43 s with KVM in L1, but nested KVM under TCG has stalled one past 90 s.
    boot_timeout = 180.0 if kvm else 400.0
    with ExitStack() as stack:
        l2s = [_launch(qemu, env, dev, workdir, kvm, stack) for dev in env.devices[:guests]]
        for guest in l2s:
            entry: dict[str, Any] = {"device": guest.device.name}
            report["guests"].append(entry)
            try:
                guest.agent.wait_ready(max(1.0, boot_timeout - (time.monotonic() - guest.started)))
                entry["boot_to_agent_s"] = round(time.monotonic() - guest.started, 2)
            except AgentError as exc:
                entry["agent_error"] = str(exc)
        if hold:
            time.sleep(hold)  # the bench samples the host's RSS with every guest up
        for guest, entry in zip(l2s, report["guests"], strict=True):
            if "agent_error" in entry:
                continue
            try:
                entry.update(_traffic(env, guest, frames, kvm))
            except AgentError as exc:
                entry["agent_error"] = str(exc)
    for guest, entry in zip(l2s, report["guests"], strict=True):
        text = guest.qemu_log.read_text(errors="replace")
        entry["vhost_fallback"] = FALLBACK in text
        entry["qemu_log_tail"] = proc.tail(text, 10)
        entry["ok"] = guest_ok(entry, frames)
    report["ok"] = bool(report["chardevs_exist"]) and all(g["ok"] for g in report["guests"])
    return report


def guest_ok(entry: dict[str, Any], frames: int) -> bool:
    """Every frame came back, and guest counters agree with the device's vstats."""
    match = re.search(r"sent (\d+) received (\d+)", entry.get("sgpkt", {}).get("output", ""))
    delta = entry.get("guest_delta", {})
    vs = entry.get("vstats_delta", {})
    return bool(
        not entry.get("vhost_fallback")
        and match
        and int(match.group(1)) == frames
        and int(match.group(2)) == frames
        and delta.get("tx_packets") == delta.get("rx_packets")
        and delta.get("tx_packets", 0) >= frames
        and vs.get("tx_packets") == delta.get("tx_packets")
        and vs.get("rx_packets") == delta.get("rx_packets")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--qemu", default=DEBIAN_QEMU)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--guests", type=int, default=1, help="L2 guests (one per device)")
    parser.add_argument("--tcg", action="store_true", help="L2 with TCG even when KVM works")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds with all guests up")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    report = smoke(
        args.qemu,
        args.workdir,
        frames=args.frames,
        guests=args.guests,
        tcg=args.tcg,
        hold=args.hold,
    )
    (args.workdir / "smoke.json").write_text(json.dumps(report, indent=2) + "\n")
    for g in report["guests"]:
        print(
            f"sg-smoke: {g['device']}: ok={g['ok']} boot={g.get('boot_to_agent_s')} s "
            f"sgpkt={g.get('sgpkt', {}).get('output')!r} guest={g.get('guest_delta')} "
            f"vstats={g.get('vstats_delta')} {g.get('agent_error', '')}",
            flush=True,
        )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
