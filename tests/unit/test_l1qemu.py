"""Which QEMU runs L1 ($SERIESGATE_L1_QEMU), and where its version shows: the L1 command
line, the baseline cache's test-environment identity and the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from seriesgate.errors import InfraError
from seriesgate.functional import baseline_cache
from seriesgate.report.document import l1_qemu_text
from seriesgate.testenv import l1qemu, vm
from seriesgate.testenv.model import GuestImage, Mode, TestEnv


def unpacked(root: Path) -> Path:
    """A fake unpacked backports tree: bin, data dir, SeaBIOS."""
    binary = root / "usr" / "bin" / "qemu-system-x86_64"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\necho 'QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)'\n")
    binary.chmod(0o755)
    for d in ("qemu", "seabios"):
        (root / "usr" / "share" / d).mkdir(parents=True)
    return binary


def test_default_is_the_system_qemu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(l1qemu.ENV, raising=False)
    assert l1qemu.resolve() == "qemu-system-x86_64" == l1qemu.SYSTEM
    assert l1qemu.command_prefix() == ["qemu-system-x86_64"]


def test_backports_gets_its_own_data_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERIESGATE_CACHE", str(tmp_path))
    monkeypatch.setenv(l1qemu.ENV, "backports")
    with pytest.raises(InfraError, match="not unpacked"):
        l1qemu.resolve()
    binary = unpacked(tmp_path / "l1-qemu" / "bookworm-backports")
    share = binary.parent.parent / "share"
    argv = vm.l1_command(Path("k"), Path("i"), "x", Path("c"), Path("r"))
    assert argv[:5] == [str(binary), "-L", str(share / "qemu"), "-L", str(share / "seabios")]
    assert l1qemu.version() == "10.0.2 (Debian 1:10.0.2+ds-2)"
    monkeypatch.setenv(l1qemu.ENV, "qemu-8")
    with pytest.raises(InfraError, match="expected one of"):
        l1qemu.resolve()


def test_the_l1_qemu_is_part_of_the_baseline_key_and_the_report(tmp_path: Path) -> None:
    initrd = tmp_path / "l2.cpio"
    initrd.write_bytes(b"l2")
    env = TestEnv(Mode.VM, "6.12", GuestImage(initrd, initrd, ""), tmp_path, True)
    on_72 = TestEnv(**{**env.__dict__, "l1_qemu": "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"})
    on_10 = TestEnv(**{**env.__dict__, "l1_qemu": "10.0.2 (Debian 1:10.0.2+ds-2)"})
    assert baseline_cache.testenv_identity(on_72) != baseline_cache.testenv_identity(on_10)
    assert baseline_cache.testenv_identity(on_72)["l1_qemu"].startswith("7.2.22")
    facts = {"l1_accel": {"accel": "tcg", "reason": "r", "qemu": on_10.l1_qemu}}
    assert l1_qemu_text({"environment": {"facts": facts}}) == on_10.l1_qemu
    assert l1_qemu_text({"environment": {"facts": {"l1_accel": {"accel": "tcg"}}}}) is None


def test_the_reply_names_the_l1_qemu_version_beside_the_accelerator() -> None:
    from seriesgate.report.reply import environment_line

    accel = {"accel": "tcg", "reason": "r", "qemu": "10.0.2 (Debian 1:10.0.2+ds-2)"}
    env = {"mode": "vm", "kvm_in_l1": True, "facts": {"l1_accel": accel}}
    assert "L1 on TCG (QEMU 10.0.2), guests on nested KVM" in environment_line({"environment": env})
    del accel["qemu"]  # a summary from before the fact had it
    assert "L1 on TCG, guests" in environment_line({"environment": env})
