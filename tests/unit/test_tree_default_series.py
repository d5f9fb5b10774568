"""The default series on the real Debian QEMU tree (slow: cached download, unpack, git)."""

from __future__ import annotations

from pathlib import Path

import pytest
from seriesdata import sh_git

from seriesgate import paths
from seriesgate.series import fetch_series_set
from seriesgate.tree import Role, Verdict, format_table, prepare_tree

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not paths.SHARED_SERIES_DIR.is_dir(), reason="needs ../shared/series")
def test_default_series_on_debian_qemu(tmp_path: Path) -> None:
    series_set = fetch_series_set(None, workdir=tmp_path)
    tree = prepare_tree(series_set, base_spec=None, workdir=tmp_path)
    table = format_table(tree)
    assert tree.base.spec == "debian:qemu/trixie" and tree.base.version.startswith("10.0.")
    prereqs = [r for r in tree.results if r.role is Role.PREREQUISITE]
    series = {r.index: r for r in tree.series_results()}
    assert len(prereqs) == 13 and len(series) == 10
    # The prerequisite was merged (then changed) upstream: the per-hunk test must see it.
    assert all(r.verdict is Verdict.ALREADY_PRESENT for r in prereqs), table
    assert all("hunks present" in r.evidence for r in prereqs)
    assert series[1].verdict is Verdict.ALREADY_PRESENT, table  # merged in the same pull
    assert {i for i, r in series.items() if r.verdict is Verdict.CLEAN} == {2, 3, 4, 6, 7}, table
    assert {i for i, r in series.items() if r.verdict is Verdict.FUZZ} == {5, 8, 9, 10}, table
    assert tree.conflict is None
    assert tree.baseline_commit == tree.base_commit  # nothing of the prerequisite to add
    # Every applied patch is a commit with the posting's author, date and subject.
    for index in (2, 5, 10):
        result = series[index]
        assert result.commit is not None
        log = sh_git(tree.repo, "log", "-1", "--format=%an <%ae>|%s", result.commit)
        assert log == f"Eugenio Pérez <eperezma@redhat.com>|{result.subject}"
    count = sh_git(tree.repo, "rev-list", "--count", f"{tree.base_commit}..{tree.series_commit}")
    assert count == "9"
    assert (tmp_path / "apply.json").is_file()
    # seriesgate's repairs of 10/10 apply on top of the fixup, apart from the series.
    repairs = tree.repair_results()
    assert [r.verdict for r in repairs] == [Verdict.CLEAN, Verdict.CLEAN], table
    assert tree.repair_commit == repairs[-1].commit != tree.fixup_commit
    patched = sh_git(tree.repo, "show", f"{tree.fixup_commit}:hw/net/virtio-net.c")
    repaired = sh_git(tree.repo, "show", f"{tree.repair_commit}:hw/net/virtio-net.c")
    init = "static void virtio_net_instance_init(Object *obj)"
    realize = "static void virtio_net_device_realize(DeviceState *dev, Error **errp)"
    unrealize = "static void virtio_net_device_unrealize(DeviceState *dev)"

    def body(text: str, head: str) -> str:
        return text.split(head, 1)[1].split("\n}\n", 1)[0]

    assert "register_savevm_live" in body(patched, init)  # the defect, as posted
    assert "register_savevm_live" not in body(repaired, init)
    assert "virtio_net_register_savevm(n);" in body(repaired, realize)
    assert "unregister_savevm(VMSTATE_IF(dev)" in body(repaired, unrealize)
