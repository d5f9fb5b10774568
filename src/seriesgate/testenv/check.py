"""What this machine offers for vDPA tests, and which mode follows from it.

``probe_host()`` looks (read-only) at the running kernel; ``choose_mode()`` is the pure
decision, unit-tested on recorded probes.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from seriesgate import proc
from seriesgate.testenv import vdpa
from seriesgate.testenv.model import Mode

NEEDED_MODULES = ("vhost_vdpa", "vdpa_sim", "vdpa_sim_net")


@dataclass(frozen=True)
class HostProbe:
    """Facts about the running kernel and machine (each with a short explanation)."""

    kernel: str
    modules_disabled: bool  # `nomodule` on the command line or modules_disabled=1
    modules_loaded: dict[str, bool]  # NEEDED_MODULES → in /sys/module
    modules_available: dict[str, bool]  # NEEDED_MODULES → in /lib/modules/<kernel>
    sys_bus_vdpa: bool
    vdpasim_net_mgmtdev: bool  # `vdpa mgmtdev show` lists vdpasim_net
    vhost_vdpa_devices: list[str]
    vdpa_tool: bool
    root: bool
    kvm: str  # "usable" / "absent" / "cannot open: ..."
    memlock: str  # "unlimited" or bytes
    l1_qemu: bool  # Debian's qemu-system-x86_64 for VM mode
    notes: list[str] = field(default_factory=list)


def _module_available(kernel: str, name: str) -> bool:
    base = Path("/lib/modules") / kernel
    if not base.is_dir():
        return False
    dep = base / "modules.dep"
    if dep.is_file():
        text = dep.read_text(errors="replace")
        return f"/{name}.ko" in text or f"/{name.replace('_', '-')}.ko" in text
    return False


def probe_host() -> HostProbe:
    kernel = platform.release()
    cmdline = Path("/proc/cmdline").read_text() if Path("/proc/cmdline").exists() else ""
    disabled_flag = Path("/proc/sys/kernel/modules_disabled")
    disabled = "nomodule" in cmdline.split() or (
        disabled_flag.exists() and disabled_flag.read_text().strip() == "1"
    )
    loaded = {m: Path("/sys/module", m).is_dir() for m in NEEDED_MODULES}
    available = {m: loaded[m] or _module_available(kernel, m) for m in NEEDED_MODULES}
    tool = shutil.which(vdpa.VDPA) is not None
    mgmt = False
    if tool and Path("/sys/bus/vdpa").is_dir():
        result = proc.run([vdpa.VDPA, "-j", "mgmtdev", "show"], timeout=10, check=False)
        if result.returncode == 0:
            try:
                mgmt = "vdpasim_net" in vdpa.parse_mgmtdev_show(result.stdout)
            except Exception:  # noqa: BLE001 - an odd answer just means "not usable"
                mgmt = False
    if Path("/dev/kvm").exists():
        try:
            os.close(os.open("/dev/kvm", os.O_RDWR))
            kvm = "usable"
        except OSError as exc:
            kvm = f"cannot open: {exc.strerror}"
    else:
        kvm = "absent"
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    memlock = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    return HostProbe(
        kernel=kernel,
        modules_disabled=disabled,
        modules_loaded=loaded,
        modules_available=available,
        sys_bus_vdpa=Path("/sys/bus/vdpa").is_dir(),
        vdpasim_net_mgmtdev=mgmt,
        vhost_vdpa_devices=sorted(p.name for p in Path("/dev").glob("vhost-vdpa-*")),
        vdpa_tool=tool,
        root=os.geteuid() == 0,
        kvm=kvm,
        memlock=memlock,
        l1_qemu=shutil.which("qemu-system-x86_64") is not None,
    )


def host_capable(probe: HostProbe) -> tuple[bool, str]:
    """Can devices be created on this kernel directly? (yes/no and why)."""
    if not probe.vdpa_tool:
        return False, "the iproute2 `vdpa` tool is missing"
    if not probe.root:
        return False, "creating vDPA devices needs root"
    if probe.vdpasim_net_mgmtdev and all(probe.modules_loaded.values()):
        return True, "vdpa_sim_net and vhost_vdpa are loaded on this kernel"
    if probe.modules_disabled:
        return False, f"kernel {probe.kernel} cannot load modules (nomodule/modules_disabled)"
    missing = [m for m, ok in probe.modules_available.items() if not ok]
    if missing:
        return False, f"kernel {probe.kernel} has no {', '.join(missing)} module"
    return True, f"kernel {probe.kernel} can load vhost_vdpa, vdpa_sim and vdpa_sim_net"


def choose_mode(probe: HostProbe) -> tuple[Mode, str]:
    """HOST when this kernel can host vdpa_sim devices, else VM; with the reason."""
    ok, why = host_capable(probe)
    if ok:
        return Mode.HOST, why
    return Mode.VM, f"{why}: tests run in the L1 test VM"


def check_table(probe: HostProbe) -> list[tuple[str, str, str]]:
    """Rows (what, status, meaning) for `seriesgate testenv --check`."""
    mode, why = choose_mode(probe)

    def yn(flag: bool) -> str:
        return "yes" if flag else "no"

    rows = [
        ("kernel", probe.kernel, "the running kernel"),
        (
            "module loading",
            "disabled" if probe.modules_disabled else "possible",
            "nomodule/modules_disabled forbid loading vdpa_sim here",
        ),
    ]
    for module in NEEDED_MODULES:
        state = (
            "loaded"
            if probe.modules_loaded[module]
            else "available"
            if probe.modules_available[module]
            else "missing"
        )
        rows.append((f"module {module}", state, "needed on the kernel that hosts the devices"))
    rows += [
        ("/sys/bus/vdpa", yn(probe.sys_bus_vdpa), "the vdpa bus (module vdpa)"),
        (
            "vdpasim_net mgmtdev",
            yn(probe.vdpasim_net_mgmtdev),
            "`vdpa mgmtdev show` offers the simulator",
        ),
        (
            "/dev/vhost-vdpa-*",
            ", ".join(probe.vhost_vdpa_devices) or "none",
            "char devices QEMU opens (-netdev vhost-vdpa)",
        ),
        ("vdpa tool", yn(probe.vdpa_tool), "iproute2's `vdpa` creates devices"),
        ("root", yn(probe.root), "module loading and `vdpa dev add` need root"),
        (
            "/dev/kvm",
            probe.kvm,
            "host KVM; VM mode probes whether it boots the L1 kernel (else L1 on TCG)",
        ),
        ("memlock limit", probe.memlock, "use_va=0 pins guest RAM: raised to unlimited"),
        ("qemu-system-x86_64", yn(probe.l1_qemu), "Debian's QEMU runs the L1 test VM"),
        ("chosen mode", str(mode), why),
    ]
    return rows


def format_table(rows: list[tuple[str, str, str]]) -> str:
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w1}}  {b:<{w2}}  {c}" for a, b, c in rows)
