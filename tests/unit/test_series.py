"""Series intake on real mbox fixtures with the real b4 (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from seriesdata import (
    PREREQ,
    PULL_COVER,
    RFC_COVER,
    RFC_V2,
    commit_change,
    diff_of,
    init_repo,
    numbered,
    series_mail,
)

from seriesgate import paths
from seriesgate.errors import InputError
from seriesgate.series import fetch_series_set
from seriesgate.series.fetch import Wanted, fetch_one
from seriesgate.series.mail import based_on, mbox_message_ids, slugify, split_subject
from seriesgate.series.manifest import default_manifest, find_manifest, load_manifest


def test_rfc_v2_fixture_has_11_messages() -> None:
    ids = mbox_message_ids(RFC_V2)
    assert len(ids) == 11
    assert ids[0] == RFC_COVER
    assert {f"20231128104303.3314000-{n}-eperezma@redhat.com" for n in range(1, 12)} == set(ids)


def test_fetch_rfc_v2_parses_ten_patches(tmp_path: Path) -> None:
    series = fetch_one(Wanted(RFC_COVER, name="rfc", mbox=RFC_V2), tmp_path / "series" / "rfc")
    assert series.message_id == RFC_COVER
    assert series.version == 2
    assert series.subject == "Map memory at destination .load_setup in vDPA-net migration"
    assert series.author == "Eugenio Pérez <eperezma@redhat.com>"
    assert "needs to be applied on top of" in series.cover
    assert [p.index for p in series.patches] == list(range(1, 11))
    assert all(p.total == 10 for p in series.patches)
    assert [p.message_id for p in series.patches] == [
        f"20231128104303.3314000-{n}-eperezma@redhat.com" for n in range(2, 12)
    ]
    assert series.patches[0].subject == "vdpa: do not set virtio status bits if unneeded"
    assert series.patches[9].subject == "virtio_net: register incremental migration handlers"
    eighth = series.patches[7]
    assert eighth.subject == "vdpa: add vhost_vdpa_load_setup"
    assert eighth.files == ("include/hw/virtio/vhost-vdpa.h", "hw/virtio/vhost-vdpa.c")
    assert ("Signed-off-by", "Eugenio Pérez <eperezma@redhat.com>") in eighth.trailers
    # The diffstat is computed from the diff and agrees with the one in the mail.
    stat = {s.path: (s.added, s.removed) for s in series.patches[1].diffstat}
    assert stat == {
        "hw/virtio/vhost-vdpa.c": (4, 3)
    }  # the mail says "4 insertions(+), 3 deletions(-)"
    # One am-ready file per patch, each a single mail.
    for patch in series.patches:
        assert patch.mbox is not None and patch.mbox.is_file()
        assert patch.mbox.read_text().count("\nMessage-Id: ") == 1
    assert series.mbox.is_file()


def test_fetch_pull_without_cover_by_its_parent_id(tmp_path: Path) -> None:
    series = fetch_one(
        Wanted(PULL_COVER, name="pull", mbox=PREREQ, cherry_pick="9-21"), tmp_path / "series" / "p"
    )
    assert series.message_id == PULL_COVER  # the id asked for: the pull's cover is not in the copy
    assert [p.index for p in series.patches] == list(range(9, 22))
    assert series.patches[0].subject == "vdpa: add VhostVDPAShared"
    # The original posting's id is kept as a trailer in the merged commit message.
    assert ("Message-Id", "<20231221174322.3130442-2-eperezma@redhat.com>") in series.patches[
        0
    ].trailers


def test_project_manifest_describes_default_series() -> None:
    manifest = default_manifest()
    assert manifest.target.message_id == RFC_COVER
    assert manifest.base == "debian:qemu/trixie"
    assert [p.message_id for p in manifest.prerequisites] == [PULL_COVER]
    assert manifest.prerequisites[0].cherry_pick == "9-21"
    assert find_manifest(f"<{RFC_COVER}>") == manifest
    assert find_manifest("nothing@example.org") is None


def test_manifest_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "series.toml"
    bad.write_text("name = 'x'\n")
    with pytest.raises(InputError, match="no message_id"):
        load_manifest(bad)
    bad.write_text("message_id = [\n")
    with pytest.raises(InputError, match="cannot read series manifest"):
        load_manifest(bad)


@pytest.mark.skipif(not paths.SHARED_SERIES_DIR.is_dir(), reason="needs ../shared/series")
def test_default_series_set_offline(tmp_path: Path) -> None:
    series_set = fetch_series_set(None, workdir=tmp_path)
    assert series_set.target.message_id == RFC_COVER
    assert [s.name for s in series_set.prerequisites] == ["vdpa-shared"]
    assert len(series_set.prerequisites[0].patches) == 13
    assert series_set.target.based_on == (PULL_COVER,)
    data = json.loads((tmp_path / "series.json").read_text())
    assert data["application_order"] == ["vdpa-shared", "vdpa-map-at-load-setup"]
    assert series_set.repairs == default_manifest().repairs != ()
    assert data["repairs"] == [str(p) for p in series_set.repairs]


def test_subject_and_based_on_parsing() -> None:
    assert split_subject("[PATCH v3 02/12] a: b").subject == "a: b"
    assert split_subject("[PATCH v3 02/12] a: b").version == 3
    assert split_subject("[RFC PATCH 1/1] x 1/2 y").index == 1
    assert split_subject("no prefix").total == 1
    assert based_on("Based-on: <a@b>\n based-on: x@y\nBased-on: <a@b>\n") == ["a@b", "x@y"]
    assert slugify("$(rm -rf ~); `id` | tee /etc/x") == "rm-rf-id-tee-etc-x"


# --- Based-on resolution on small real threads ---------------------------------------


def _diff(tmp_path: Path, name: str) -> str:
    repo = tmp_path / f"repo-{name}"
    init_repo(repo, {"a.c": numbered(10)})
    lines = numbered(10)
    lines[4] = f"changed by {name}"
    rev = commit_change(repo, "a.c", lines, f"change for {name}")
    return diff_of(repo, rev)


def _thread(tmp_path: Path, cover: str, based: tuple[str, ...] = ()) -> str:
    return series_mail(
        cover, f"series {cover}", [(f"a: {cover}", _diff(tmp_path, cover))], based_on=based
    )


def test_based_on_resolved_recursively_in_order(tmp_path: Path) -> None:
    mbox = tmp_path / "threads.mbox"
    mbox.write_text(
        _thread(tmp_path, "top-1@ex.org", ("mid-1@ex.org",))
        + _thread(tmp_path, "mid-1@ex.org", ("low-1@ex.org",))
        + _thread(tmp_path, "low-1@ex.org")
    )
    series_set = fetch_series_set("<top-1@ex.org>", mbox=mbox, workdir=tmp_path / "out")
    assert series_set.target.message_id == "top-1@ex.org"
    assert [s.message_id for s in series_set.prerequisites] == ["low-1@ex.org", "mid-1@ex.org"]
    assert series_set.target.based_on == ("mid-1@ex.org",)
    assert series_set.manifest is None


def test_based_on_cycle_is_an_input_error(tmp_path: Path) -> None:
    mbox = tmp_path / "cycle.mbox"
    mbox.write_text(
        _thread(tmp_path, "a-1@ex.org", ("b-1@ex.org",))
        + _thread(tmp_path, "b-1@ex.org", ("a-1@ex.org",))
    )
    with pytest.raises(
        InputError, match=r"prerequisite cycle: <a-1@ex.org> -> <b-1@ex.org> -> <a-1"
    ):
        fetch_series_set("a-1@ex.org", mbox=mbox, workdir=tmp_path / "out")


def test_missing_prerequisite_is_an_input_error(tmp_path: Path) -> None:
    mbox = tmp_path / "missing.mbox"
    mbox.write_text(_thread(tmp_path, "a-1@ex.org", ("gone-1@ex.org",)))
    with pytest.raises(InputError, match=r"prerequisite <gone-1@ex.org> of <a-1@ex.org> is not in"):
        fetch_series_set("a-1@ex.org", mbox=mbox, workdir=tmp_path / "out")


# --- bad input -------------------------------------------------------------------------


def test_message_id_not_in_mbox(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"<nope@example.org> is not in mbox"):
        fetch_series_set("nope@example.org", mbox=RFC_V2, workdir=tmp_path)


def test_version_not_in_mbox(tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match=r"no v1 of <20231128104303.3314000-1-eperezma@redhat.com>"
    ):
        fetch_one(Wanted(RFC_COVER, version=1, mbox=RFC_V2), tmp_path / "series" / "x")


def test_truncated_mbox(tmp_path: Path) -> None:
    text = RFC_V2.read_text()
    cut = tmp_path / "cut.mbox"
    cut.write_text(text[: text.index("+    .load_setup = virtio_net_load_setup")])
    with pytest.raises(InputError, match="truncated"):
        fetch_series_set(RFC_COVER, mbox=cut, workdir=tmp_path / "out")


def test_mbox_missing_a_whole_patch(tmp_path: Path) -> None:
    text = RFC_V2.read_text()
    cut = tmp_path / "cut.mbox"
    cut.write_text(text[: text.rindex("\nFrom ") + 1])
    with pytest.raises(InputError, match=r"incomplete: missing patch 10/10"):
        fetch_series_set(RFC_COVER, mbox=cut, workdir=tmp_path / "out")


def test_mbox_with_no_patches(tmp_path: Path) -> None:
    mbox = tmp_path / "talk.mbox"
    mbox.write_text(
        "From mboxrd@z Thu Jan  1 00:00:00 1970\nFrom: A <a@ex.org>\nSubject: Re: hello\n"
        "Date: Tue, 28 Nov 2023 11:42:53 +0100\nMessage-Id: <talk@ex.org>\n\nJust talk.\n"
    )
    with pytest.raises(InputError, match="no patches"):
        fetch_series_set("talk@ex.org", mbox=mbox, workdir=tmp_path / "out")


def test_not_an_mbox(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    with pytest.raises(InputError, match="is not an mbox"):
        fetch_series_set("x@ex.org", mbox=junk, workdir=tmp_path / "out")
    with pytest.raises(InputError, match="does not exist"):
        fetch_series_set("x@ex.org", mbox=tmp_path / "absent.mbox", workdir=tmp_path / "out")


def test_shell_metacharacters_in_subjects_are_inert(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f'$(touch {marker}); `touch {marker}` && rm -rf "$HOME" | x > y'
    mbox = tmp_path / "evil.mbox"
    mbox.write_text(series_mail("evil-1@ex.org", evil, [(evil, _diff(tmp_path, "evil-1@ex.org"))]))
    series_set = fetch_series_set("evil-1@ex.org", mbox=mbox, workdir=tmp_path / "out")
    assert series_set.target.subject == evil
    assert series_set.target.patches[0].subject == evil
    assert "/" not in series_set.target.name and "$" not in series_set.target.name
    assert not marker.exists()


def test_manifest_repairs_are_apart_from_fixups(tmp_path: Path) -> None:
    manifest = default_manifest()
    assert [p.parent.name for p in manifest.fixups] == ["fixups"]
    repairs = manifest.repairs
    assert [p.name[:5] for p in repairs] == ["0001-", "0002-"]
    assert all(p.parent.name == "repairs" for p in repairs)
    assert all('Repairs "[RFC PATCH v2 10/10]' in p.read_text() for p in repairs)
    # Only *.patch, in file-name order; no repairs/ directory: none.
    other = tmp_path / "other"
    (other / "repairs").mkdir(parents=True)
    (other / "series.toml").write_text('message_id = "x@example.org"\n')
    for name in ("0002-b.patch", "0001-a.patch", "notes.txt"):
        (other / "repairs" / name).write_text("")
    loaded = load_manifest(other / "series.toml")
    assert [p.name for p in loaded.repairs] == ["0001-a.patch", "0002-b.patch"]
    assert loaded.fixups == ()
    (other / "repairs" / "0001-a.patch").unlink()
    (other / "repairs" / "0002-b.patch").unlink()
    assert load_manifest(other / "series.toml").repairs == ()
