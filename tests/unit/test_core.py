"""The shared infrastructure: command runner, errors, results naming."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from seriesgate.errors import CommandError, GateFailure, InputError, SeriesgateError
from seriesgate.pipeline import run_name
from seriesgate.proc import run


def test_run_captures_output_without_a_shell(tmp_path: Path) -> None:
    # A subject from a mail with shell metacharacters stays one literal argument.
    nasty = "vdpa: $(touch pwned); `id` && rm -rf / | cat"
    result = run(["printf", "%s", nasty], cwd=tmp_path)
    assert result.stdout == nasty
    assert not (tmp_path / "pwned").exists()


def test_run_failure_carries_command_line_and_output() -> None:
    with pytest.raises(CommandError) as info:
        run(["sh", "-c", "echo first-line >&2; exit 3"], what="demo")
    exc = info.value
    assert exc.returncode == 3
    assert exc.argv[0] == "sh"
    assert "first-line" in str(exc) and "exit 3" in str(exc)
    assert "first-line" in exc.output


def test_run_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(CommandError, match="timed out"):
        run(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], timeout=0.5)
    assert time.monotonic() - start < 5
    child = int(pidfile.read_text())
    time.sleep(0.2)
    status = Path(f"/proc/{child}/status")
    # Gone, or a zombie waiting for init to reap it: either way no longer running.
    assert not status.exists() or "State:\tZ" in status.read_text()


def test_error_lines_and_exit_codes() -> None:
    assert str(InputError("no patches in x.mbox", hint="check the file")) == (
        "no patches in x.mbox (check the file)"
    )
    assert SeriesgateError("x").exit_code == 2
    assert GateFailure("conflict").exit_code == 1


def test_run_name_is_safe_for_paths() -> None:
    assert run_name("<a/b;$(x)@example.com>") == "a_b_x_"
    assert run_name(None) == "default"


def test_test_classes_pick_the_classes_with_a_matching_tag() -> None:
    # On the project's real functional tests.
    from seriesgate.functional.jobs import test_files
    from seriesgate.functional.runner import test_classes

    files = test_files()
    quick = test_classes(files, ("quick",))
    assert {c.label for c in quick} == {
        "test_boot_traffic.BootTraffic",
        "test_status_bits.StatusBits",
    }
    migration = test_classes(files, ("migration",))
    assert {c.file.name for c in migration} == {"test_migration.py"}
    assert "MigrationBase" not in {c.cls for c in migration}  # no test methods of its own
    # Tags on the class count for its methods; key-only filters match key:value tags.
    assert {c.cls for c in test_classes(files, ("claim:svq-iova-tree",))} == {
        "MigrationSvqDestination",
        "SvqIovaTree",
    }
    assert len(test_classes(files, ("claim",))) >= 4
    assert len(test_classes(files, ())) == 14  # 6 single-VM classes, 8 migration classes
    assert test_classes(files, ("no-such-tag",)) == []
    # Large-guest classes ask for a bigger test VM; the others take the default.
    memory = {c.cls: c.l1_memory_mb for c in migration}
    assert memory["MigrationMapOrdering"] == 3072 and memory["MigrationCorrectness"] is None
    ref = quick[0].reference
    assert ref.startswith("tests/functional/test_") and ref.endswith("\\.")


def test_test_groups_single_vm_migration_and_bigger_migration_boots() -> None:
    from seriesgate.functional.jobs import test_files
    from seriesgate.functional.runner import MIGRATION_GROUP, SINGLE_VM_GROUP, test_groups

    groups = test_groups(test_files(), ())
    assert [g.label for g in groups] == [SINGLE_VM_GROUP, MIGRATION_GROUP, "migration-3072mb"]
    single, migration, large = groups
    assert len(single.classes) == 6 and single.l1_memory_mb is None
    assert "MigrationCorrectness" in {c.cls for c in migration.classes}
    assert migration.l1_memory_mb is None and len(migration.classes) == 6
    assert {c.cls for c in large.classes} == {"MigrationMapOrdering", "MigrationQmpResponsive"}
    assert large.l1_memory_mb == 3072 and len(large.references) == 2
    # A tag selection keeps only what it names: quick is one single-VM boot.
    assert [g.label for g in test_groups(test_files(), ("quick",))] == [SINGLE_VM_GROUP]
