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


def test_test_groups_pick_the_classes_with_a_matching_tag() -> None:
    # On the project's real functional tests: one test-VM boot per class that has work.
    from seriesgate.functional.jobs import test_files
    from seriesgate.functional.runner import test_groups

    files = test_files()
    quick = test_groups(files, ("quick",))
    assert {g.label for g in quick} == {
        "test_boot_traffic.BootTraffic",
        "test_status_bits.StatusBits",
    }
    migration = test_groups(files, ("migration",))
    assert {g.file.name for g in migration} == {"test_migration.py"}
    assert "MigrationBase" not in {g.cls for g in migration}  # no test methods of its own
    assert "test_migration.MigrationCancel" in {g.label for g in migration}
    # Tags on the class count for its methods; key-only filters match key:value tags.
    assert {g.cls for g in test_groups(files, ("claim:svq-iova-tree",))} == {
        "MigrationSvqDestination",
        "SvqIovaTree",
    }
    assert len(test_groups(files, ("claim",))) >= 4
    assert len(test_groups(files, ())) == 14  # 6 single-VM classes, 8 migration classes
    assert test_groups(files, ("no-such-tag",)) == []
    # Large-guest classes ask for a bigger test VM; the others take the default.
    memory = {g.cls: g.l1_memory_mb for g in migration}
    assert memory["MigrationMapOrdering"] == 3072 and memory["MigrationCorrectness"] is None
    ref = quick[0].reference
    assert ref.startswith("tests/functional/test_") and ref.endswith("\\.")
