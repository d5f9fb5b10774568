"""Build and cache the test VM assets from Debian packages (fetched by name, never installed).

Layout under ``cache_dir()/testenv/``::

    downloads/                       .deb files (apt-get download), shared by kernel versions
    <kver>/manifest.json             what was built from what (pinned versions, patches)
    <kver>/vmlinuz                   Debian's 6.12 kernel (L1 and L2)
    <kver>/root/lib/modules/<kver>/  its modules + extra/{vringh,vdpa_sim,vdpa_sim_net}.ko,
                                     depmod'ed: ``modprobe -d <kver>/root`` inside L1
    <kver>/l1-initrd.cpio            L1 init: 9p host root, overlays, runs one command
    <kver>/l2-initrd.cpio            L2 init: virtio_net, sgpkt, the serial agent

The test device is built with one change to the stock source, recorded in the manifest:
``VDPASIM_QUEUE_MAX`` 256 → 1024, because QEMU 10.0.x forces 1024-entry virtqueues and the
stock simulator refuses them (vhost falls back to userspace virtio: a dead vDPA datapath).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from seriesgate import proc
from seriesgate.errors import CommandError, InfraError
from seriesgate.paths import cache_dir
from seriesgate.progress import say, step
from seriesgate.testenv.initramfs import Initramfs
from seriesgate.testenv.model import GuestImage

STAGE = "testenv"
MANIFEST_VERSION = 5  # bump when the asset layout or contents change
FLAVOUR = "amd64"
SOURCE_PACKAGE = "linux-source-6.12"
KERNEL_ENV = "SERIESGATE_TESTENV_KERNEL"  # pin an ABI, e.g. "6.12.117+deb12"
RESOLVE_MAX_AGE = 12 * 3600  # re-ask apt for the newest kernel at most this often

QUEUE_MAX_PATCH = ("#define VDPASIM_QUEUE_MAX 256", "#define VDPASIM_QUEUE_MAX 1024")
OUR_MODULES = ("vringh", "vdpa_sim", "vdpa_sim_net")
SOURCE_FILES = (
    "drivers/vhost/vringh.c",
    "drivers/vdpa/vdpa_sim/vdpa_sim.c",
    "drivers/vdpa/vdpa_sim/vdpa_sim.h",
    "drivers/vdpa/vdpa_sim/vdpa_sim_net.c",
)
L1_MODULES = ("netfs", "9pnet", "9pnet_virtio", "9p", "overlay")
L2_MODULES = ("virtio_net",)
# Loaded inside L1 by modprobe: stored decompressed, since the kernel's xz decompression
# under TCG costs seconds per run (kvm.ko alone is 1.5 MB of xz).
L1_RUNTIME_MODULES = ("vhost_vdpa", "kvm_amd", "kvm_intel")
L1_VDPA_MODULES = ("vhost_vdpa", "vdpa_sim_net")  # vdpa_sim and vringh come as dependencies
# Every port access of L2 is an exit through KVM-in-TCG: skip keyboard/mouse probing, the
# unused UARTs and the TSC/timer checks (guest boot 28-30 s -> ~20 s, loaded machine);
# pci=noearly skips the early PCI scans (AGP aperture search: ~4 s of port I/O).
L2_APPEND = (
    "console=ttyS0 panic=-1 quiet sgagent=ttyS1 tsc=reliable no_timer_check "
    "8250.nr_uarts=2 i8042.noaux i8042.nokbd i8042.nopnp pci=noearly"
)
BUSYBOX = Path("/bin/busybox")
GUEST_SOURCES = ("l1init.sh", "l2init.sh", "sgagent.sh", "sgpkt.c")


@dataclass(frozen=True)
class KernelPin:
    """One Debian 6.12 kernel build: the ABI name and the package version of every part."""

    abi: str  # "6.12.117+deb12"
    version: str  # Debian package version "6.12.117-1~deb12u1"

    @property
    def kver(self) -> str:
        return f"{self.abi}-{FLAVOUR}"

    @property
    def packages(self) -> dict[str, str]:
        """Package name → role; every one at ``self.version``."""
        return {
            f"linux-image-{self.kver}-unsigned": "image",
            f"linux-headers-{self.kver}": "headers",
            f"linux-headers-{self.abi}-common": "headers-common",
            f"linux-kbuild-{self.abi}": "kbuild",
            SOURCE_PACKAGE: "source",
        }


@dataclass(frozen=True)
class Assets:
    """A complete, validated asset directory."""

    dir: Path
    kver: str
    vmlinuz: Path
    modules_root: Path  # for `modprobe -d`
    l1_initrd: Path
    l2_initrd: Path
    manifest: dict[str, Any]

    @property
    def l2_guest(self) -> GuestImage:
        return GuestImage(kernel=self.vmlinuz, initrd=self.l2_initrd, append=L2_APPEND)


def testenv_cache() -> Path:
    path = cache_dir() / "testenv"
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- resolving the kernel ------------------------------------------------------------------


def parse_madison(text: str) -> list[tuple[str, str]]:
    """``apt-cache madison`` lines → [(package, version)], in apt's order (newest first)."""
    rows = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3 and parts[0] and parts[1]:
            rows.append((parts[0], parts[1]))
    return rows


