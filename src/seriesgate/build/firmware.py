"""Firmware for the QEMU under test: Debian's packages, passed with ``-L``.

The Debian ``+ds`` source strips pc-bios blobs, and the option ROMs are not
built (configure finds no 16-bit-capable target compiler here), so the binary
takes BIOS, VGA BIOS, option ROMs and the virtio NIC ROM from Debian:

- seabios:          bios-256k.bin, vgabios-*.bin   (/usr/share/seabios)
- qemu-system-data: kvmvapic.bin, linuxboot_dma.bin, pvh.bin, multiboot_dma.bin
                    (/usr/share/qemu; Debian 12 ships them from QEMU 7.2: the
                    option-ROM interfaces (fw_cfg DMA, PVH) are unchanged, and the
                    slow test boots -M pc and -M q35 with virtio-net on them)
- ipxe-qemu:        efi-virtio.rom                 (/usr/lib/ipxe/qemu)
"""

from __future__ import annotations

from pathlib import Path

from seriesgate.errors import InfraError

# (directory, Debian package) in -L search order.
FIRMWARE_DIRS: tuple[tuple[Path, str], ...] = (
    (Path("/usr/share/qemu"), "qemu-system-data"),
    (Path("/usr/share/seabios"), "seabios"),
    (Path("/usr/lib/ipxe/qemu"), "ipxe-qemu"),
)
# What an x86_64 -M pc / -M q35 boot with virtio-net (and -kernel) loads.
REQUIRED_FILES: dict[str, str] = {
    "bios-256k.bin": "seabios",
    "vgabios-stdvga.bin": "seabios",
    "kvmvapic.bin": "qemu-system-data",
    "linuxboot_dma.bin": "qemu-system-data",
    "efi-virtio.rom": "ipxe-qemu",
}


def firmware_dirs(dirs: tuple[tuple[Path, str], ...] = FIRMWARE_DIRS) -> tuple[Path, ...]:
    """The ``-L`` directories, checked: every file a test boot needs is in one of them."""
    present = tuple(d for d, _ in dirs if d.is_dir())
    missing = {
        name: package
        for name, package in REQUIRED_FILES.items()
        if not any((d / name).exists() for d in present)
    }
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        raise InfraError(
            f"firmware missing for the QEMU under test: {', '.join(sorted(missing))}: "
            f"install Debian package(s) {packages}",
            hint="bash ci/setup-host.sh installs them",
        )
    return present
