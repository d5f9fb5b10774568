"""The apply ladder on small real git trees: every verdict, commits, apply.json, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from seriesdata import (
    commit_change,
    diff_of,
    format_patch,
    init_repo,
    numbered,
    series_mail,
    sh_git,
    write,
)

from seriesgate import cli, paths
from seriesgate.build.builder import build_plans
from seriesgate.errors import InputError
from seriesgate.series.model import Patch, Series, SeriesSet
from seriesgate.tree import Role, Verdict, format_table, prepare_tree
from seriesgate.tree.base import parse_base_spec


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SERIESGATE_CACHE", str(cache))
    return cache


def upstream_patch(tmp_path: Path, *, line: int = 10, text: str = "line 10 CHANGED") -> Path:
    """A real git format-patch mail changing one line of a 20-line a.c."""
    repo = tmp_path / "upstream"
    if not repo.exists():
        init_repo(repo, {"a.c": numbered(20)})
    lines = numbered(20)
    lines[line - 1] = text
    rev = commit_change(repo, "a.c", lines, f"a: change line {line}", "Explain why.")
    sh_git(repo, "reset", "-q", "--hard", "HEAD~1")  # each patch is against the pristine file
    return format_patch(repo, rev, tmp_path / "mails")


def series_of(
    *mails: Path, fixups: tuple[Path, ...] = (), repairs: tuple[Path, ...] = ()
) -> SeriesSet:
    patches = tuple(
        Patch(
            index=n,
            total=len(mails),
            subject=f"patch {n}",
            message_id=f"p{n}@ex.org",
            author="Ada Author <ada@example.org>",
            date="",
            files=("a.c",),
            diffstat=(),
            mbox=mail,
        )
        for n, mail in enumerate(mails, 1)
    )
    series = Series("test-series", "c@ex.org", 1, "test", "Ada", "", patches, mails[0], "test")
    return SeriesSet(target=series, fixups=fixups, repairs=repairs)


def plain_base(tmp_path: Path, lines: list[str], name: str = "base") -> str:
    base = tmp_path / name
    write(base / "a.c", lines)
    write(base / "README", ["not QEMU, a test tree"])
    return f"dir:{base}"


def one(tmp_path: Path, base_lines: list[str], mail: Path):  # type: ignore[no-untyped-def]
    tree = prepare_tree(
        series_of(mail), base_spec=plain_base(tmp_path, base_lines), workdir=tmp_path / "out"
    )
    assert len(tree.results) == 1
    return tree, tree.results[0]


def test_clean_keeps_author_date_and_message(tmp_path: Path) -> None:
    tree, result = one(tmp_path, numbered(20), upstream_patch(tmp_path))
    assert result.verdict is Verdict.CLEAN and result.label == "clean"
    assert result.commit == tree.series_commit == tree.fixup_commit
    assert tree.baseline_commit == tree.base_commit != result.commit
    log = sh_git(tree.repo, "log", "-1", "--format=%an <%ae>|%aI|%s|%b", result.commit)
    author, date, subject, body = log.split("|", 3)
    assert author == "Ada Author <ada@example.org>"
    assert date == "2023-11-28T11:42:54+01:00"
    assert subject == "a: change line 10"
    assert "Explain why." in body and "Signed-off-by: Ada Author" in body
    assert (tree.repo / "a.c").read_text().splitlines()[9] == "line 10 CHANGED"
    data = json.loads((tmp_path / "out" / "apply.json").read_text())
    assert data["applied"] is True
    assert data["patches"][0]["verdict"] == "clean"
    assert data["commits"]["patched"] == result.commit


def test_three_way_when_the_preimage_blob_is_known(tmp_path: Path) -> None:
    mail = upstream_patch(tmp_path)
    target = tmp_path / "target"
    init_repo(target, {"a.c": numbered(20)})  # same pre-image blob as upstream
    moved = numbered(20)
    moved[6] = "line 07 changed downstream"  # inside the patch's context: plain am fails
    commit_change(target, "a.c", moved, "downstream change")
    tree = prepare_tree(series_of(mail), base_spec=f"dir:{target}", workdir=tmp_path / "out")
    result = tree.results[0]
    assert result.verdict is Verdict.THREE_WAY, result.evidence
    assert "git am:" in result.evidence
    content = (tree.repo / "a.c").read_text().splitlines()
    assert content[6] == "line 07 changed downstream" and content[9] == "line 10 CHANGED"


def test_fuzz_records_fuzz_factor_and_keeps_metadata(tmp_path: Path) -> None:
    drifted = numbered(20)
    drifted[6] = "line 07 drifted"  # outermost context line of the hunk
    tree, result = one(tmp_path, drifted, upstream_patch(tmp_path))
    assert result.verdict is Verdict.FUZZ, result.evidence
    assert result.fuzz == 1 and result.label == "fuzz(1)"
    assert any("fuzz 1" in o for o in result.offsets)
    assert "pre-image blobs not in the tree" in result.evidence
    log = sh_git(tree.repo, "log", "-1", "--format=%an|%aI|%s", result.commit or "")
    assert log == "Ada Author|2023-11-28T11:42:54+01:00|a: change line 10"


def test_offset_only_is_fuzz_zero(tmp_path: Path) -> None:
    shifted = ["new first line", *numbered(20)]
    shifted[7] = "line 07 drifted"
    _, result = one(tmp_path, shifted, upstream_patch(tmp_path))
    assert result.verdict is Verdict.FUZZ
    assert any("offset 1" in o for o in result.offsets)


def test_already_present_exact(tmp_path: Path) -> None:
    applied = numbered(20)
    applied[9] = "line 10 CHANGED"
    tree, result = one(tmp_path, applied, upstream_patch(tmp_path))
    assert result.verdict is Verdict.ALREADY_PRESENT
    assert result.commit is None and tree.fixup_commit == tree.base_commit
    assert result.evidence.startswith("1/1 hunks present (1 exact")


def test_already_present_after_context_changed_later(tmp_path: Path) -> None:
    later = numbered(20)
    later[9] = "line 10 CHANGED"
    later[11] = "line 12 rewritten later upstream"
    _, result = one(tmp_path, later, upstream_patch(tmp_path))
    assert result.verdict is Verdict.ALREADY_PRESENT
    assert "1 context changed later" in result.evidence


def test_conflict_quotes_hunk_and_stops(tmp_path: Path) -> None:
    first = upstream_patch(tmp_path)
    second = upstream_patch(tmp_path, line=15, text="line 15 CHANGED")
    other = numbered(20)
    other[9] = "line 10 changed differently"
    fixup = tmp_path / "fix.patch"
    fixup.write_text("--- a/a.c\n+++ b/a.c\n@@ -1 +1 @@\n-line 01 of the file\n+fixed\n")
    tree = prepare_tree(
        series_of(first, second, fixups=(fixup,)),
        base_spec=plain_base(tmp_path, other),
        workdir=tmp_path / "out",
    )
    verdicts = [r.verdict for r in tree.results]
    assert verdicts == [Verdict.CONFLICT, Verdict.NOT_TRIED, Verdict.NOT_TRIED]
    conflict = tree.conflict
    assert conflict is not None and conflict.index == 1
    assert [(h.file, h.hunk) for h in conflict.failing_hunks] == [("a.c", 1)]
    assert "-line 10 of the file" in conflict.failing_hunks[0].text
    assert "0/1 hunks present" in conflict.evidence
    assert tree.results[2].role is Role.FIXUP
    table = format_table(tree)
    assert "CONFLICT: test-series 1/2 'patch 1'" in table and "-line 10 of the file" in table
    data = json.loads((tmp_path / "out" / "apply.json").read_text())
    assert data["applied"] is False and data["first_conflict"].startswith("test-series 1/2")
    assert data["patches"][0]["failing_hunks"][0]["file"] == "a.c"


def test_fixups_apply_after_the_series_as_their_own_commits(tmp_path: Path) -> None:
    fixup = tmp_path / "fixups" / "0001-port.patch"
    fixup.parent.mkdir()
    fixup.write_text(
        "--- a/a.c\n+++ b/a.c\n@@ -1,3 +1,3 @@\n-line 01 of the file\n+ported\n"
        " line 02 of the file\n line 03 of the file\n"
    )
    tree = prepare_tree(
        series_of(upstream_patch(tmp_path), fixups=(fixup,)),
        base_spec=plain_base(tmp_path, numbered(20)),
        workdir=tmp_path / "out",
    )
    series, fix = tree.results
    assert fix.role is Role.FIXUP and fix.verdict is Verdict.CLEAN
    assert tree.series_commit == series.commit != tree.fixup_commit == fix.commit
    assert sh_git(tree.repo, "log", "-1", "--format=%s", fix.commit or "") == "fixup: 0001-port"
    assert (tree.repo / "a.c").read_text().startswith("ported\n")


def test_rerun_starts_again_from_the_pristine_base(tmp_path: Path) -> None:
    mail = upstream_patch(tmp_path)
    spec = plain_base(tmp_path, numbered(20))
    first = prepare_tree(series_of(mail), base_spec=spec, workdir=tmp_path / "o1")
    second = prepare_tree(series_of(mail), base_spec=spec, workdir=tmp_path / "o2")
    assert first.repo == second.repo and first.base_commit == second.base_commit
    assert second.results[0].verdict is Verdict.CLEAN  # not "already-present" from run 1
    assert first.series_commit == second.series_commit  # reproducible commit ids
    assert sh_git(second.repo, "rev-list", "--count", "HEAD") == "2"


def test_series_for_another_project_is_an_input_error(tmp_path: Path) -> None:
    repo = tmp_path / "elsewhere"
    init_repo(repo, {"kernel/sched.c": numbered(20)})
    lines = numbered(20)
    lines[3] = "not qemu"
    mail = format_patch(repo, commit_change(repo, "kernel/sched.c", lines, "sched: x"), tmp_path)
    with pytest.raises(
        InputError, match=r"only touches files the base tree lacks \(kernel/sched.c"
    ):
        prepare_tree(
            series_of(mail), base_spec=plain_base(tmp_path, numbered(20)), workdir=tmp_path / "o"
        )
    assert json.loads((tmp_path / "o" / "apply.json").read_text())["applied"] is False


def test_git_base_spec_from_a_local_repository(tmp_path: Path) -> None:
    upstream = tmp_path / "git-upstream"
    init_repo(upstream, {"a.c": numbered(20)})
    sh_git(upstream, "tag", "v1")
    sha = sh_git(upstream, "rev-parse", "v1")
    commit_change(upstream, "a.c", numbered(21), "after v1")
    tree = prepare_tree(
        series_of(upstream_patch(tmp_path)),
        base_spec=f"git:{upstream}@v1",
        workdir=tmp_path / "out",
    )
    assert tree.base_commit == sha and tree.base.version == sha
    assert tree.results[0].verdict is Verdict.CLEAN


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("svn:foo", "unknown base spec"),
        ("debian", "unknown base spec"),
        ("debian:Qemu;rm", "bad Debian source package"),
        ("git:https://example.org/q.git", "needs @REF"),
        ("dir:/nonexistent/seriesgate", "does not exist"),
    ],
)
def test_bad_base_specs(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_base_spec(spec)


def test_unknown_git_ref_is_an_input_error(tmp_path: Path) -> None:
    upstream = tmp_path / "git-upstream"
    init_repo(upstream, {"a.c": numbered(20)})
    with pytest.raises(InputError, match="cannot fetch no-such-ref"):
        prepare_tree(
            series_of(upstream_patch(tmp_path)),
            base_spec=f"git:{upstream}@no-such-ref",
            workdir=tmp_path / "o",
        )


def test_cli_apply_exit_codes_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upstream = tmp_path / "src"
    init_repo(upstream, {"a.c": numbered(20)})
    lines = numbered(20)
    lines[9] = "line 10 CHANGED"
    diff = diff_of(upstream, commit_change(upstream, "a.c", lines, "a: change"))
    mbox = tmp_path / "t.mbox"
    mbox.write_text(series_mail("t-1@ex.org", "test $(x)", [("a: change `x`", diff)]))
    good = plain_base(tmp_path, numbered(20), "good")
    code = cli.main(["-q", "apply", "t-1@ex.org", "--mbox", str(mbox), "--base", good,
                     "--out", str(tmp_path / "o1")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "series  1/1    clean" in out and "a: change `x`" in out
    bad_lines = numbered(20)
    bad_lines[9] = "line 10 changed differently"
    bad = plain_base(tmp_path, bad_lines, "bad")
    code = cli.main(["-q", "apply", "t-1@ex.org", "--mbox", str(mbox), "--base", bad,
                     "--out", str(tmp_path / "o2")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 2
    assert "CONFLICT: " in out and "'a: change `x`'" in out
    assert (tmp_path / "o2" / "apply.json").is_file()
    code = cli.main(["-q", "apply", "t-1@ex.org", "--mbox", str(mbox), "--base", "ftp:x",
                     "--out", str(tmp_path / "o3")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown base spec 'ftp:x'" in err


def test_cache_dir_is_private(private_cache: Path) -> None:
    assert paths.cache_dir() == private_cache


def plain_fixup(tmp_path: Path) -> Path:
    fixup = tmp_path / "fixups" / "0001-port.patch"
    fixup.parent.mkdir(exist_ok=True)
    fixup.write_text(
        "--- a/a.c\n+++ b/a.c\n@@ -1,3 +1,3 @@\n-line 01 of the file\n+ported\n"
        " line 02 of the file\n line 03 of the file\n"
    )
    return fixup


def test_repairs_apply_after_the_fixups_and_make_the_repaired_commit(tmp_path: Path) -> None:
    mail = upstream_patch(tmp_path)
    repairs = (
        upstream_patch(tmp_path, line=15, text="line 15 REPAIRED"),
        upstream_patch(tmp_path, line=20, text="line 20 REPAIRED"),
    )
    spec = plain_base(tmp_path, numbered(20))
    tree = prepare_tree(
        series_of(mail, fixups=(plain_fixup(tmp_path),), repairs=repairs),
        base_spec=spec,
        workdir=tmp_path / "out",
    )
    series, fix, first, second = tree.results
    assert [r.role for r in (first, second)] == [Role.REPAIR, Role.REPAIR]
    assert [r.verdict for r in tree.results] == [Verdict.CLEAN] * 4
    assert (first.series, first.index, first.total, first.subject) == (
        "repairs",
        1,
        2,
        "a: change line 15",
    )
    # patched stays series + fixups; repaired is on top of it
    assert tree.fixup_commit == fix.commit != tree.repair_commit == second.commit
    assert sh_git(tree.repo, "rev-parse", f"{tree.repair_commit}~2") == tree.fixup_commit
    assert "REPAIRED" not in sh_git(tree.repo, "show", f"{tree.fixup_commit}:a.c")
    assert sh_git(tree.repo, "show", f"{tree.repair_commit}:a.c").count("REPAIRED") == 2
    assert tree.conflict is None and tree.repair_conflict is None
    assert tree.repair_results() == (first, second)
    ref = sh_git(tree.repo, "rev-parse", "refs/seriesgate/test-series/repaired")
    assert ref == tree.repair_commit
    data = json.loads((tmp_path / "out" / "apply.json").read_text())
    assert data["commits"]["repaired"] == tree.repair_commit
    assert data["commits"]["patched"] == tree.fixup_commit
    assert [p["role"] for p in data["patches"]] == ["series", "fixup", "repair", "repair"]
    assert data["applied"] is True and data["repair_conflict"] is None
    table = format_table(tree).splitlines()
    assert [ln.split()[0] for ln in table[1:5]] == ["series", "fixup", "repair", "repair"]
    assert f"repaired = {tree.repair_commit[:12]}" in table[-1]  # type: ignore[index]
    plans = [(p.name, p.commit) for p in build_plans(tree, each_patch=False)]
    assert plans[-2:] == [("patched", tree.fixup_commit), ("repaired", tree.repair_commit)]
    # Again without repairs: no repaired commit, no stale ref, nothing more to build.
    again = prepare_tree(series_of(mail), base_spec=spec, workdir=tmp_path / "out2")
    assert again.repair_commit is None and again.repair_results() == ()
    assert sh_git(again.repo, "for-each-ref", "refs/seriesgate/test-series/repaired") == ""
    assert json.loads((tmp_path / "out2" / "apply.json").read_text())["commits"]["repaired"] is None
    assert [p.name for p in build_plans(again, each_patch=True)] == [
        "baseline",
        "patch-01",
        "patched",
    ]


def test_a_repair_that_does_not_apply_leaves_patched_alone(tmp_path: Path) -> None:
    mail = upstream_patch(tmp_path)
    # Written against a line the tree does not have: does not apply.
    stale = tmp_path / "0001-stale.patch"
    stale.write_text(
        "--- a/a.c\n+++ b/a.c\n@@ -10 +10 @@\n-line 10 as it never was\n+line 10 repaired\n"
    )
    later = upstream_patch(tmp_path, line=15, text="line 15 REPAIRED")
    tree = prepare_tree(
        series_of(mail, repairs=(stale, later)),
        base_spec=plain_base(tmp_path, numbered(20)),
        workdir=tmp_path / "out",
    )
    verdicts = [r.verdict for r in tree.results]
    assert verdicts == [Verdict.CLEAN, Verdict.CONFLICT, Verdict.NOT_TRIED]
    assert tree.conflict is None, "a repair is not the series: patched still builds"
    c = tree.repair_conflict
    assert c is not None and c.role is Role.REPAIR and c.index == 1
    assert tree.repair_commit is None and tree.fixup_commit == tree.results[0].commit
    assert [p.name for p in build_plans(tree, each_patch=False)] == [
        "baseline",
        "posted",
        "patched",
    ]
    data = json.loads((tmp_path / "out" / "apply.json").read_text())
    assert data["applied"] is True and data["first_conflict"] is None
    assert data["repair_conflict"] == "repairs 1/2 0001-stale"
    assert data["commits"]["repaired"] is None
    assert "REPAIR DOES NOT APPLY: repairs 1/2" in format_table(tree)


def test_repairs_are_not_tried_after_a_series_conflict(tmp_path: Path) -> None:
    other = numbered(20)
    other[9] = "line 10 changed differently"
    repair = upstream_patch(tmp_path, line=15, text="line 15 REPAIRED")
    tree = prepare_tree(
        series_of(upstream_patch(tmp_path), repairs=(repair,)),
        base_spec=plain_base(tmp_path, other),
        workdir=tmp_path / "out",
    )
    assert [r.verdict for r in tree.results] == [Verdict.CONFLICT, Verdict.NOT_TRIED]
    assert tree.conflict is tree.results[0] and tree.repair_conflict is None
    assert tree.repair_commit is None
