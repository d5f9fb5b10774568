"""prepare_tree: base tree + prerequisites + series + fixups, one commit per applied patch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from seriesgate import progress
from seriesgate.errors import InputError
from seriesgate.series.fetch import to_jsonable
from seriesgate.series.model import SeriesSet
from seriesgate.tree.base import (
    DEFAULT_BASE,
    checkout_branch,
    git,
    locked,
    obtain_base,
    work_tree_for,
)
from seriesgate.tree.ladder import PatchJob, absent_files, apply_patch
from seriesgate.series.diff import parse_diff
from seriesgate.tree.presence import SeriesContext, significant_lines
from seriesgate.tree.model import AppliedTree, ApplyResult, Role, Verdict

BRANCH_PREFIX = "seriesgate/"


def jobs_for(series_set: SeriesSet) -> list[PatchJob]:
    """Every patch in application order: prerequisites, the series, then local fixups."""
    jobs: list[PatchJob] = []
    for series in series_set.all_series:
        role = Role.SERIES if series is series_set.target else Role.PREREQUISITE
        diffs = []
        for patch in series.patches:
            assert patch.mbox is not None, "fetch_series_set writes one file per patch"
            diffs.append(parse_diff(patch.mbox.read_text(encoding="utf-8", errors="replace")))
        for number, patch in enumerate(series.patches):
            assert patch.mbox is not None
            later = [h for files in diffs[number + 1 :] for f in files for h in f.hunks]
            context = SeriesContext(
                removed_later=significant_lines([line for h in later for line in h.removed]),
                added_later=significant_lines([line for h in later for line in h.added]),
            )
            jobs.append(
                PatchJob(
                    role,
                    series.name,
                    patch.index,
                    patch.total,
                    patch.subject,
                    patch.message_id,
                    patch.mbox,
                    context,
                )
            )
    fixups = list(series_set.fixups)
    if series_set.manifest is not None:  # fixups may be added after the fetch
        fixups = sorted({*fixups, *(series_set.manifest.parent / "fixups").glob("*.patch")})
    for number, path in enumerate(fixups, 1):
        jobs.append(
            PatchJob(Role.FIXUP, "fixups", number, len(fixups), path.stem, "", path.resolve())
        )
    return jobs


def _not_tried(job: PatchJob) -> ApplyResult:
    return ApplyResult(
        role=job.role,
        series=job.series,
        index=job.index,
        total=job.total,
        subject=job.subject,
        message_id=job.message_id,
        verdict=Verdict.NOT_TRIED,
        evidence="an earlier patch conflicts",
    )


def prepare_tree(series_set: SeriesSet, *, base_spec: str | None, workdir: Path) -> AppliedTree:
    """Apply the series set to its base tree; write ``workdir/apply.json``.

    The work tree is the cached one for the base (see base.py), on branch
    ``seriesgate/<series name>`` reset to the pristine base. A conflict does
    not raise: the tree stays at the last applied patch, later patches are
    ``not-tried``, and ``AppliedTree.conflict`` names the first conflict.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    spec = base_spec or series_set.base or DEFAULT_BASE
    base, parsed = obtain_base(spec)
    repo_key = base.source_dir.name if parsed.kind == "debian" else None
    del repo_key
    with locked(base.source_dir.parent / f".{base.source_dir.name}.lock"):
        repo, base_commit = work_tree_for(base, parsed)
        if parsed.kind != "debian":
            base = dataclasses.replace(base, version=base_commit if parsed.kind == "git" else base.version)
        branch = BRANCH_PREFIX + series_set.target.name
        checkout_branch(repo, branch, base_commit)
        results: list[ApplyResult] = []
        marks = {Role.PREREQUISITE: base_commit, Role.SERIES: base_commit, Role.FIXUP: base_commit}
        jobs = jobs_for(series_set)
        conflict = None
        with progress.step("apply", f"{len(jobs)} patches onto {spec} ({base.version})"):
            for job in jobs:
                if conflict is not None:
                    results.append(_not_tried(job))
                    continue
                result = apply_patch(repo, job)
                results.append(result)
                if result.verdict is Verdict.CONFLICT:
                    conflict = result
                    absent = absent_files(repo, job.file)
                    modified = [r for r in result.files]
                    if absent and len(absent) == len(modified):
                        tree = _finish(repo, base, base_commit, marks, results, series_set, workdir)
                        del tree
                        raise InputError(
                            f"patch {job.index}/{job.total} '{job.subject}' only touches files "
                            f"the base tree lacks ({', '.join(absent[:3])}): is it for QEMU?",
                            hint=f"partial tree kept in {repo}; see {workdir / 'apply.json'}",
                        )
        head = git(repo, "rev-parse", "HEAD")
        # Where each stage ended: baseline = after prerequisites, etc.
        seen_series = any(r.role is Role.SERIES for r in results)
        for result in results:
            if result.commit:
                marks[result.role] = result.commit
        marks[Role.SERIES] = _latest(results, (Role.PREREQUISITE, Role.SERIES), base_commit)
        marks[Role.PREREQUISITE] = _latest(results, (Role.PREREQUISITE,), base_commit)
        marks[Role.FIXUP] = head
        del seen_series
        return _finish(repo, base, base_commit, marks, results, series_set, workdir)


