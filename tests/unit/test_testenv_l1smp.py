"""How many vCPUs L1 gets ($SERIESGATE_L1_SMP) and the other L1 overrides, and where they
show: the L1 command line, the test environment, the baseline cache's key and the report."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from seriesgate.errors import InfraError
from seriesgate.functional import baseline_cache
from seriesgate.report.document import Table, _environment_blocks, l1_smp_count
from seriesgate.testenv import assets, inside, vm
from seriesgate.testenv.model import GuestImage, Mode, TestEnv


def smp_of(argv: list[str]) -> str:
    return argv[argv.index("-smp") + 1]


def test_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(vm.L1_SMP_ENV, raising=False)
    assert vm.l1_smp() == vm.L1_SMP
    monkeypatch.setenv(vm.L1_SMP_ENV, "")
    assert vm.l1_smp() == vm.L1_SMP  # empty: the default, like $SERIESGATE_L1_QEMU
    monkeypatch.setenv(vm.L1_SMP_ENV, " 1 ")
    assert vm.l1_smp() == 1
    monkeypatch.setenv(vm.L1_SMP_ENV, "4")
    assert vm.l1_smp() == 4


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5", "2,sockets=1"])
def test_a_bad_value_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(vm.L1_SMP_ENV, bad)
    with pytest.raises(InfraError) as caught:
        vm.l1_smp()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"$SERIESGATE_L1_SMP={bad!r}: expected a whole number")


def test_the_command_line_has_the_count(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    args = (Path("k"), Path("i"), "x", tmp_path / "c.log", tmp_path)
    monkeypatch.delenv(vm.L1_SMP_ENV, raising=False)
    assert smp_of(vm.l1_command(*args)) == str(vm.L1_SMP)
    monkeypatch.setenv(vm.L1_SMP_ENV, "1")
    assert smp_of(vm.l1_command(*args)) == "1"
    assert smp_of(vm.l1_command(*args, smp=3)) == "3"  # TestEnv.l1_smp wins over the env


def env_with(tmp_path: Path, **fields: Any) -> TestEnv:
    initrd = tmp_path / "l2.cpio"
    initrd.write_bytes(b"l2")
    env = TestEnv(Mode.VM, "6.12", GuestImage(initrd, initrd, ""), tmp_path, True)
    return TestEnv(**{**env.__dict__, "l1_qemu": "7.2.22 (Debian 1:7.2+dfsg-7)", **fields})


def test_the_count_is_part_of_the_baseline_key(tmp_path: Path) -> None:
    one = baseline_cache.testenv_identity(env_with(tmp_path, l1_smp=1))
    two = baseline_cache.testenv_identity(env_with(tmp_path, l1_smp=2))
    assert (one["l1_smp"], two["l1_smp"]) == (1, 2)
    assert baseline_cache.key_of(one) != baseline_cache.key_of(two)
    # No count (host mode): the key has no l1_smp at all.
    assert "l1_smp" not in baseline_cache.testenv_identity(env_with(tmp_path))


def test_overridden_l1_settings_are_part_of_the_baseline_key(tmp_path: Path) -> None:
    plain = baseline_cache.testenv_identity(env_with(tmp_path, l1_smp=2))
    assert "l1_overrides" not in plain  # nothing overridden: the key as before
    keys = {baseline_cache.key_of(plain)}
    for overrides in ({"append_extra": "kvm_amd.npt=0"}, {"cpu": "EPYC"}):
        env = env_with(tmp_path, l1_smp=2, l1_overrides=overrides)
        ident = baseline_cache.testenv_identity(env)
        assert ident["l1_overrides"] == overrides
        keys.add(baseline_cache.key_of(ident))
    assert len(keys) == 3


def test_kernel_command_line_module_parameters_reach_insmod(tmp_path: Path) -> None:
    """The L1 init's cmdline_params (busybox sh, as in L1) on a real command line."""
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 kvm_amd.npt=0 kvm_amd.avic=1 kvm.halt_poll_ns=0 sgl1=eA==\n")
    init = (Path(vm.__file__).parent / "l1init.sh").read_text()
    start = init.index("cmdline_params() {")
    func = init[start : init.index("\n}\n", start) + 3].replace("/proc/cmdline", str(cmdline))
    calls = "".join(f"[$(cmdline_params {m})]" for m in ("kvm_amd", "kvm", "vdpa_sim"))
    argv = [str(assets.BUSYBOX), "sh", "-c", f'{func}echo "{calls}"']
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10).stdout
    assert out.strip() == "[npt=0 avic=1 ][halt_poll_ns=0 ][]"


def summary_with(accel: dict[str, Any]) -> dict[str, Any]:
    host = {"hostname": "h", "os": "Debian 12", "kernel": "6.1", "cpus": 2}
    env = {
        "host": host,
        "mode": "vm",
        "kvm_in_l1": True,
        "test_kernel": "6.12",
        "qemu_configure": None,
        "facts": {"l1_accel": accel},
        "notes": [],
    }
    return {"environment": env, "stage_times": {}}


def l1_qemu_row(summary: dict[str, Any]) -> str | None:
    table = _environment_blocks(summary)[1]
    assert isinstance(table, Table)
    return {row[0]: row[1] for row in table.rows}.get("L1 QEMU")


def test_the_report_row_names_the_count() -> None:
    accel = {"accel": "tcg", "reason": "r", "qemu": "7.2.22 (Debian)", "smp": 1}
    assert l1_smp_count(summary_with(accel)) == 1
    assert l1_qemu_row(summary_with(accel)) == "7.2.22 (Debian), 1 vCPU"
    assert l1_qemu_row(summary_with({**accel, "smp": 2})) == "7.2.22 (Debian), 2 vCPUs"
    del accel["smp"]  # a summary from before the fact had it
    assert l1_smp_count(summary_with(accel)) is None
    assert l1_qemu_row(summary_with(accel)) == "7.2.22 (Debian)"


def test_the_python_path_goes_into_l1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/work/tree/src")
    monkeypatch.setenv(vm.L1_SMP_ENV, "1")
    monkeypatch.setenv("HOME", "/root")
    forwarded = inside.forwarded_env()
    assert forwarded["PYTHONPATH"] == "/work/tree/src"
    assert forwarded[vm.L1_SMP_ENV] == "1"
    assert "HOME" not in forwarded
