"""How QEMU is configured for the gate, what the build needs from the host, the cache key.

The configuration is what the tests need and no more: x86_64 system emulation
with vhost-vdpa, vhost-net/kernel, TCG and KVM (the test VM has nested KVM),
the ``log`` trace backend. ``--enable-werror`` is explicit: QEMU turns it on
by itself only in git checkouts, so without it the verdict would depend on
whether the source came from git or a tarball; maintainers build with it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from seriesgate.errors import InfraError

# The feature set (the cache key is made from these, the compiler and the base version).
CONFIGURE_OPTIONS: tuple[str, ...] = (
    "--target-list=x86_64-softmmu",
    "--without-default-features",
    "--enable-vhost-vdpa",
    "--enable-vhost-net",
    "--enable-vhost-kernel",
    "--enable-tcg",
    "--enable-kvm",
    "--enable-trace-backends=log",
    "--disable-install-blobs",
    "--enable-werror",
    # Never let meson reach for subprojects over the network: a missing library is
    # then a clear "not found" naming it (mapped to a Debian package below).
    "--disable-download",
)
# Built instead of the default "all": the tests need the system emulator only.
NINJA_TARGETS: tuple[str, ...] = ("qemu-system-x86_64",)
BINARY_NAME = "qemu-system-x86_64"
MIN_MESON = (1, 5)

# Programs the build runs, and the Debian package that provides each.
REQUIRED_PROGRAMS: dict[str, str] = {
    "cc": "build-essential",
    "ninja": "ninja-build",
    "pkg-config": "pkg-config",
    "flex": "flex",
    "bison": "bison",
    "ccache": "ccache",
    "perl": "perl",
    "git": "git",
}
# Names meson/configure use for a missing dependency -> Debian package.
DEPENDENCY_PACKAGES: dict[str, str] = {
    "glib-2.0": "libglib2.0-dev",
    "gmodule-2.0": "libglib2.0-dev",
    "gio-2.0": "libglib2.0-dev",
    "gthread-2.0": "libglib2.0-dev",
    "pixman-1": "libpixman-1-dev",
    "zlib": "zlib1g-dev",
    "fdt": "libfdt-dev",
    "dtc": "libfdt-dev",
    "libfdt": "libfdt-dev",
    "flex": "flex",
    "bison": "bison",
    "ninja": "ninja-build",
    "pkg-config": "pkg-config",
    "keycodemapdb": "qemu source with subprojects (not a package: the tree is incomplete)",
}
_MISSING_PATTERNS = (
    re.compile(r"Dependency \"?(?P<name>[\w.+-]+)\"? not found"),
    re.compile(r"Run-time dependency (?P<name>[\w.+-]+) found: NO"),
    re.compile(r"Library (?P<name>[\w.+-]+) found: NO"),
    re.compile(r"Program '?(?P<name>[\w.+-]+)'? not found"),
    re.compile(r"Subproject (?P<name>[\w.+-]+) is buildable: NO"),
    re.compile(r"ERROR: Cannot find (?P<name>[\w.+-]+)"),
)


def check_host_programs() -> None:
    """Fail early, naming the Debian package, when a build program is missing."""
    missing = sorted({pkg for prog, pkg in REQUIRED_PROGRAMS.items() if not shutil.which(prog)})
    if missing:
        raise InfraError(
            f"QEMU build tools missing: install Debian package(s) {' '.join(missing)}",
            hint="bash ci/setup-host.sh installs them",
        )


def python_with_meson() -> str:
    """The Python configure should use: ours, which carries meson >= 1.5 from PyPI.

    The Debian ``+ds`` source strips python/wheels, so configure cannot install
    the meson it needs; it takes the one importable from ``--python``.
    """
    try:
        out = subprocess.run(
            [sys.executable, "-c", "import mesonbuild.coredata as c; print(c.version)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (subprocess.CalledProcessError, OSError):
        raise InfraError(
            f"meson is not importable from {sys.executable}",
            hint="pip install -e '.[dev]' in the venv (pyproject.toml pins meson)",
        ) from None
    version = tuple(int(p) for p in re.findall(r"\d+", out)[:2])
    if version < MIN_MESON:
        raise InfraError(f"meson {out} is too old: QEMU 10 needs >= 1.5 (pyproject.toml pins it)")
    return sys.executable


def compiler_identity() -> str:
    """``cc --version``'s first line: part of the cache key (another gcc, another build)."""
    out = subprocess.run(["cc", "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "unknown"


def configure_argv(source_dir: Path, python: str) -> tuple[str, ...]:
    """The exact configure command line (recorded in build.json)."""
    return (
        str(source_dir / "configure"),
        f"--python={python}",
        "--cc=ccache cc",
        *CONFIGURE_OPTIONS,
    )


def build_key(base_version: str) -> str:
    """Cache key of a build directory: base version + configure options + compiler."""
    digest = hashlib.sha256()
    for part in (base_version, *CONFIGURE_OPTIONS, *NINJA_TARGETS, compiler_identity()):
        digest.update(part.encode())
        digest.update(b"\0")
    safe = re.sub(r"[^\w.+-]", "_", base_version)[:40]
    return f"{safe}-{digest.hexdigest()[:12]}"


def missing_dependency(configure_output: str) -> InfraError | None:
    """The configure failure as a one-line error naming the Debian package, if it is one.

    ``ERROR`` lines decide first; "found: NO" lines also appear for optional
    libraries, so they count only for dependencies known to be required.
    """
    lines = configure_output.splitlines()
    ordered = [ln for ln in lines if "ERROR" in ln] + [ln for ln in lines if "ERROR" not in ln]
    for line in ordered:
        for pattern in _MISSING_PATTERNS:
            match = pattern.search(line)
            if match is None:
                continue
            name = match["name"]
            package = DEPENDENCY_PACKAGES.get(name)
            if package is not None:
                return InfraError(
                    f"QEMU configure failed: {name} not found: install Debian package {package}",
                    hint="bash ci/setup-host.sh installs the build dependencies",
                )
            if "ERROR" in line:
                return InfraError(
                    f"QEMU configure failed: {name} not found",
                    hint="install its Debian -dev package and add it to ci/setup-host.sh",
                )
    return None


def ccache_env(cache: Path) -> dict[str, str]:
    """ccache shared by every build dir: paths under the cache are hashed relative."""
    return {
        "CCACHE_DIR": str(cache / "ccache"),
        "CCACHE_BASEDIR": str(cache),
        # -g puts the cwd into the object; without this, two build dirs never share hits.
        "CCACHE_NOHASHDIR": "1",
        # Misses (every cold build) skip ccache's extra preprocessor run: the -MD
        # dependency file meson asks gcc for is enough to key the entry.
        "CCACHE_DEPEND": "1",
        "CCACHE_MAXSIZE": os.environ.get("CCACHE_MAXSIZE", "5G"),
    }