def _latest(results: list[ApplyResult], roles: tuple[Role, ...], default: str) -> str:
    commit = default
    for result in results:
        if result.role in roles and result.commit:
            commit = result.commit
    return commit


def _finish(
    repo: Path,
    base: object,
    base_commit: str,
    marks: dict[Role, str],
    results: list[ApplyResult],
    series_set: SeriesSet,
    workdir: Path,
) -> AppliedTree:
    from seriesgate.tree.model import BaseTree

    assert isinstance(base, BaseTree)
    if not any(r.commit for r in results if r.role is Role.FIXUP):
        marks[Role.FIXUP] = _latest(results, (Role.PREREQUISITE, Role.SERIES), base_commit)
    tree = AppliedTree(
        base=base,
        repo=repo,
        base_commit=base_commit,
        baseline_commit=_latest(results, (Role.PREREQUISITE,), base_commit),
        series_commit=_latest(results, (Role.PREREQUISITE, Role.SERIES), base_commit),
        fixup_commit=marks[Role.FIXUP] if results else base_commit,
        results=tuple(results),
    )
    name = series_set.target.name
    for label, commit in (
        ("base", tree.base_commit),
        ("baseline", tree.baseline_commit),
        ("series", tree.series_commit),
        ("patched", tree.fixup_commit),
    ):
        git(repo, "update-ref", f"refs/seriesgate/{name}/{label}", commit)
    write_apply_json(tree, series_set, workdir / "apply.json")
    return tree


def write_apply_json(tree: AppliedTree, series_set: SeriesSet, path: Path) -> None:
    """The machine-readable result: base, commits, one entry per patch."""
    conflict = tree.conflict
    data = {
        "series": series_set.target.name,
        "message_id": series_set.target.message_id,
        "base": to_jsonable(tree.base),
        "repo": str(tree.repo),
        "branch": BRANCH_PREFIX + series_set.target.name,
        "commits": {
            "base": tree.base_commit,
            "baseline": tree.baseline_commit,
            "series": tree.series_commit,
            "patched": tree.fixup_commit,
        },
        "applied": conflict is None,
        "first_conflict": None if conflict is None else f"{conflict.series} {conflict.index}/{conflict.total} {conflict.subject}",
        "patches": [{**to_jsonable(r), "label": r.label} for r in tree.results],
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def format_table(tree: AppliedTree) -> str:
    """The verdict table printed by ``seriesgate apply`` (one row per patch)."""
    rows = [("role", "patch", "verdict", "subject / evidence")]
    for r in tree.results:
        role = {"prerequisite": "prereq", "series": "series", "fixup": "fixup"}[r.role.value]
        subject = r.subject if len(r.subject) <= 60 else r.subject[:57] + "..."
        rows.append((role, f"{r.index}/{r.total}", r.label, subject))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
        if n == 0:
            continue
        r = tree.results[n - 1]
        if r.verdict in (Verdict.ALREADY_PRESENT, Verdict.CONFLICT) and r.evidence:
            lines.append(" " * (sum(widths) + 6) + "  " + r.evidence[:160])
    counts: dict[str, int] = {}
    for r in tree.results:
        counts[r.label] = counts.get(r.label, 0) + 1
    lines.append("")
    lines.append("summary: " + ", ".join(f"{n} {label}" for label, n in counts.items()))
    if tree.conflict:
        c = tree.conflict
        lines.append(f"CONFLICT: {c.series} {c.index}/{c.total} '{c.subject}' — partial tree kept in {tree.repo}")
        for hunk in c.failing_hunks[:3]:
            lines.append(f"  {hunk.file} hunk #{hunk.hunk}:")
            lines.extend("    " + ln for ln in hunk.text.splitlines()[:12])
    else:
        lines.append(f"tree: {tree.repo} (patched = {tree.fixup_commit[:12]})")
    return "\n".join(lines)
