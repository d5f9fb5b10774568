"""Set up vDPA devices where the tests run, then run the command: ``python -m`` entry point.

In VM mode the L1 init runs ``python -m seriesgate.testenv.inside SPEC.json`` inside the
chroot of the host's root; in host mode ``run_in_env()`` calls ``setup_and_run()`` directly.
Setup: RLIMIT_MEMLOCK unlimited (vdpa_sim with use_va=0 pins guest RAM), modules
(``modprobe -d <assets>/root`` in VM mode), kvm_amd/kvm_intel when the CPU offers svm/vmx
(in VM mode the L1 init loads it), the devices
(``vdpa dev add``), then the description file named by ``$SERIESGATE_TESTENV``.

A setup failure prints one ``SGL1-SETUP-FAILED: <reason>`` line and exits 125.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seriesgate import proc
from seriesgate.errors import SeriesgateError
from seriesgate.testenv import vdpa
from seriesgate.testenv.environment import ENV_VAR, VdpaEnvironment
from seriesgate.testenv.model import DEFAULT_MAC, DeviceSpec, GuestImage, Mode, VdpaDevice

SETUP_FAILED = "SGL1-SETUP-FAILED:"
SETUP_FAILED_EXIT = 125


@dataclass(frozen=True)
class RunSpec:
    """What to set up and run; written by the host as JSON, read inside L1 (or on the host)."""

    argv: list[str]
    cwd: str
    results_dir: str
    mode: Mode
    kernel_version: str
    l2_guest: GuestImage
    devices: list[DeviceSpec]
    modules_root: str | None = None  # VM mode: `modprobe -d` root
    use_va: bool = False  # vdpa_sim's use_va (1 gives a dead datapath with anonymous RAM)
    notes: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # the caller's $SERIESGATE_* settings

    @property
    def env_file(self) -> Path:
        return Path(self.results_dir) / "testenv.json"

    def to_json(self) -> dict[str, Any]:
        return {
            "argv": self.argv,
            "cwd": self.cwd,
            "results_dir": self.results_dir,
            "mode": str(self.mode),
            "kernel_version": self.kernel_version,
            "l2_guest": self.l2_guest.to_json(),
            "devices": [{"name": d.name, "mac": d.mac, "mgmtdev": d.mgmtdev} for d in self.devices],
            "modules_root": self.modules_root,
            "use_va": self.use_va,
            "notes": self.notes,
            "env": self.env,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSpec:
        return cls(
            argv=[str(a) for a in data["argv"]],
            cwd=str(data["cwd"]),
            results_dir=str(data["results_dir"]),
            mode=Mode(data["mode"]),
            kernel_version=str(data["kernel_version"]),
            l2_guest=GuestImage.from_json(data["l2_guest"]),
            devices=[
                DeviceSpec(d["name"], d["mac"], d.get("mgmtdev", "vdpasim_net"))
                for d in data["devices"]
            ],
            modules_root=data.get("modules_root"),
            use_va=bool(data.get("use_va", False)),
            notes=[str(n) for n in data.get("notes", [])],
            env={str(k): str(v) for k, v in data.get("env", {}).items()},
        )


def forwarded_env() -> dict[str, str]:
    """The caller's $SERIESGATE_* settings (cache, results, ...) for the command in L1, and
    its $PYTHONPATH: a checkout run with PYTHONPATH=<tree>/src (a git worktree beside the
    venv's editable install) then runs its own code in L1 too, not the venv's tree."""
    return {
        k: v
        for k, v in os.environ.items()
        if (k.startswith("SERIESGATE_") and k != ENV_VAR) or k == "PYTHONPATH"
    }


def device_specs(count: int, macs: list[str] | None = None) -> list[DeviceSpec]:
    """``count`` devices vdpa0..; MACs from ``macs`` (missing ones: the default MAC)."""
    macs = list(macs or [])
    return [DeviceSpec(f"vdpa{i}", macs[i] if i < len(macs) else DEFAULT_MAC) for i in range(count)]


def _modprobe(spec: RunSpec, *args: str) -> subprocess.CompletedProcess[str]:
    base = ["modprobe"]
    if spec.modules_root:
        base += ["-d", spec.modules_root]
    return proc.run([*base, *args], timeout=60, check=False)


def load_modules(spec: RunSpec) -> None:
    """vhost_vdpa + vdpa_sim (use_va as asked) + vdpa_sim_net; refuse a wrong use_va."""
    use_va = "1" if spec.use_va else "0"
    param = Path("/sys/module/vdpa_sim/parameters/use_va")
    if param.exists():
        current = "1" if param.read_text().strip() in ("Y", "1") else "0"
        if current != use_va:
            raise SeriesgateError(
                f"vdpa_sim is loaded with use_va={current}, the run needs use_va={use_va}",
                hint="remove the vdpa_sim_net and vdpa_sim modules first",
            )
    if all(Path("/sys/module", m).is_dir() for m in ("vhost_vdpa", "vdpa_sim_net")):
        return  # the L1 init loaded them (VM mode), or they were there already
    for args in (("vdpa_sim", f"use_va={use_va}"), ("-a", "vhost_vdpa", "vdpa_sim_net")):
        result = _modprobe(spec, *args)
        if result.returncode != 0:
            msg = (result.stderr or result.stdout).strip().splitlines()
            raise SeriesgateError(
                f"modules refused: modprobe {' '.join(args)}: {msg[0] if msg else 'failed'}"
            )


@dataclass
class KvmLoader:
    """A running ``modprobe kvm_amd`` (or why none was started)."""

    module: str | None
    child: subprocess.Popen[str] | None
    reason: str = ""


KVM_WAIT = 20.0  # VM mode: the L1 init loads kvm_amd/kvm_intel in the background


def _wait_for_dev_kvm(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not Path("/dev/kvm").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def start_kvm_module(spec: RunSpec) -> KvmLoader:
    """Start loading kvm_amd/kvm_intel when the CPU offers svm/vmx and /dev/kvm is missing."""
    if Path("/dev/kvm").exists():
        return KvmLoader(None, None)
    flags = _cpu_flags()
    module = "kvm_amd" if "svm" in flags else "kvm_intel" if "vmx" in flags else None
    if module is None:
        return KvmLoader(None, None, "the CPU offers neither svm nor vmx: L2 runs with TCG")
    if spec.mode is Mode.VM:
        return KvmLoader(module, None)  # the L1 init is loading it: wait in finish_kvm()
    argv = ["modprobe", *(["-d", spec.modules_root] if spec.modules_root else []), module]
    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    return KvmLoader(module, child)


def finish_kvm(loader: KvmLoader) -> tuple[bool, str]:
    """Whether L2 can use KVM here (after the loader finished), and why not."""
    if loader.reason:
        return False, loader.reason
    if loader.module is not None and loader.child is None and not _wait_for_dev_kvm(KVM_WAIT):
        return False, f"{loader.module} did not give /dev/kvm within {KVM_WAIT:.0f} s: L2 uses TCG"
    if loader.child is not None:
        try:
            out, _ = loader.child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill_group(loader.child)
            loader.child.wait()
            return False, f"modprobe {loader.module} hung: L2 runs with TCG"
        if loader.child.returncode != 0:
            return False, f"modprobe {loader.module} failed: {out.strip()[:120]}; L2 uses TCG"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as exc:
        return False, f"/dev/kvm unusable ({exc.strerror}): L2 runs with TCG"
    os.close(fd)
    return True, "/dev/kvm usable" + kvm_params_note()


# The L1 KVM module parameters that change how L2 runs (npt=0: shadow paging for L2).
KVM_PARAMS = {"kvm_amd": ("npt", "nested"), "kvm_intel": ("ept", "nested")}


def kvm_params_note(sys_module: Path = Path("/sys/module")) -> str:
    """ " (kvm_amd npt=Y nested=1)" from sysfs, for the loaded KVM vendor module ("" if none).

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name, value in (("npt", "N"), ("nested", "1")):
    ...     p = root / "kvm_amd" / "parameters" / name
    ...     p.parent.mkdir(parents=True, exist_ok=True)
    ...     _ = p.write_text(value + "\\n")
    >>> kvm_params_note(root)
    ' (kvm_amd npt=N nested=1)'
    >>> kvm_params_note(root / "none")
    ''
    """
    for module, names in KVM_PARAMS.items():
        params = sys_module / module / "parameters"
        if not params.is_dir():
            continue
        values = []
        for name in names:
            try:
                values.append(f"{name}={(params / name).read_text().strip()}")
            except OSError:
                continue
        return f" ({module} {' '.join(values)})"
    return ""


# KVM ioctls (linux/kvm.h): _IO(0xAE, 0x01), _IO(0xAE, 0x60), _IO(0xAE, 0x41)
KVM_CREATE_VM = 0xAE01
KVM_CREATE_IRQCHIP = 0xAE60
KVM_CREATE_VCPU = 0xAE41
_kvm_static_key_holder: list[int] = []


def hold_kvm_static_keys() -> str:
    """Keep one idle KVM VM (irqchip + one vCPU) open until this process exits.

    Why: creating the first KVM VM and destroying the last flips static keys in the scheduler
    (preempt notifiers) and in kvm (APIC state); each flip rewrites kernel text with
    int3-based patching while the other vCPU runs. Under the L1's multi-threaded TCG that race
    oopsed L1 ("Oops: int3" in __schedule) after minutes of L2 QEMUs coming and going.
    Measured in L1: 84 text patches over 3 VM create/destroy cycles without a holder, 0 with.
    Returns what was done, for the environment notes.
    """
    if _kvm_static_key_holder:
        return "KVM static keys held"
    fds: list[int] = []
    try:
        fds.append(os.open("/dev/kvm", os.O_RDWR))
        fds.append(fcntl.ioctl(fds[0], KVM_CREATE_VM, 0))
        fcntl.ioctl(fds[1], KVM_CREATE_IRQCHIP, 0)
        fds.append(fcntl.ioctl(fds[1], KVM_CREATE_VCPU, 0))
    except OSError as exc:
        for fd in reversed(fds):
            os.close(fd)
        return f"KVM static keys not held ({exc.strerror}): L1 may oops under TCG"
    for fd in fds:
        os.set_inheritable(fd, False)
    _kvm_static_key_holder.extend(fds)
    return "KVM static keys held"


CORE_DIR = Path("/tmp/sg-cores")  # VM mode: where crashing QEMUs leave their cores


def _local_cores() -> None:
    """Cores of crashing QEMUs go to L1's tmpfs, not the 9p results mount: a 70 MB core
    crawls over 9p under TCG (and was the last write before one test stalled for good)."""
    CORE_DIR.mkdir(parents=True, exist_ok=True)
    Path("/proc/sys/kernel/core_pattern").write_text(f"{CORE_DIR}/core.%p\n")


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def create_devices(specs: list[DeviceSpec]) -> list[VdpaDevice]:
    """``vdpa dev add`` each device (re-creating leftovers of the same name)."""
    present = vdpa.parse_dev_show(vdpa.run_vdpa("dev", "show"))
    for dev in specs:
        if dev.name in present:
            vdpa.dev_del(dev.name)
        vdpa.dev_add(dev.name, dev.mac, dev.mgmtdev)
    shown = vdpa.parse_dev_show(vdpa.run_vdpa("dev", "show"))
    devices = []
    for dev in specs:
        attrs = shown.get(dev.name)
        if attrs is None:
            raise SeriesgateError(f"vDPA device {dev.name} missing after `vdpa dev add`")
        devices.append(
            VdpaDevice(
                name=dev.name,
                mgmtdev=str(attrs.get("mgmtdev", dev.mgmtdev)),
                mac=dev.mac,
                chardev=vdpa.chardev_of(dev.name),
                max_vqs=int(attrs.get("max_vqs", 0)),
            )
        )
    return devices


def setup(spec: RunSpec) -> VdpaEnvironment:
    """Everything before the command; returns the environment it wrote to ``env_file``."""
    started = time.monotonic()
    steps: dict[str, float] = {}
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    kvm_loader = start_kvm_module(spec)  # in parallel with the vDPA modules and devices
    load_modules(spec)
    steps["modules_s"] = round(time.monotonic() - started, 3)
    devices = create_devices(spec.devices)
    steps["devices_s"] = round(time.monotonic() - started - sum(steps.values()), 3)
    kvm, why = finish_kvm(kvm_loader)
    notes = list(spec.notes)
    if kvm and spec.mode is Mode.VM:
        notes.append(hold_kvm_static_keys())
    if spec.mode is Mode.VM:
        _local_cores()
    steps["kvm_wait_s"] = round(time.monotonic() - started - sum(steps.values()), 3)
    env = VdpaEnvironment(
        mode=spec.mode,
        kernel_version=spec.kernel_version,
        devices=devices,
        l2_guest=spec.l2_guest,
        l2_kvm=kvm,
        l2_kvm_reason=why,
        notes=notes,
    )
    env.write(spec.env_file)
    timing = {"setup_s": round(time.monotonic() - started, 3), **steps, "uptime_s": _uptime()}
    (Path(spec.results_dir) / "testenv-timing.json").write_text(json.dumps(timing) + "\n")
    names = ", ".join(f"{d.name}={d.chardev}" for d in devices)
    kvm_text = "KVM" if kvm else f"TCG ({why})"
    print(
        f"sg-testenv: {len(devices)} vDPA devices ({names}); L2 {kvm_text}; "
        f"setup {timing['setup_s']:.2f} s",
        flush=True,
    )
    return env


def _uptime() -> float:
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


def run_command(spec: RunSpec, *, timeout: float | None = None) -> int:
    """Run the command with ``$SERIESGATE_TESTENV`` set; its exit status."""
    env = {**os.environ, **spec.env, ENV_VAR: str(spec.env_file)}
    child = subprocess.Popen(spec.argv, cwd=spec.cwd, env=env, start_new_session=True)
    try:
        return child.wait(timeout=timeout)
    except BaseException:
        proc.kill_group(child)
        child.wait()
        raise


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m seriesgate.testenv.inside SPEC.json", file=sys.stderr)
        return 2
    try:
        spec = RunSpec.from_json(json.loads(Path(argv[0]).read_text()))
        os.environ.update(spec.env)
        setup(spec)
    except (SeriesgateError, OSError, ValueError, KeyError) as exc:
        print(f"{SETUP_FAILED} {exc}", flush=True)
        return SETUP_FAILED_EXIT
    try:
        return run_command(spec)
    except OSError as exc:
        print(f"{SETUP_FAILED} cannot run {spec.argv[0]}: {exc}", flush=True)
        return SETUP_FAILED_EXIT


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
