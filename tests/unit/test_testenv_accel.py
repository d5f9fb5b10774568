"""The L1 accelerator choice on real captured probe output (tests/unit/data/testenv/):

- l1-kvm-probe-pvm.json: the KVM probe on this project's machine, whose /dev/kvm is a PVM
  hypervisor (kvm_pvm): "KVM internal error ... emulation failure" on a VEX instruction,
  no console line.
- l1-tcg-probe-ok.json: the same probe command with ``-accel tcg -cpu max`` (no working KVM
  here to capture a success): the kernel's real first console line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from seriesgate.errors import InfraError
from seriesgate.testenv import accel, vm

DATA = Path(__file__).parent / "data" / "testenv"


def record(name: str) -> accel.ProbeRecord:
    return accel.ProbeRecord.load(DATA / name)


def test_pvm_kvm_probe_falls_back_to_tcg_and_says_why() -> None:
    rec = record("l1-kvm-probe-pvm.json")
    assert rec.command[rec.command.index("-accel") + 1] == "kvm"
    assert rec.elapsed_s < accel.PROBE_TIMEOUT_S and not rec.timed_out  # failed fast
    chosen, why = accel.decide(
        rec.console, rec.stderr, elapsed_s=rec.elapsed_s, timed_out=rec.timed_out
    )
    assert chosen == "tcg"
    assert "KVM internal error (suberror 1, emulation failure" in why
    assert "instruction bytes c4 42 69 f7 c0" in why  # a VEX-encoded instruction
    assert why.endswith("L1 on TCG")


def test_first_console_line_means_kvm() -> None:
    rec = record("l1-tcg-probe-ok.json")
    chosen, why = accel.decide(rec.console, rec.stderr, elapsed_s=0.4, timed_out=False)
    assert chosen == "kvm"
    assert "Linux version 6.12" in why and "0.40 s" in why


def test_kvm_error_wins_over_a_console_line() -> None:
    ok, bad = record("l1-tcg-probe-ok.json"), record("l1-kvm-probe-pvm.json")
    chosen, why = accel.decide(ok.console, bad.stderr, elapsed_s=1.0, timed_out=False)
    assert chosen == "tcg" and "KVM internal error" in why


def test_partial_line_or_silence_is_not_a_boot() -> None:
    ok = record("l1-tcg-probe-ok.json")
    partial = ok.console.split("\n", 1)[0]  # no newline yet: not a complete line
    chosen, why = accel.decide(partial, "", elapsed_s=10.0, timed_out=True)
    assert (chosen, "no console line within 10 s" in why) == ("tcg", True)
    chosen, why = accel.decide("", "", elapsed_s=0.3, timed_out=False)
    assert chosen == "tcg" and "QEMU ended after 0.30 s" in why


def test_setting_values() -> None:
    assert accel.parse_setting("auto") == ("auto", "")
    assert accel.parse_setting(" tcg ") == ("tcg", "")
    assert accel.parse_setting("kvm,kernel-irqchip=split") == ("kvm", "kvm,kernel-irqchip=split")
    for bad in ("hvf", "auto,x=1", "kvmx"):
        with pytest.raises(InfraError, match="expected auto, kvm or tcg"):
            accel.parse_setting(bad)


def test_forced_and_no_dev_kvm_need_no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = Path("/nonexistent/vmlinuz")  # a probe would fail to hash it
    monkeypatch.setenv(accel.ACCEL_ENV, "tcg")
    assert accel.choose_l1_accel(missing, "usable").accel == "tcg"
    monkeypatch.setenv(accel.ACCEL_ENV, "kvm")
    forced = accel.choose_l1_accel(missing, "absent")
    assert forced.accel == "kvm" and "forced by $SERIESGATE_L1_ACCEL=kvm" in forced.reason
    monkeypatch.delenv(accel.ACCEL_ENV)
    auto = accel.choose_l1_accel(missing, "absent")
    assert (auto.accel, auto.reason) == ("tcg", "/dev/kvm on the host: absent: L1 on TCG")


def test_nesting_from_module_parameters(tmp_path: Path) -> None:
    assert accel.nesting(tmp_path) == (
        False,
        "no kvm_intel/kvm_amd on the host: no nested KVM, L2 on TCG",
    )
    (tmp_path / "kvm_pvm").mkdir()
    assert "(loaded: kvm_pvm)" in accel.nesting(tmp_path)[1]
    param = tmp_path / "kvm_intel" / "parameters" / "nested"
    param.parent.mkdir(parents=True)
    param.write_text("Y\n")
    assert accel.nesting(tmp_path) == (True, "kvm_intel nested=Y: nested KVM for L2")
    param.write_text("N\n")
    assert accel.nesting(tmp_path)[0] is False


def test_l1_command_follows_the_accelerator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(vm.L1_CPU_ENV, raising=False)
    args = (Path("/k"), Path("/i"), "x", tmp_path / "c.log", tmp_path, 1024)
    kvm = vm.l1_command(*args, "kvm")
    assert kvm[kvm.index("-accel") + 1 :][:3] == ["kvm", "-cpu", "host"]
    tcg = vm.l1_command(*args, "tcg")
    assert tcg[tcg.index("-accel") + 1 :][:3] == [accel.TCG_OPTIONS, "-cpu", "max"]
    opt = vm.l1_command(*args, "tcg", "tcg,thread=single")
    assert opt[opt.index("-accel") + 1] == "tcg,thread=single"


def test_cache_key_and_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERIESGATE_CACHE", str(tmp_path / "cache"))
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"one kernel")
    key = accel.probe_key(kernel)
    kernel.write_bytes(b"another kernel")
    other = accel.probe_key(kernel)
    assert key["l1_kernel_sha256"] != other["l1_kernel_sha256"]
    assert accel.cache_file(key) != accel.cache_file(other)
    assert key["uname_r"] and key["proc_version"].startswith("Linux version")
    assert key["l1_qemu"].startswith("QEMU emulator version")
    # A stored record with this key is reused (no boot: the kernel is not bootable).
    rec = record("l1-kvm-probe-pvm.json")
    path = accel.cache_file(other)
    path.parent.mkdir(parents=True)
    stored = {**rec.to_json(), "key": other, "probed_at": time.time()}
    path.write_text(json.dumps(stored))
    found, where, reused = accel.cached_probe(kernel)
    assert (reused, where, found.stderr) == (True, path, rec.stderr)
    # A timed-out probe is not reused once it is old.
    path.write_text(json.dumps({**stored, "timed_out": True, "probed_at": 0.0}))
    assert accel._reusable(path, other) is None
