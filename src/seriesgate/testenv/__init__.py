"""testenv stage: vdpa_sim devices wherever the tests run.

- ``prepare(mode=None) -> TestEnv``: choose host or VM mode (or take ``mode``), build and
  cache the VM assets, return the typed result.
- ``run_in_env(env, argv, *, results_dir, devices=2, timeout, ...) -> int``: create the
  devices (inside the L1 test VM in VM mode) and run ``argv`` with ``$SERIESGATE_TESTENV``.
- Inside the command: ``seriesgate.testenv.environment.VdpaEnvironment.from_env()``.
- The L2 guest: ``seriesgate.testenv.agent`` (``l2_qemu_args``, ``GuestAgent``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from seriesgate.errors import InfraError, SeriesgateError
from seriesgate.paths import PROJECT_ROOT
from seriesgate.progress import say
from seriesgate.testenv.model import GuestImage, Mode, TestEnv, VdpaDevice

__all__ = ["GuestImage", "Mode", "TestEnv", "VdpaDevice", "prepare", "run_in_env"]

STAGE = "testenv"


def prepare(mode: Mode | None = None) -> TestEnv:
    """Pick the mode (host when this kernel can host vdpa_sim, else VM) and ready its assets."""
    from seriesgate.testenv import assets, check

    probe = check.probe_host()
    auto, reason = check.choose_mode(probe)
    if mode is None:
        mode = auto
    elif mode is Mode.HOST:
        ok, why = check.host_capable(probe)
        if not ok:
            raise InfraError(f"host mode impossible: {why}", hint="use --env vm")
        reason = f"asked for host mode: {why}"
    else:
        reason = f"asked for VM mode ({reason})" if auto is Mode.VM else "asked for VM mode"
    if mode is Mode.VM and not probe.l1_qemu:
        raise InfraError(
            "VM mode needs Debian's qemu-system-x86_64 to run the L1 test VM",
            hint="run `bash ci/setup-host.sh` (package qemu-system-x86)",
        )
    built = assets.ensure_assets()
    l1_accel, l1_accel_reason, l1_accel_options = "none", "host mode: no L1 test VM", ""
    l1_qemu_version = ""
    l1_smp = 0
    l1_overrides: dict[str, str] = {}
    if mode is Mode.HOST:
        l1_kvm = probe.kvm == "usable"
    else:
        from seriesgate.testenv import accel, l1qemu, vm

        l1_qemu_version = l1qemu.version()  # $SERIESGATE_L1_QEMU or the default
        l1_smp = vm.l1_smp()  # $SERIESGATE_L1_SMP or the default
        l1_overrides = vm.l1_overrides()

        # KVM for L1 where the host's KVM boots the L1 kernel (a cached probe), else TCG.
        # Under TCG, -cpu max offers svm and L1 loads kvm_amd; under KVM, L2 gets KVM where
        # the host allows nesting. The command sees the real outcome as l2_kvm.
        choice = accel.choose_l1_accel(built.vmlinuz, probe.kvm)
        l1_kvm = choice.l1_kvm
        l1_accel, l1_accel_reason, l1_accel_options = (
            choice.accel,
            choice.reason,
            choice.options,
        )
        say(
            STAGE,
            f"L1 accelerator {l1_accel}: {l1_accel_reason}; L1 QEMU {l1_qemu_version}, "
            f"{l1_smp} vCPU{'s' if l1_smp != 1 else ''}"
            + "".join(f"; {k} {v!r}" for k, v in l1_overrides.items()),
        )
    say(STAGE, f"mode {mode}: {reason}")
    return TestEnv(
        mode=mode,
        kernel_version=built.kver if mode is Mode.VM else probe.kernel,
        l2_guest=built.l2_guest,
        assets_dir=built.dir,
        l1_kvm=l1_kvm,
        reason=reason,
        l1_kernel=built.vmlinuz if mode is Mode.VM else None,
        l1_initrd=built.l1_initrd if mode is Mode.VM else None,
        modules_root=built.modules_root if mode is Mode.VM else None,
        manifest=built.manifest,
        l1_accel=l1_accel,
        l1_accel_reason=l1_accel_reason,
        l1_accel_options=l1_accel_options,
        l1_qemu=l1_qemu_version,
        l1_smp=l1_smp,
        l1_overrides=l1_overrides,
    )


def run_in_env(
    env: TestEnv,
    argv: Sequence[str],
    *,
    results_dir: Path,
    devices: int = 2,
    timeout: float,
    macs: Sequence[str] | None = None,
    use_va: bool = False,
    cwd: Path = PROJECT_ROOT,
    echo: TextIO | None = None,
    memory_mb: int | None = None,
) -> int:
    """Create ``devices`` vdpasim_net devices and run ``argv`` next to them; its exit status.

    ``macs[i]`` is device i's MAC (default 52:54:00:12:34:56 for all: a migration pair needs
    one MAC on two devices). ``use_va=True`` loads vdpa_sim with use_va=1 (a dead datapath
    with anonymous guest RAM: for showing that traffic checks can fail). In VM mode the
    command runs inside L1 with ``cwd`` and ``results_dir`` at their host paths (the host's
    / is visible read-only, ``results_dir`` read-write); the L1 console goes to
    ``results_dir/l1-console.log``; the caller's $SERIESGATE_* variables (e.g.
    $SERIESGATE_CACHE) are set for the command there too. ``echo`` receives the command's
    output in VM mode (in host mode it inherits our stdout/stderr). ``memory_mb``: L1 RAM
    (default 1024; two 256 MB L2 guests fit in 1 GB). Raises InfraError on setup failure or
    when ``timeout`` (seconds, whole run) expires; every process started is reaped.
    """
    from seriesgate.testenv import inside, vm

    results_dir = results_dir.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    notes = [str(env.manifest.get("test_device_note", ""))] if env.manifest else []
    spec = inside.RunSpec(
        argv=[str(a) for a in argv],
        cwd=str(cwd.resolve()),
        results_dir=str(results_dir),
        mode=env.mode,
        kernel_version=env.kernel_version,
        l2_guest=env.l2_guest,
        devices=inside.device_specs(devices, list(macs or [])),
        modules_root=str(env.modules_root) if env.modules_root else None,
        use_va=use_va,
        notes=[n for n in notes if n],
        env=inside.forwarded_env(),
    )
    if env.mode is Mode.VM:
        if env.l1_kernel is None or env.l1_initrd is None:
            raise InfraError("VM mode without L1 assets", hint="call prepare(Mode.VM) first")
        return vm.run_l1(
            spec,
            kernel=env.l1_kernel,
            initrd=env.l1_initrd,
            timeout=timeout,
            echo=echo,
            memory_mb=memory_mb or vm.L1_MEMORY_MB,
            accel=env.l1_accel if env.l1_accel in ("kvm", "tcg") else "tcg",
            accel_options=env.l1_accel_options,
            smp=env.l1_smp or None,
        )
    try:
        inside.setup(spec)
    except SeriesgateError as exc:
        raise InfraError(f"test environment setup failed on the host: {exc}") from None
    try:
        return inside.run_command(spec, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise InfraError(f"{argv[0]} timed out after {timeout:.0f} s and was killed") from None
    except OSError as exc:
        raise InfraError(f"cannot run {argv[0]}: {os.strerror(exc.errno or 0)}") from None
