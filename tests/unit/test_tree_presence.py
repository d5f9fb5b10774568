"""The per-hunk already-present test (pure logic) on real diffs."""

from __future__ import annotations

from pathlib import Path

from seriesdata import commit_change, diff_of, init_repo, numbered, write

from seriesgate.series.diff import parse_diff
from seriesgate.tree.presence import SeriesContext, patch_presence, significant_lines


def _two_patch_series(tmp_path: Path) -> tuple[str, str, list[str], list[str]]:
    """Patch 1 adds a call, patch 2 (same series) rewrites that call: a merged series' shape."""
    repo = tmp_path / "up"
    init_repo(repo, {"a.c": numbered(30)})
    one = numbered(30)
    one.insert(4, "    vhost_iova_tree_map_alloc(v->iova_tree, &map);")  # hunk 1: adds only
    one[21] = "    v->shared->shadow_data = enabled;"  # hunk 2: replaces line 21
    first = diff_of(repo, commit_change(repo, "a.c", one, "one"))
    two = list(one)
    two[4] = "    vhost_iova_tree_map_alloc(s->iova_tree, &map);"
    second = diff_of(repo, commit_change(repo, "a.c", two, "two"))
    return first, second, one, two


def test_superseded_hunk_counts_but_needs_a_strong_one(tmp_path: Path) -> None:
    first, second, _, final = _two_patch_series(tmp_path)
    tree = tmp_path / "tree"
    final = list(final)
    final[0] = "line 01 changed much later upstream"  # context of hunk 1 moved on
    write(tree / "a.c", final)
    later = parse_diff(second)
    context = SeriesContext(
        removed_later=significant_lines([r for f in later for h in f.hunks for r in h.removed]),
        added_later=significant_lines([a for f in later for h in f.hunks for a in h.added]),
    )
    judged = patch_presence(tree, parse_diff(first), context)
    assert [h.how for h in judged.hunks] == ["superseded", "exact"]
    assert judged.already_present
    # Without knowing patch 2, hunk 1's added line is simply missing.
    alone = patch_presence(tree, parse_diff(first))
    assert alone.hunks[0].how == "1/1 added lines missing"
    assert alone.present == 1 and not alone.already_present  # 50 % < 75 %


def test_never_applied_patch_is_not_present(tmp_path: Path) -> None:
    first, _, _, _ = _two_patch_series(tmp_path)
    tree = tmp_path / "tree"
    drifted = numbered(30)
    drifted[0] = "line 01 drifted"
    write(tree / "a.c", drifted)
    judged = patch_presence(tree, parse_diff(first))
    assert judged.present == 0 and not judged.already_present
    assert "pre-image found" in judged.summary()


def test_moved_on_hunk_and_absent_file(tmp_path: Path) -> None:
    first, _, one, _ = _two_patch_series(tmp_path)
    tree = tmp_path / "tree"
    judged = patch_presence(tree, parse_diff(first))
    assert [h.how for h in judged.hunks] == ["file absent", "file absent"]
    after = list(one)
    after[2] = after[6] = after[19] = after[23] = "context rewritten later"
    write(tree / "a.c", after)
    judged = patch_presence(tree, parse_diff(first))
    assert [h.how for h in judged.hunks] == ["moved-on", "moved-on"]
    assert judged.already_present
    assert judged.summary().startswith("2/2 hunks present (0 exact, 2 context changed later)")
