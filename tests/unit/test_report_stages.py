"""The report job of a scaled-out pipeline: typed results back from the stages' own files.

Stage files are written by the stages' real writers (series.json, apply.json, build.json);
functional results are the real Avocado 113 job captured by the functional stage
(tests/unit/data/functional/avocado-113-job), as two parallel jobs (baseline, patched).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import test_report_helpers as h

from seriesgate.cli import main
from seriesgate.errors import InputError
from seriesgate.report import stages

JOB = Path(__file__).parent / "data" / "functional" / "avocado-113-job"


def write_stage_dir(out: Path) -> None:
    from seriesgate.build.builder import _build_dict, write_build_json
    from seriesgate.series.fetch import write_series_json
    from seriesgate.tree.apply import write_apply_json

    series_set = h.series_set()
    tree = h.tree()
    builds = h.builds()
    (out / "series").mkdir(parents=True)
    write_series_json(series_set, out / "series" / "series.json")
    write_apply_json(tree, series_set, out / "apply.json")
    named = {b.name: b for b in (builds.baseline, builds.patched, builds.posted) if b}
    for p in builds.each_patch:
        named[f"patch-{p.index:02d}"] = h.build(f"patch-{p.index:02d}", p.builds)
    write_build_json(
        out / "build.json",
        {
            "complete": True,
            "builds": {name: _build_dict(b) for name, b in named.items()},
            "checkpatch": [asdict(c) for c in builds.checkpatch],
            "firmware_dirs": ["/usr/share/seabios"],
        },
    )


def functional_dir(root: Path, build: str) -> Path:
    d = root / f"functional-{build}-quick"
    job = d / build / "job-1"
    shutil.copytree(JOB, job)
    (d / "jobs.json").write_text(json.dumps({"builds": {build: {"job": str(job), "rc": 1}}}))
    return d


def test_load_stage_files_written_by_the_stages(tmp_path: Path) -> None:
    write_stage_dir(tmp_path)
    series_set = stages.load_series_set(tmp_path)
    assert series_set == h.series_set()
    tree = stages.load_tree(tmp_path)
    assert tree == h.tree()
    builds = stages.load_builds(tmp_path, tree)
    assert builds is not None
    assert builds.patched.ok and builds.posted is not None and not builds.posted.ok
    assert [p.builds for p in builds.each_patch] == [True] * 9 + [False]
    assert builds.checkpatch == h.builds().checkpatch


def test_report_from_stages_and_parallel_functional_jobs(tmp_path: Path) -> None:
    write_stage_dir(tmp_path / "build")
    args = ["-q", "report", "--stages", str(tmp_path / "build"), "--out", str(tmp_path / "rep")]
    for build in ("baseline", "patched"):
        args += ["--functional", str(functional_dir(tmp_path, build))]
    code = main(args)
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    verdicts = {t["name"]: t for t in summary["test_verdicts"]}
    # the real job: X.test_a passes (claim status-bits, invariant), X.test_b fails on both
    assert verdicts["X.test_a"]["verdict"] == "holds-on-both"
    assert verdicts["X.test_a"]["claim"] == "status-bits"
    assert verdicts["X.test_b"]["verdict"] == "broken-on-both"
    assert summary["claims"] == [
        {
            "claim": "status-bits",
            "verdict": "holds-on-both",
            "tests": ["X.test_a"],
            "directions": ["holds-on-both"],
            "baseline": "1 holds",
            "patched": "1 holds",
        }
    ]
    assert code == summary["overall"]["exit_code"] == 0
    assert "X.test_b: fails on baseline and patched" in summary["findings"][0]
    assert (tmp_path / "rep" / "junit.xml").exists()


def test_stage_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no series.json"):
        stages.load_series_set(tmp_path)
    assert stages.load_tree(tmp_path) is None and stages.load_builds(tmp_path, None) is None
    (tmp_path / "build.json").write_text("{}")
    assert stages.load_builds(tmp_path, None) is None  # no baseline/patched yet
    assert main(["-q", "report"]) == 2


REAL = Path(__file__).parent / "data" / "report" / "default-series-apply"


def test_summary_and_reports_from_real_apply_of_the_default_series(tmp_path: Path) -> None:
    from seriesgate.report import write_reports
    from seriesgate.report.summary import build_summary

    series_set = stages.load_series_set(REAL)
    tree = stages.load_tree(REAL)
    assert tree is not None
    s = build_summary(series_set=series_set, tree=tree, stage_times={"apply": 30.0})
    recorded = json.loads((REAL / "apply.json").read_text())
    assert [p["apply"] for p in s["patches"]] == [p["label"] for p in recorded["patches"]]
    assert s["series"]["message_id"] == "20231128104303.3314000-1-eperezma@redhat.com"
    assert s["series"]["patch_count"] == 10 and s["series"]["version"] == 2
    assert s["base"]["version"] == recorded["base"]["version"]
    roles = [p["role"] for p in s["patches"]]
    assert roles.count("series") == 10 and roles.count("fixup") == 1
    # applied, not built, not tested: the gate cannot decide yet
    assert s["overall"]["exit_code"] == 2
    assert s["overall"]["undecided"] == ["functional tests did not run"]
    written = write_reports(s, tmp_path)
    reply = (tmp_path / "reply.txt").read_text()
    series_rows = [p for p in recorded["patches"] if p["role"] == "series"]
    width = max(len(p["label"]) for p in series_rows)
    for p in series_rows:
        assert f"{p['index']:02d}/10 {p['label']:<{width}} " in reply
    assert "\nUNDECIDED: functional tests did not run.\n" in reply
    assert s["headline"] == "UNDECIDED: functional tests did not run."
    md = (tmp_path / "report.md").read_text()
    assert md.count("| prereq (") == roles.count("prerequisite")
    assert len(written) == 5


def test_repaired_commit_and_build_round_trip(tmp_path: Path) -> None:
    from dataclasses import replace

    from seriesgate.build.builder import _build_dict, write_build_json
    from seriesgate.tree.apply import write_apply_json
    from seriesgate.tree.model import ApplyResult, Role, Verdict

    write_stage_dir(tmp_path)
    assert stages.load_tree(tmp_path).repair_commit is None  # type: ignore[union-attr]
    assert stages.load_builds(tmp_path, h.tree()).repaired is None  # type: ignore[union-attr]
    repair = ApplyResult(
        Role.REPAIR,
        "repairs",
        1,
        1,
        "virtio_net: register at realize",
        "",
        Verdict.CLEAN,
        commit="f" * 40,
    )
    base = h.tree()
    tree = replace(base, results=(*base.results, repair), repair_commit="f" * 40)
    write_apply_json(tree, h.series_set(), tmp_path / "apply.json")
    data = json.loads((tmp_path / "build.json").read_text())
    data["builds"]["repaired"] = _build_dict(replace(h.build("repaired"), commit="f" * 40))
    write_build_json(tmp_path / "build.json", data)
    loaded = stages.load_tree(tmp_path)
    assert loaded == tree and loaded.repair_results() == (repair,)  # type: ignore[union-attr]
    builds = stages.load_builds(tmp_path, loaded)
    assert builds is not None and builds.repaired is not None
    assert builds.repaired.name == "repaired" and builds.repaired.commit == "f" * 40
    assert builds.patched.name == "patched"
