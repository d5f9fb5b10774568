"""Typed result of the testenv stage: where vdpa_sim devices exist and how to use them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


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


@dataclass(frozen=True)
class GuestImage:
    """L2 guest: kernel + initramfs with virtio_net and a serial agent."""

    kernel: Path
    initrd: Path
    append: str  # kernel command line the agent expects


@dataclass(frozen=True)
class TestEnv:
    mode: Mode
    kernel_version: str  # of the kernel the devices live in
    l2_guest: GuestImage
    assets_dir: Path  # cache dir holding kernel, modules, initramfs
    l1_kvm: bool  # VM mode: whether L2 can use KVM inside L1 (host mode: /dev/kvm usable)
