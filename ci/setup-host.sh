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

# A second L1 QEMU, bookworm-backports' (10.0.x), unpacked into the cache next to the system's
# 7.2 (both stay usable; $SERIESGATE_L1_QEMU=system|backports picks one, see
# src/seriesgate/testenv/l1qemu.py and docs/findings.md §5). A deb822 source for
# bookworm-backports only (the same mirror and keyring as the system's bookworm entry); its
# packages have pin priority 100, so nothing on the system is upgraded from it.
BPO_SOURCES=/etc/apt/sources.list.d/seriesgate-bookworm-backports.sources
BPO_PACKAGES=(qemu-system-x86 qemu-system-common qemu-system-data seabios)
BPO_ROOT="${SERIESGATE_CACHE:-$HOME/.cache/seriesgate}/l1-qemu/bookworm-backports"
bpo_version() {
  apt-cache policy qemu-system-x86 2>/dev/null | awk '$1 ~ /^[0-9]/ && $1 ~ /~bpo12/ {print $1; exit}'
}
# Optional (the default L1 QEMU is the system's): a failure here warns and leaves the rest of
# the setup standing. Every step checks its own result (set -e does not apply in a `||` list).
setup_backports_qemu() {
  if [[ ! -f $BPO_SOURCES ]]; then
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    printf '%s\n' \
      "# Added by seriesgate: bookworm-backports (binaries for the L1 test VM's QEMU only)." \
      "Types: deb" \
      "URIs: ${uri:-http://deb.debian.org/debian}" \
      "Suites: bookworm-backports" \
      "Components: main" \
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" >"$BPO_SOURCES" || return 1
    apt-get update -qq || return 1
  fi
  want=$(bpo_version)
  if [[ -z $want ]]; then
    apt-get update -qq || return 1
    want=$(bpo_version)
  fi
  if [[ -z $want ]]; then
    echo "setup-host: bookworm-backports has no qemu-system-x86: the L1 stays on the system QEMU" >&2
    return 0
  fi
  [[ "$(cat "$BPO_ROOT/.version" 2>/dev/null)" == "$want" ]] && return 0
  echo "setup-host: unpacking bookworm-backports QEMU $want for the L1 test VM into $BPO_ROOT"
  local tmp deb bin
  tmp=$(mktemp -d) || return 1
  chown _apt "$tmp" 2>/dev/null || true # apt's sandbox user writes the downloads there
  (cd "$tmp" && apt-get download -qq -t bookworm-backports "${BPO_PACKAGES[@]}") || { rm -rf "$tmp"; return 1; }
  rm -rf "$BPO_ROOT.new"
  mkdir -p "$BPO_ROOT.new" || return 1
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$BPO_ROOT.new" || { rm -rf "$tmp"; return 1; }; done
  rm -rf "$tmp"
  bin="$BPO_ROOT.new/usr/bin/qemu-system-x86_64"
  [[ -x $bin ]] || return 1
  if ldd "$bin" | grep 'not found' >&2; then
    echo "setup-host: the backports QEMU needs libraries this system lacks" >&2
    return 1
  fi
  echo "$want" >"$BPO_ROOT.new/.version" || return 1
  rm -rf "$BPO_ROOT"
  mv "$BPO_ROOT.new" "$BPO_ROOT"
}
want=""
setup_backports_qemu || echo "setup-host: warning: the bookworm-backports L1 QEMU is not available (SERIESGATE_L1_QEMU=backports will say so); the default L1 QEMU is unaffected" >&2
echo "setup-host: L1 QEMUs ready: system $(qemu-system-x86_64 --version | head -n1 | awk '{print $4}'), backports ${want:-none}"
