"""Smoke check of a test environment, run inside it: ``python -m seriesgate.testenv.smoke``.

Boots one L2 guest on ``-netdev vhost-vdpa`` (device 0) with the QEMU given, sends frames to
the guest's own MAC (vdpa_sim_net loops them back), and compares the guest's counters with
the device's ``vdpa dev vstats``. Writes every observation to ``smoke.json`` in the results
directory and exits 0 only when traffic went round and the counters agree.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from seriesgate import proc
from seriesgate.testenv.agent import AgentError, GuestAgent, l2_qemu_args
from seriesgate.testenv.environment import VdpaEnvironment
from seriesgate.testenv.model import VdpaDevice

FRAMES = 200
COUNTERS = ("tx_packets", "rx_packets", "tx_dropped", "rx_dropped")
FALLBACK = "falling back on userspace virtio"


def l2_command(
    qemu: str, env: VdpaEnvironment, device: VdpaDevice, workdir: Path, memory_mb: int = 256
) -> tuple[list[str], Path]:
    """The L2 QEMU command line and its agent socket path."""
    sock = workdir / f"{device.name}.agent.sock"
    accel = ["-accel", "kvm", "-cpu", "host"] if env.l2_kvm else ["-accel", "tcg", "-cpu", "max"]
    argv = [
        qemu,
        "-machine",
        "q35",
        *accel,
        "-m",
        str(memory_mb),
        "-smp",
        "1",
        *l2_qemu_args(
            env.l2_guest, agent_socket=sock, console_log=workdir / f"{device.name}.console.log"
        ),
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
    result = agent.run(cmd)
    return parse_counters(result.output)


def completed(stats: dict[str, Any]) -> int:
    return int(stats.get("completed_desc", 0))


def smoke(qemu: str, workdir: Path, *, frames: int = FRAMES) -> dict[str, Any]:
    """Run the checks; every observation goes into the returned dict (``ok`` last)."""
    env = VdpaEnvironment.from_env()
    report: dict[str, Any] = {
        "qemu": qemu,
        "devices": [d.to_json() for d in env.devices],
        "l2_kvm": env.l2_kvm,
        "l2_kvm_reason": env.l2_kvm_reason,
        "chardevs_exist": all(Path(d.chardev).exists() for d in env.devices),
        "show": env.show(),
    }
    device = env.devices[0]
    argv, sock = l2_command(qemu, env, device, workdir)
    report["l2_argv"] = argv
    qemu_log = workdir / f"{device.name}.qemu.log"
    boot_timeout = 60.0 if env.l2_kvm else 300.0
    with open(qemu_log, "w") as log:
        child = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        agent = GuestAgent(sock, log=workdir / f"{device.name}.agent.log")
        try:
            started = time.monotonic()
            agent.wait_ready(boot_timeout)
            report["l2_boot_to_agent_s"] = round(time.monotonic() - started, 2)
            report["guest_mac"] = agent.run("cat /sys/class/net/eth0/address").output.strip()
            report["config"] = env.config(device.name)
            before = guest_counters(agent)
            vs_before = {q: env.vstats(device.name, q) for q in (0, 1)}
            sent = agent.run(f"sgpkt send eth0 {frames} 3000", timeout=60)
            report["sgpkt"] = {"exit_status": sent.exit_status, "output": sent.output.strip()}
            after = guest_counters(agent)
            vs_after = {q: env.vstats(device.name, q) for q in (0, 1)}
            report["guest_delta"] = {c: after.get(c, 0) - before.get(c, 0) for c in COUNTERS}
            report["vstats_after"] = {str(q): v for q, v in vs_after.items()}
            report["vstats_delta"] = {
                "rx_completed": completed(vs_after[0]) - completed(vs_before[0]),
                "tx_completed": completed(vs_after[1]) - completed(vs_before[1]),
            }
            report["uptime"] = agent.run("cat /proc/uptime").output.split()[0]
        except AgentError as exc:
            report["agent_error"] = str(exc)
        finally:
            agent.close()
            proc.kill_group(child)
            child.wait()
    qemu_text = qemu_log.read_text(errors="replace")
    report["vhost_fallback"] = FALLBACK in qemu_text
    report["qemu_log_tail"] = proc.tail(qemu_text, 10)
    report["ok"] = verdict(report, frames)
    return report


def verdict(report: dict[str, Any], frames: int) -> bool:
    """Traffic went round and guest counters agree with the device's vstats."""
    match = re.search(r"sent (\d+) received (\d+)", report.get("sgpkt", {}).get("output", ""))
    delta = report.get("guest_delta", {})
    vs = report.get("vstats_delta", {})
    return bool(
        report.get("chardevs_exist")
        and not report.get("vhost_fallback")
        and match
        and int(match.group(1)) == frames
        and int(match.group(2)) == frames
        and delta.get("tx_packets") == delta.get("rx_packets")
        and delta.get("tx_packets", 0) >= frames
        and vs.get("tx_completed") == delta.get("tx_packets")
        and vs.get("rx_completed") == delta.get("rx_packets")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--qemu", default="/usr/bin/qemu-system-x86_64")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=FRAMES)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    report = smoke(args.qemu, args.workdir, frames=args.frames)
    (args.workdir / "smoke.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"sg-smoke: ok={report['ok']} sgpkt={report.get('sgpkt')} "
        f"guest={report.get('guest_delta')} vstats={report.get('vstats_delta')}"
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
