"""The build dir's checkout and the binary store, on small real git repos (no QEMU)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from seriesgate.build.builder import BuildDir

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout.strip()


def make_repo(path: Path, versions: list[dict[str, str]]) -> list[str]:
    """A repo with one commit per dict of file contents; returns the commits."""
    path.mkdir(parents=True)
    git(path, "init", "-q")
    commits = []
    for files in versions:
        for name, text in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(text)
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"v{len(commits)}")
        commits.append(git(path, "rev-parse", "HEAD"))
    return commits


def test_checkout_rewrites_only_changed_files(tmp_path: Path) -> None:
    repo = tmp_path / "tree"
    a, b = make_repo(repo, [{"same.c": "1", "hw/x.c": "old"}, {"hw/x.c": "new"}])
    bd = BuildDir(tmp_path / "cache", "k")
    bd.checkout(repo, a)
    same = bd.source / "same.c"
    before = same.stat().st_mtime_ns, same.stat().st_ino
    bd.checkout(repo, b)
    assert (bd.source / "hw/x.c").read_text() == "new"
    assert (same.stat().st_mtime_ns, same.stat().st_ino) == before, "unchanged file rewritten"
    bd.checkout(repo, a)
    assert (bd.source / "hw/x.c").read_text() == "old"


def test_checkout_survives_the_tree_repo_being_recreated(tmp_path: Path) -> None:
    # The tree stage resets its branch (new commit ids, same content); the checkout only
    # needs the target tree's objects, never the commit it came from.
    repo = tmp_path / "tree"
    (first,) = make_repo(repo, [{"a.c": "1"}])
    bd = BuildDir(tmp_path / "cache", "k")
    bd.checkout(repo, first)
    subprocess.run(["rm", "-rf", str(repo)], check=True)
    (again,) = make_repo(repo, [{"a.c": "2"}])
    bd.checkout(repo, again)
    assert (bd.source / "a.c").read_text() == "2"


def test_store_marks_complete_only_with_its_result_file(tmp_path: Path) -> None:
    bd = BuildDir(tmp_path / "cache", "k")
    bd.build.mkdir(parents=True)
    (bd.build / "qemu-system-x86_64").write_text("binary v1")
    log = tmp_path / "build.log"
    log.write_text("[1/1] Linking target qemu-system-x86_64\n")
    # A directory left by an interrupted put is not a stored build.
    (bd.store / ".t1.tmp123").mkdir(parents=True)
    assert bd.stored("t1") is None
    data = {"ok": True, "configure_line": [], "wall_time": 1.0, "compile_steps": 1, "errors": []}
    final = bd.put("t1", log, data)
    stored = bd.stored("t1")
    assert stored is not None and stored["ok"] is True
    binary = Path(stored["binary"])
    assert binary.parent == final and binary.read_text() == "binary v1"
    # A later build in the same build dir does not touch the stored binary.
    (bd.build / "qemu-system-x86_64").write_text("binary v2")
    assert binary.read_text() == "binary v1"
    # Failed builds are stored without a binary; a stored success whose binary vanished
    # is built again.
    bd.put("t2", log, {**data, "ok": False})
    assert json.loads((bd.store / "t2" / "result.json").read_text())["binary"] is None
    binary.unlink()
    assert bd.stored("t1") is None


def _elf_sections(binary: Path) -> str:
    return subprocess.run(
        ["readelf", "-S", str(binary)], check=True, capture_output=True, text=True
    ).stdout


def test_stored_binaries_get_a_gdb_index(tmp_path: Path) -> None:
    """gdb in the test VM reads a crash's backtrace from the index, not from all the DWARF."""
    bd = BuildDir(tmp_path / "cache", "k")
    bd.build.mkdir(parents=True)
    source = tmp_path / "main.c"
    source.write_text("int main(void) { return 0; }\n")
    subprocess.run(
        ["gcc", "-g", "-o", str(bd.build / "qemu-system-x86_64"), str(source)], check=True
    )
    log = tmp_path / "build.log"
    log.write_text("ok\n")
    data = {"ok": True, "configure_line": [], "wall_time": 1.0, "compile_steps": 1, "errors": []}
    bd.put("t1", log, data)
    stored = bd.stored("t1")
    assert stored is not None and stored["gdb_index"] is True
    assert ".gdb_index" in _elf_sections(Path(stored["binary"]))
    # A binary stored before this gets its index on the next lookup, once.
    marker = bd.store / "t1" / "result.json"
    old = json.loads(marker.read_text())
    del old["gdb_index"]
    marker.write_text(json.dumps(old))
    assert bd.stored("t1")["gdb_index"] is True  # type: ignore[index]
    assert json.loads(marker.read_text())["gdb_index"] is True
