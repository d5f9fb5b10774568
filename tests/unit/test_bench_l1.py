"""ci/bench_l1.py's reading of one boot, on real captured L1 logs (tests/unit/data/l1deaths/,
see its README for where each came from)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from seriesgate.paths import PROJECT_ROOT

DATA = Path(__file__).parent / "data" / "l1deaths"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_l1", PROJECT_ROOT / "ci" / "bench_l1.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_l1"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def text(name: str) -> str:
    return (DATA / name).read_text(errors="replace")


def test_a_boot_that_ran_its_command_did_not_die() -> None:
    assert bench().l1_death(text("ok-console.log"), "") is None


def test_the_scheduler_panic_is_named_from_the_console() -> None:
    how = bench().l1_death(text("panic-console.log"), "")
    assert how == "Kernel panic - not syncing: corrupted stack end detected inside scheduler"


def test_a_triple_fault_comes_from_the_l1_qemu_log() -> None:
    # The console only has an "Unhandled WRMSR" line from kvm: not a crash by itself.
    b = bench()
    assert b.l1_death(text("triple-console.log"), "") == "ended without an exit status"
    assert b.l1_death(text("triple-console.log"), text("triple-qemu.log")) == "triple fault"


def test_a_hang_the_supervisor_ended_is_a_death() -> None:
    stderr = "error: L1 test VM hung: nothing written for 661 s (results files: last x)\n"
    assert bench().l1_death("SGL1-START ab 3.0\n", "", stderr) == "L1 hung"


def test_read_boot_on_a_copied_results_dir(tmp_path: Path) -> None:
    b = bench()
    shutil.copy(DATA / "panic-console.log", tmp_path / "l1-console.log")
    shutil.copy(DATA / "panic-console.log", tmp_path / "l1-console.boot-crash-1.log")
    (tmp_path / "l1-timing.json").write_text(json.dumps({"boot_to_command_s": 4.02}))
    test_dir = tmp_path / "baseline" / "job-1" / "test-results" / "1-x"
    test_dir.mkdir(parents=True)
    (test_dir / "debug.log").write_text(
        "[stdlog] 2026-12-07 09:15:20,153 avocado.test migration        L0438 INFO | "
        "source: guest agent ready in 5.71 s\n"
    )
    (tmp_path / "stdout.log").write_text(
        "baseline  PASS     19.5s MigrationCorrectness.test_same_guest_mac_traffic\n"
        "baseline  FAIL     12.0s MigrationSvqDestination.test_svq_both_sides: x\n"
    )
    boot = b.read_boot("system", 1, tmp_path, 2, 60.0)
    assert boot.died.startswith("Kernel panic - not syncing: corrupted stack end")
    assert boot.boot_crashes == [boot.died]
    assert boot.boot_to_command_s == 4.02
    assert boot.l2_ready_s == [5.71]
    assert boot.tests == {"PASS": 1, "FAIL": 1}
    ok = b.Boot("system", 2, "x", 0, 80.0, boot_to_command_s=3.0, l1_total_s=80.0)
    cut = b.Boot("system", 3, "y", None, 10.0, cut=True)
    s = b.summary([boot, ok, cut, b.Boot("backports", 1, "z", 0, 90.0)], "system")
    assert (s["boots"], s["deaths"], s["boot_crashes"]) == (2, 1, 1)  # the cut boot: not counted
    assert s["median_boot_to_command_s"] == 3.51
    assert s["median_wall_s_survived"] == 80.0
    assert "died 1/2" in b.summary_line(s, "7.2.22")


def test_fisher_p() -> None:
    b = bench()
    assert b.fisher_p(2, 19, 2, 19) == 1.0
    assert round(b.fisher_p(6, 20, 0, 20), 3) == 0.02  # the smallest split that means something
    assert b.fisher_p(3, 20, 0, 20) > 0.2


def test_variants_from_qemu_and_variant_arguments() -> None:
    b = bench()
    assert b.variants_of(None, None) == [
        b.Variant("system", {"SERIESGATE_L1_QEMU": "system"}),
        b.Variant("backports", {"SERIESGATE_L1_QEMU": "backports"}),
    ]
    found = b.variants_of(
        ["system"], ["smp1=SERIESGATE_L1_SMP=1", "both=SERIESGATE_L1_SMP=1,SERIESGATE_L1_CPU=max"]
    )
    assert [v.name for v in found] == ["system", "smp1", "both"]
    assert found[1].env == {"SERIESGATE_L1_SMP": "1"}
    assert found[2].env == {"SERIESGATE_L1_SMP": "1", "SERIESGATE_L1_CPU": "max"}
    # A comma before a lower-case word belongs to the value (-accel options have them).
    assert b.parse_variant("st=SERIESGATE_L1_ACCEL=tcg,thread=single,SERIESGATE_L1_SMP=1").env == {
        "SERIESGATE_L1_ACCEL": "tcg,thread=single",
        "SERIESGATE_L1_SMP": "1",
    }


@pytest.mark.parametrize(
    "bad",
    [
        "smp1",
        "=SERIESGATE_L1_SMP=1",
        "smp1=",
        "smp1=SERIESGATE_L1_SMP",
        "a b=X=1",
        "s=X=1,X=2",
        "s=lower=1",
    ],
)
def test_a_bad_variant_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="--variant"):
        bench().parse_variant(bad)


def test_two_variants_of_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="given twice"):
        bench().variants_of(["system"], ["system=SERIESGATE_L1_SMP=1"])


def test_a_boot_runs_this_checkout_with_the_variant_env() -> None:
    b = bench()
    src = str(PROJECT_ROOT / "src")
    env = b.child_env(b.Variant("smp1", {"SERIESGATE_L1_SMP": "1"}), {"PYTHONPATH": f"{src}:/x"})
    assert env == {"PYTHONPATH": f"{src}:/x", "SERIESGATE_L1_SMP": "1"}
    assert b.child_env(b.Variant("s", {}), {})["PYTHONPATH"] == src


def test_the_summary_names_each_variant_and_every_pair(capsys: pytest.CaptureFixture[str]) -> None:
    b = bench()
    boots = [
        b.Boot("smp2", 1, "a", 0, 80.0, smp=2),
        b.Boot("smp1", 1, "b", None, 50.0, died="triple fault", l1_total_s=48.0, smp=1),
        b.Boot("smp1", 2, "c", 0, 140.0, smp=1),
        b.Boot("smp2", 2, "d", 0, 78.0, smp=2),
    ]
    s = b.summary(boots, "smp1")
    assert (s["boots"], s["deaths"], s["smp"], s["died_at"]) == (2, 1, [1], [[1, 48.0]])
    assert s["median_l1_s"] == 48.0  # the boot without an l1-timing.json does not count
    b.print_summary(boots, ["smp2", "smp1"], {"smp2": "7.2 L1_SMP=2", "smp1": "7.2 L1_SMP=1"})
    out = capsys.readouterr().out
    assert "died 1/2" in out
    assert "round 1: triple fault (L1 ended at 48.0 s)" in out
    assert "smp2 vs smp1: death counts 0/2 vs 1/2: two-sided Fisher exact p = 1.000" in out
