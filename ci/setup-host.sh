#!/bin/bash
# Install the Debian packages seriesgate needs on a fresh Debian 12 host.
# Idempotent: skips apt when every package is already installed.
set -euo pipefail

PACKAGES=(
  # QEMU build (configure + ninja); meson itself comes from PyPI (the tree needs >= 1.5)
  build-essential ninja-build pkg-config libglib2.0-dev flex bison ccache
  zlib1g-dev libpixman-1-dev libfdt-dev git patch perl python3-venv
  # firmware for the QEMU under test (the Debian source tarball strips blobs)
  seabios qemu-system-data ipxe-qemu
  # the L1 test VM: Debian's own QEMU runs it (infrastructure, not under test)
  qemu-system-x86 qemu-utils
  # test VM assets and devices
  busybox-static kmod iproute2 xz-utils zstd cpio dpkg-dev dwarves
  # crash capture
  gdb
  # the report's browser check (make check renders report.html in headless Chromium)
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup-host: installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup-host: Debian packages ready"
