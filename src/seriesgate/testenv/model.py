"""Typed result of the testenv stage: where vdpa_sim devices exist and how to use them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

DEFAULT_MAC = "52:54:00:12:34:56"


class Mode(StrEnum):
    HOST = "host"  # this kernel has vdpa_sim: devices are created directly
    VM = "vm"  # an L1 test VM with our own kernel modules runs the tests


@dataclass(frozen=True)
class VdpaDevice:
    name: str  # "vdpa0"
    mgmtdev: str  # "vdpasim_net"
    mac: str
    chardev: Path  # /dev/vhost-vdpa-N
    max_vqs: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mgmtdev": self.mgmtdev,
            "mac": self.mac,
            "chardev": str(self.chardev),
            "max_vqs": self.max_vqs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VdpaDevice:
        return cls(
            name=str(data["name"]),
            mgmtdev=str(data["mgmtdev"]),
            mac=str(data["mac"]),
            chardev=Path(data["chardev"]),
            max_vqs=int(data["max_vqs"]),
        )


@dataclass(frozen=True)
class GuestImage:
    """L2 guest: kernel + initramfs with virtio_net and a serial agent."""

    kernel: Path
    initrd: Path
    append: str  # kernel command line the agent expects

    def to_json(self) -> dict[str, Any]:
        return {"kernel": str(self.kernel), "initrd": str(self.initrd), "append": self.append}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GuestImage:
        return cls(
            kernel=Path(data["kernel"]), initrd=Path(data["initrd"]), append=str(data["append"])
        )


@dataclass(frozen=True)
class TestEnv:
    """What ``prepare()`` found or built: the mode and the assets to run tests in it."""

    __test__ = False  # not a pytest test class despite the name

    mode: Mode
    kernel_version: str  # of the kernel the devices live in
    l2_guest: GuestImage
    assets_dir: Path  # cache dir holding kernel, modules, initramfs
    l1_kvm: bool  # VM mode: whether L2 can use KVM inside L1 (host mode: /dev/kvm usable)
    reason: str = ""  # why this mode was chosen (one line, shown by --check)
    l1_kernel: Path | None = None  # VM mode: the L1 kernel image
    l1_initrd: Path | None = None  # VM mode: the L1 initramfs
    modules_root: Path | None = None  # VM mode: `modprobe -d` root holding lib/modules/<kver>
    manifest: dict[str, Any] = field(default_factory=dict)  # what was built, pinned versions
    l1_accel: str = "none"  # VM mode: "kvm" or "tcg" for the L1 QEMU (host mode: "none")
    l1_accel_reason: str = ""  # why that accelerator (the KVM probe's outcome, or the override)
    l1_accel_options: str = ""  # -accel options from $SERIESGATE_L1_ACCEL ("" = default)
    l1_qemu: str = ""  # VM mode: the L1 QEMU's version line (l1qemu.version; host mode: "")
    l1_smp: int = 0  # VM mode: L1 vCPUs (vm.l1_smp, $SERIESGATE_L1_SMP; host mode: 0)
    # VM mode: overridden L1 settings (vm.l1_overrides: -cpu, extra kernel parameters)
    l1_overrides: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceSpec:
    """A device to create: its name and MAC (a migration pair shares one MAC)."""

    name: str
    mac: str = DEFAULT_MAC
    mgmtdev: str = "vdpasim_net"