def abi_of(version: str) -> str:
    """Debian package version → kernel ABI name: "6.12.117-1~deb12u1" → "6.12.117+deb12"."""
    match = re.fullmatch(r"(\d+\.\d+\.\d+)-[^~]+~(deb\d+)u\d+", version)
    if not match:
        raise InfraError(f"unexpected {SOURCE_PACKAGE} version {version!r}")
    return f"{match.group(1)}+{match.group(2)}"


def _madison(*packages: str) -> list[tuple[str, str]]:
    result = proc.run(["apt-cache", "madison", *packages], timeout=60, check=False)
    return parse_madison(result.stdout)


def resolve_kernel(pin_abi: str | None = None) -> KernelPin:
    """The newest 6.12 kernel whose image, headers, kbuild and source all share one version.

    ``pin_abi`` (or $SERIESGATE_TESTENV_KERNEL) selects one ABI, e.g. "6.12.117+deb12".
    """
    pin_abi = pin_abi or os.environ.get(KERNEL_ENV) or None
    sources = [v for p, v in _madison(SOURCE_PACKAGE) if p == SOURCE_PACKAGE]
    tried: list[str] = []
    for version in dict.fromkeys(sources):
        abi = abi_of(version)
        if pin_abi and abi != pin_abi:
            continue
        pin = KernelPin(abi, version)
        others = [p for p in pin.packages if p != SOURCE_PACKAGE]
        have = {(p, v) for p, v in _madison(*others)}
        tried.append(f"linux-image-{pin.kver}-unsigned={version}")
        if all((p, version) in have for p in others):
            return pin
    wanted = f"linux-image-{pin_abi}-{FLAVOUR}-unsigned" if pin_abi else "a 6.12 kernel"
    if tried:
        detail = f"tried: {', '.join(tried)}"
    elif sources:
        detail = f"{SOURCE_PACKAGE} in apt has only {', '.join(dict.fromkeys(sources))}"
    else:
        detail = f"no {SOURCE_PACKAGE} in apt"
    raise InfraError(
        f"kernel package not found: {wanted} with matching headers/kbuild/{SOURCE_PACKAGE} "
        f"({detail})",
        hint="run `apt-get update`, or pin another ABI with $" + KERNEL_ENV,
    )


def cached_resolution() -> KernelPin:
    """``resolve_kernel()``, remembered for RESOLVE_MAX_AGE (apt-cache takes ~1.5 s)."""
    memo = testenv_cache() / "resolved.json"
    pin_abi = os.environ.get(KERNEL_ENV) or None
    try:
        data = json.loads(memo.read_text())
        if time.time() - float(data["at"]) < RESOLVE_MAX_AGE and data.get("pin") == pin_abi:
            return KernelPin(str(data["abi"]), str(data["version"]))
    except (OSError, ValueError, KeyError):
        pass
    pin = resolve_kernel(pin_abi)
    memo.write_text(
        json.dumps({"abi": pin.abi, "version": pin.version, "pin": pin_abi, "at": time.time()})
    )
    return pin


# -- helpers ---------------------------------------------------------------------------------


@contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive flock on ``path``; say so once if someone else holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(STAGE, f"waiting for {what} (lock {path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def l1_lock(why: str) -> Iterator[None]:
    """The lock every L1 run holds: one L1 at a time, and assets are replaced only while no
    L1 uses them. Fair between two parties: a waiter holds ``l1.queue`` while it waits, so
    whoever just released ``l1.lock`` cannot take it again ahead of the waiter (flock alone
    lets a process that loops over runs starve everyone else)."""
    base = testenv_cache()
    with file_lock(base / "l1.queue", why), open(base / "l1.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(STAGE, f"waiting for {why} (lock {base / 'l1.lock'})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        held = handle
        # The queue lock is released on leaving this `with`; keep l1.lock through a dup.
        fd = os.dup(held.fileno())
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _check_disk(path: Path, need_mb: int) -> None:
    free = shutil.disk_usage(path).free // (1 << 20)
    if free < need_mb:
        raise InfraError(
            f"disk full: {free} MB free under {path}, the test VM assets need ~{need_mb} MB",
            hint="free space or point $SERIESGATE_CACHE elsewhere",
        )


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """modules.dep → {module path: [dependency paths]}."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" in line:
            mod, rest = line.split(":", 1)
            deps[mod.strip()] = rest.split()
    return deps


def module_name(path: str) -> str:
    """ "kernel/fs/9p/9p.ko.xz" → "9p" (kmod treats '-' and '_' alike)."""
    base = path.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def load_order(deps: dict[str, list[str]], wanted: Sequence[str]) -> list[str]:
    """Module paths to insmod, dependencies first, for the module names ``wanted``."""
    by_name = {module_name(p): p for p in deps}
    order: list[str] = []
    seen: set[str] = set()

    def visit(path: str) -> None:
        if path in seen:
            return
        seen.add(path)
        for dep in deps.get(path, []):
            visit(dep)
        order.append(path)

    for name in wanted:
        path = by_name.get(name.replace("-", "_"))
        if path is None:
            raise InfraError(f"kernel module {name} is not in this kernel's modules.dep")
        visit(path)
    return order


def _download(pin: KernelPin, downloads: Path) -> dict[str, Path]:
    """apt-get download every package of ``pin`` (skipping ones already there)."""
    downloads.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    missing = []
    for package in pin.packages:
        found = sorted(downloads.glob(f"{package}_{pin.version.replace(':', '%3a')}_*.deb"))
        if found:
            files[package] = found[0]
        else:
            missing.append(package)
    if missing:
        _check_disk(downloads, 600)
        with step(STAGE, f"download {len(missing)} kernel packages ({pin.version})"):
            proc.run(
                ["apt-get", "download", "-q", *[f"{p}={pin.version}" for p in missing]],
                cwd=downloads,
                timeout=900,
                what="apt-get download",
                hint="check apt's network access; `apt-get update` may help",
            )
        for package in missing:
            found = sorted(downloads.glob(f"{package}_*.deb"))
            if not found:
                raise InfraError(f"apt-get download did not produce {package}")
            files[package] = found[-1]
    return files


def _extract_sources(source_deb: Path, dest: Path) -> None:
    """The four test-device source files out of linux-source-6.12.tar.xz inside the .deb."""
    top = "linux-source-6.12"
    names = [f"{top}/{f}" for f in SOURCE_FILES]
    dest.mkdir(parents=True, exist_ok=True)
    # dpkg-deb | tar -xO (inner tarball) | tar -xJ --occurrence (stops once all are found)
    p1 = subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(source_deb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    p2 = subprocess.Popen(
        ["tar", "-xO", f"./usr/src/{top}.tar.xz"],
        stdin=p1.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert p1.stdout is not None and p2.stdout is not None
    p1.stdout.close()
    argv = ["tar", "-xJ", "-C", str(dest), "--occurrence=1", *names]
    p3 = subprocess.Popen(
        argv, stdin=p2.stdout, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    p2.stdout.close()
    try:
        _, err = p3.communicate(timeout=300)
    finally:
        for p in (p1, p2, p3):
            proc.kill_group(p)
            p.wait()
    missing = [n for n in names if not (dest / n).is_file()]
    if p3.returncode != 0 or missing:
        raise CommandError(
            f"cannot extract {', '.join(missing) or 'sources'} from {source_deb.name}",
            argv=argv,
            returncode=p3.returncode,
            output=proc.tail(err),
        )


def _patch_queue_max(source: Path) -> str:
    text = source.read_text()
    old, new = QUEUE_MAX_PATCH
    if old not in text:
        raise InfraError(
            f"{source.name}: `{old}` not found; the test device's queue-max fix needs updating"
        )
    source.write_text(text.replace(old, new))
    return f"drivers/vdpa/vdpa_sim/vdpa_sim.c: {old} -> {new}"


def _build_modules(pin: KernelPin, hdr_root: Path, src_root: Path, build: Path) -> list[Path]:
    """Build vringh/vdpa_sim/vdpa_sim_net out of tree against the unpacked headers."""
    headers = hdr_root / "usr/src" / f"linux-headers-{pin.kver}"
    common = hdr_root / "usr/src" / f"linux-headers-{pin.abi}-common"
    # The arch headers' Makefile includes -common by an absolute /usr/src path: repoint it.
    (headers / "Makefile").write_text(f"include {common}/Makefile\n")
    build.mkdir(parents=True, exist_ok=True)
    for rel in SOURCE_FILES:
        shutil.copy2(src_root / "linux-source-6.12" / rel, build / Path(rel).name)
    (build / "Kbuild").write_text(
        "# seriesgate: the vdpa_sim test device, out of tree\n"
        "obj-m += " + " ".join(f"{m}.o" for m in OUR_MODULES) + "\n"
    )
    argv = [
        "make",
        "-C",
        str(headers),
        f"M={build}",
        "CONFIG_DEBUG_INFO_BTF_MODULES=",  # no pahole needed
        f"-j{os.cpu_count() or 2}",
        "modules",
    ]
    result = proc.run(argv, timeout=600, check=False, what="module build")
    (build / "build.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        errors = [ln for ln in (result.stdout + result.stderr).splitlines() if "error" in ln]
        first = " | ".join(errors[:3]) or proc.tail(result.stderr, 3)
        raise CommandError(
            f"vdpa_sim module build failed: {first}",
            argv=argv,
            returncode=result.returncode,
            output=proc.tail(result.stdout + result.stderr),
            hint=f"full log: {build / 'build.log'}",
        )
    return [build / f"{m}.ko" for m in OUR_MODULES]


def _compile_sgpkt(out: Path) -> None:
    source = resources.files("seriesgate.testenv").joinpath("sgpkt.c")
    with resources.as_file(source) as src:
        proc.run(
            ["gcc", "-static", "-O2", "-s", "-Wall", "-o", str(out), str(src)],
            timeout=120,
            what="gcc sgpkt",
            hint="needs gcc and libc6-dev (static glibc) from build-essential",
        )


def _package_script(name: str) -> bytes:
    return resources.files("seriesgate.testenv").joinpath(name).read_bytes()


def _base_initramfs(init_script: str) -> Initramfs:
    img = Initramfs()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "run", "root", "lib/modules"):
        img.add_dir(d)
    img.add_char_device("dev/console", 5, 1)
    img.add_char_device("dev/null", 1, 3, 0o666)
    img.add_path("bin/busybox", BUSYBOX, 0o755)
    img.add_file("init", _package_script(init_script), 0o755)
    return img


def _add_modules(
    img: Initramfs, mod_dir: Path, order: list[str], list_name: str = "load-order"
) -> None:
    """Decompressed copies (busybox insmod cannot read .ko.xz) plus their load order."""
    names = []
    for rel in order:
        data = (mod_dir / rel).read_bytes()
        if rel.endswith(".xz"):
            data = lzma.decompress(data)
        name = f"{module_name(rel)}.ko"
        img.add_file(f"lib/modules/{name}", data)
        names.append(name)
    img.add_file(f"lib/modules/{list_name}", ("\n".join(names) + "\n").encode())


def _busybox_links(img: Initramfs) -> None:
    result = proc.run([str(BUSYBOX), "--list"], timeout=10)
    for applet in result.stdout.split():
        img.add_symlink(f"bin/{applet}", "busybox")


def _package_version(name: str) -> str:
    result = proc.run(["dpkg-query", "-W", "-f=${Version}", name], timeout=10, check=False)
    return result.stdout.strip() or "unknown"


# -- building and validating -----------------------------------------------------------------


def guest_sources_digest() -> str:
    """Hash of the packaged guest-side sources: a change rebuilds the initramfs images."""
    digest = hashlib.sha256()
    for name in GUEST_SOURCES:
        digest.update(name.encode() + b"\0" + _package_script(name) + b"\0")
    digest.update(L2_APPEND.encode())
    return digest.hexdigest()[:16]


def write_initramfs(out: Path, kver: str, work: Path) -> str:
    """(Re)write out/l1-initrd.cpio and out/l2-initrd.cpio; return the sources' digest."""
    moddir = out / "root/lib/modules" / kver
    deps = parse_modules_dep((moddir / "modules.dep").read_text())

    l1 = _base_initramfs("l1init.sh")
    _busybox_links(l1)
    _add_modules(l1, moddir, load_order(deps, L1_MODULES))
    # The test device and KVM, insmod'ed by the L1 init itself: modprobe over 9p under TCG
    # took seconds (index files, exec of kmod), busybox insmod from RAM does not.
    _add_modules(l1, moddir, load_order(deps, L1_VDPA_MODULES), "vdpa-order")
    _add_modules(l1, moddir, load_order(deps, ["kvm_amd"]), "kvm-amd-order")
    _add_modules(l1, moddir, load_order(deps, ["kvm_intel"]), "kvm-intel-order")
    l1.write(out / "l1-initrd.cpio")

    work.mkdir(parents=True, exist_ok=True)
    _compile_sgpkt(work / "sgpkt")
    l2 = _base_initramfs("l2init.sh")
    _busybox_links(l2)
    l2.add_path("bin/sgpkt", work / "sgpkt", 0o755)
    l2.add_file("bin/sgagent.sh", _package_script("sgagent.sh"), 0o755)
    _add_modules(l2, moddir, load_order(deps, L2_MODULES))
    l2.write(out / "l2-initrd.cpio")
    return guest_sources_digest()


def _refresh_initramfs(adir: Path, manifest: dict[str, Any]) -> None:
    """Rebuild only the initramfs images (guest scripts changed); update the manifest."""
    work = adir.parent / f".initramfs-{os.getpid()}"
    try:
        with l1_lock("the running L1 test VM to finish before replacing its initramfs"):
            manifest["initramfs_digest"] = write_initramfs(adir, str(manifest["kver"]), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for rel in manifest["files"]:
        manifest["files"][rel] = (adir / rel).stat().st_size
    tmp = adir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(adir / "manifest.json")


def _validate(adir: Path) -> Assets | None:
    """The assets in ``adir`` if its manifest says complete and every file is there."""
    try:
        manifest = json.loads((adir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        return None
    for rel, size in manifest.get("files", {}).items():
        path = adir / rel
        if not path.is_file() or path.stat().st_size != size:
            return None
    kver = str(manifest["kver"])
    return Assets(
        dir=adir,
        kver=kver,
        vmlinuz=adir / "vmlinuz",
        modules_root=adir / "root",
        l1_initrd=adir / "l1-initrd.cpio",
        l2_initrd=adir / "l2-initrd.cpio",
        manifest=manifest,
    )


def ensure_assets(*, rebuild: bool = False) -> Assets:
    """Return validated assets for the newest (or pinned) 6.12 kernel, building if needed."""
    pin = cached_resolution()
    base = testenv_cache()
    adir = base / pin.kver
    if not rebuild:
        found = _validate(adir)
        if found is not None and found.manifest.get("initramfs_digest") == guest_sources_digest():
            return found
    with file_lock(base / "build.lock", "another asset build"):
        if not rebuild:
            found = _validate(adir)  # built meanwhile by someone else
            if found is not None:
                if found.manifest.get("initramfs_digest") != guest_sources_digest():
                    with step(STAGE, "rebuild the test VM initramfs (guest scripts changed)"):
                        _refresh_initramfs(adir, dict(found.manifest))
                    refreshed = _validate(adir)
                    if refreshed is not None:
                        return refreshed
                else:
                    return found
        _check_disk(base, 1500)
        with step(STAGE, f"build test VM assets for {pin.kver}"):
            _build(pin, base, adir)
    built = _validate(adir)
    if built is None:
        raise InfraError(f"test VM assets in {adir} are incomplete right after the build")
    return built


def _build(pin: KernelPin, base: Path, adir: Path) -> None:
    debs = _download(pin, base / "downloads")
    work = base / f".build-{pin.kver}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        _build_in(pin, debs, work)
        old = adir.with_name(adir.name + f".old-{os.getpid()}")
        with l1_lock("the running L1 test VM to finish before replacing its assets"):
            if adir.exists():
                adir.rename(old)
            (work / "out").rename(adir)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        if exc.errno == 28:  # ENOSPC
            raise InfraError(f"disk full while building test VM assets in {work}") from None
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build_in(pin: KernelPin, debs: dict[str, Path], work: Path) -> None:
    out = work / "out"
    out.mkdir()
    image_deb = debs[f"linux-image-{pin.kver}-unsigned"]
    hdr = work / "headers"
    src = work / "src"

    def unpack_image() -> None:
        proc.run(["dpkg-deb", "-x", str(image_deb), str(work / "image")], timeout=300)

    def unpack_headers() -> None:
        for role in ("headers", "headers-common", "kbuild"):
            deb = next(debs[p] for p, r in pin.packages.items() if r == role)
            proc.run(["dpkg-deb", "-x", str(deb), str(hdr)], timeout=300)

    # The source extraction reads a 150 MB .xz: run it next to the other unpacking.
    with ThreadPoolExecutor(max_workers=3) as pool:
        jobs = [
            pool.submit(_extract_sources, debs[SOURCE_PACKAGE], src),
            pool.submit(unpack_image),
            pool.submit(unpack_headers),
        ]
        for job in jobs:
            job.result()

    patch_note = _patch_queue_max(src / "linux-source-6.12" / SOURCE_FILES[1])
    kos = _build_modules(pin, hdr, src, work / "modbuild")

    # Module tree for `modprobe -d out/root`: the package's modules + ours in extra/.
    moddir = out / "root/lib/modules" / pin.kver
    moddir.parent.mkdir(parents=True)
    (work / "image/lib/modules" / pin.kver).rename(moddir)
    (moddir / "extra").mkdir(exist_ok=True)
    for ko in kos:
        # Debian's own modules carry no debug info; ours would be 10x bigger with it.
        proc.run(["strip", "--strip-debug", "-o", str(moddir / "extra" / ko.name), str(ko)])
    proc.run(["depmod", "-b", str(out / "root"), pin.kver], timeout=120, what="depmod")
    deps = parse_modules_dep((moddir / "modules.dep").read_text())
    for rel in load_order(deps, L1_RUNTIME_MODULES):
        if rel.endswith(".xz"):
            packed = moddir / rel
            packed.with_suffix("").write_bytes(lzma.decompress(packed.read_bytes()))
            packed.unlink()
    proc.run(["depmod", "-b", str(out / "root"), pin.kver], timeout=120, what="depmod")
    shutil.copy2(next((work / "image/boot").glob("vmlinuz-*")), out / "vmlinuz")
    shutil.copy2(next((work / "image/boot").glob("config-*")), out / "config")
    initramfs_digest = write_initramfs(out, pin.kver, work)

    files = ["vmlinuz", "l1-initrd.cpio", "l2-initrd.cpio", "config"]
    files += [f"root/lib/modules/{pin.kver}/extra/{m}.ko" for m in OUR_MODULES]
    files.append(f"root/lib/modules/{pin.kver}/modules.dep")
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "kver": pin.kver,
        "kernel_abi": pin.abi,
        "package_version": pin.version,
        "packages": {p: f"{pin.version} ({debs[p].name})" for p in pin.packages},
        "busybox_static": _package_version("busybox-static"),
        "test_device_patches": [patch_note],
        "test_device_note": (
            "vdpa_sim is the test device, not code under test: built with a 1024-entry "
            "queue max because QEMU 10.0.x forces 1024-entry virtqueues"
        ),
        "l2_append": L2_APPEND,
        "initramfs_digest": initramfs_digest,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": {rel: (out / rel).stat().st_size for rel in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
