"""checkpatch.pl output parsing, on real output captured from QEMU 10.0.13's checkpatch.pl."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seriesgate.build.checkpatch import parse_checkpatch, run_checkpatch

DATA = Path(__file__).parent / "data" / "build"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_clean_patch_has_no_errors_or_warnings() -> None:
    # RFC v2 10/10 as posted: "has no obvious style problems".
    assert parse_checkpatch(read("checkpatch-rfc-v2-10-clean.txt")) == (0, 0, ())


def test_missing_signoff_is_an_error() -> None:
    errors, warnings, messages = parse_checkpatch(read("checkpatch-fixup-no-signoff.txt"))
    assert (errors, warnings) == (1, 0)
    assert messages == ("ERROR: Missing Signed-off-by: line(s)",)


def test_errors_and_warnings_keep_their_place_and_order() -> None:
    errors, warnings, messages = parse_checkpatch(read("checkpatch-osdep-c-file.txt"))
    assert (errors, warnings) == (1, 2)
    assert messages[0] == (
        "ERROR: braces {} are necessary for all arms of this statement (util/osdep.c:441)"
    )
    assert messages[1].startswith("WARNING: Block comments use a leading /*")
    assert messages[1].endswith("(util/osdep.c:575)")


def test_messages_are_capped_but_counts_are_checkpatchs_own() -> None:
    errors, warnings, messages = parse_checkpatch(read("checkpatch-pc-c-file.txt"), limit=3)
    assert (errors, warnings) == (5, 9)
    assert len(messages) == 3
    assert all(m.startswith(("ERROR: ", "WARNING: ")) for m in messages)


def test_output_without_a_total_line_is_not_a_report() -> None:
    with pytest.raises(ValueError):
        parse_checkpatch("Can't locate object method\n")


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl missing")
def test_run_checkpatch_on_a_tiny_tree_caches_by_content(tmp_path: Path) -> None:
    # A stand-in checkpatch.pl that prints a fixed real report and counts its runs: the
    # cache must answer the second call without starting perl again.
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    counter = tmp_path / "runs"
    report = read("checkpatch-osdep-c-file.txt").replace("\\", "\\\\").replace("'", "\\'")
    (tree / "scripts" / "checkpatch.pl").write_text(
        f"open(my $f, '>>', '{counter}'); print $f \"x\\n\"; close $f;\n"
        f"local $/; my $in = <STDIN>; print '{report}'; exit 1;\n"
    )
    kwargs = {"tree": tree, "index": 3, "subject": "s", "cache": tmp_path / "cache"}
    first = run_checkpatch("patch text", log=tmp_path / "a.log", **kwargs)  # type: ignore[arg-type]
    second = run_checkpatch("patch text", log=tmp_path / "b.log", **kwargs)  # type: ignore[arg-type]
    assert first == second
    assert (first.errors, first.warnings, first.index) == (1, 2, 3)
    assert counter.read_text().count("x") == 1
    assert (tmp_path / "b.log").read_text() == read("checkpatch-osdep-c-file.txt")
