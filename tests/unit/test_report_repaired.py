"""A third build, ``repaired`` (series + fixups + our repairs), reported beside patched.

The outcomes are typed TestOutcomes as the functional stage returns them, shaped like the
default series' run: patched crashes the destination in load_setup on every migration; the
repaired build (our repair of that crash) migrates. The gate stays the posted series'.
Also the functional stage's optional facts: a reused baseline, the L1 accelerator, and a
test's retry note.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import test_report_helpers as h

from seriesgate.functional.model import Crash, Direction
from seriesgate.report.junit import render_junit
from seriesgate.report.markdown import render_markdown
from seriesgate.report.reply import render_reply
from seriesgate.report.summary import build_summary, derive

FRAMES = (
    "#0  0x000055f9ab3f90ba in qemu_get_subqueue (nic=0x61, queue_index=queue_index@entry=0) "
    "at ../src/net/net.c:355",
    "#1  0x000055f9ab4e1f82 in virtio_net_load_setup (f=<optimized out>, "
    "opaque=0x55f9d1a2b7a0, errp=<optimized out>) at ../src/hw/net/virtio-net.c:4038",
    "#2  0x000055f9ab3eb0f0 in qemu_loadvm_state_setup (errp=0x7fef9615af08, "
    "f=0x55f9d131a2c0) at ../src/migration/savevm.c:2843",
    "#6  0x00007fef97e449c0 in ?? () from /lib/x86_64-linux-gnu/libc.so.6",
)


def crash(tmp_path: Path, test: str) -> Crash:
    d = tmp_path / test / "data"
    d.mkdir(parents=True)
    (d / "destination.crash.json").write_text("{}")
    return Crash(
        "/root/.cache/x/qemu-system-x86_64", "SIGSEGV", FRAMES, d / "destination.crash.json"
    )


def maps(in_downtime: int) -> dict[str, object]:
    return {"guest_maps": 2, "maps_in_downtime": in_downtime}


def outcomes(tmp_path: Path, *, repaired: bool) -> list[Any]:
    ordering = "MapOrdering.test_maps_before_stop"
    correct = "Migration.test_correctness"
    fixed = {"claim": "map-at-load-setup", "direction": Direction.FIXED_BY_SERIES}
    out = [
        h.outcome(ordering, "baseline", "FAIL", measurements=maps(2), **fixed),  # type: ignore[arg-type]
        h.outcome(ordering, "patched", "ERROR", crash=crash(tmp_path, "o"), **fixed),  # type: ignore[arg-type]
        h.outcome(correct, "baseline", "PASS"),
        h.outcome(correct, "patched", "ERROR", crash=crash(tmp_path, "c")),
    ]  # fmt: skip
    if repaired:
        out += [
            h.outcome(ordering, "repaired", "PASS", measurements=maps(0), **fixed),  # type: ignore[arg-type]
            h.outcome(correct, "repaired", "PASS"),
        ]  # fmt: skip
    return out


def summary(tmp_path: Path, *, repaired: bool) -> dict[str, Any]:
    return build_summary(
        series_set=h.series_set(),
        tree=h.tree(),
        builds=h.builds(),
        env=h.env(),
        functional=h.functional(outcomes(tmp_path, repaired=repaired)),
        stage_times={},
    )


def test_repaired_is_judged_against_baseline_and_does_not_decide_the_gate(
    tmp_path: Path,
) -> None:
    without = summary(tmp_path / "a", repaired=False)
    s = summary(tmp_path / "b", repaired=True)
    decided = ("verdict", "exit_code", "reasons", "undecided")  # by patched alone
    assert {k: s["overall"][k] for k in decided} == {k: without["overall"][k] for k in decided}
    assert s["overall"]["exit_code"] == 1
    assert s["claims"] == without["claims"]
    assert [c["verdict"] for c in s["claims"]] == ["not-shown"]
    (claim,) = s["claims_repaired"]
    assert (claim["claim"], claim["verdict"], claim["repaired"]) == (
        "map-at-load-setup",
        "confirmed",
        "1 holds",
    )
    by_name = {t["name"]: t for t in s["test_verdicts"]}
    assert by_name["Migration.test_correctness"]["verdict"] == "regressed"
    assert by_name["Migration.test_correctness"]["verdict_repaired"] == "holds-on-both"
    assert by_name["MapOrdering.test_maps_before_stop"]["verdict_repaired"] == "confirmed"
    # the crash is patched's alone; the headline adds what our repair shows
    (group,) = s["crash_groups"]
    # (this series' test data changes hw/virtio/vhost-vdpa.c only: the top frame names it)
    assert group["builds"] == ["patched"] and group["culprit"] == "qemu_get_subqueue"
    assert s["headline"].startswith(
        "FAIL: the patched destination crashes on every incoming migration (SIGSEGV in "
    )
    assert s["headline"].endswith("; with our repair of the crash: claims: 1 confirmed."), s[
        "headline"
    ]
    assert "with our repair" not in without["headline"]
    assert "claims_repaired" not in without
    assert all("verdict_repaired" not in t for t in without["test_verdicts"])


def test_repaired_column_labelled_as_ours(tmp_path: Path) -> None:
    s = summary(tmp_path, repaired=True)
    md = render_markdown(s)
    label = "repaired (our repair, not the author's series)"
    claims = md[md.index("## Claims") : md.index("## Tests")]
    assert f"| patched | verdict | {label} | verdict (repaired) |" in claims
    assert "| 1 fails | 1 fails | not-shown | 1 holds | confirmed |" in claims
    assert "guest-RAM maps in the downtime window: 2 of 2 → crash → 0 of 2" in claims
    tests = md[md.index("## Tests") : md.index("### Measurements")]
    assert label in tests and "| holds-on-both |" in tests
    reply = render_reply(s)
    assert "Claims (baseline -> patched -> repaired):" in reply
    assert "  map-at-load-setup: not-shown; repaired: confirmed\n" in reply
    assert "    guest-RAM maps in the downtime window: 2 of 2 -> crash -> 0 of 2\n" in reply
    cases = {
        (c.get("classname"), c.get("name")): c
        for c in ET.fromstring(render_junit(s)).iter("testcase")
    }
    repaired_claim = cases[("seriesgate.claims.repaired", "map-at-load-setup")]
    assert repaired_claim.find("failure") is None
    assert "repaired: 1 holds" in (repaired_claim.findtext("system-out") or "")
    assert ("functional.repaired.MapOrdering", "test_maps_before_stop") in cases
    plain = render_markdown(summary(tmp_path / "p", repaired=False))
    assert label not in plain and "repaired" not in plain


def test_baseline_reuse_accel_and_retry_note(tmp_path: Path) -> None:
    s = summary(tmp_path, repaired=False)
    bare = copy.deepcopy(s)
    s["environment"]["facts"]["baseline_reuse"] = {
        "from_run": "20261207-033340-default",
        "date": "2026-12-07T03:33:40+00:00",
        "results": "/work/x/results/20261207-033340-default",
    }
    s["environment"]["facts"]["l1_accel"] = {"accel": "tcg", "reason": "no /dev/kvm on the host"}
    run = next(t for t in s["tests"] if t["build"] == "baseline")
    run["retry_note"] = "not retried: same on both builds"
    derive(s)
    new = tmp_path / "results" / "new"
    md = render_markdown(s, base_dir=new).replace("\\_", "_")
    link = "- [baseline: reused from 20261207-033340-default (2026-12-07T03:33:40+00:00)]("
    assert link in md
    target = md[md.index(link) + len(link) :].split(")", 1)[0]
    assert (new / target).resolve() == Path("/work/x/results/20261207-033340-default")
    assert "| L1 acceleration | tcg (no /dev/kvm on the host) |" in md
    assert "baseline: not retried: same on both builds" in md
    reply = render_reply(s)
    assert "L1 on TCG," in " ".join(reply.split())  # why: in the full report only
    assert "Baseline results reused from a run of 2026-12-07." in " ".join(reply.split())
    assert "20261207-033340-default" not in reply  # the run's name stays on this machine
    assert "/work" not in reply
    # absent facts: nothing said
    md = render_markdown(bare)
    assert "reused" not in md and "L1 acceleration" not in md
