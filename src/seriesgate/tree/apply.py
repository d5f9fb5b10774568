"""prepare_tree: base tree + prerequisites + series + fixups + repairs, one commit per patch."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from seriesgate import progress
from seriesgate.errors import InputError
from seriesgate.series.diff import parse_diff
from seriesgate.series.fetch import to_jsonable
from seriesgate.series.mail import split_subject
from seriesgate.series.manifest import local_patches
from seriesgate.series.model import SeriesSet
from seriesgate.tree.base import (
    DEFAULT_BASE,
    checkout_branch,
    git,
    obtain_base,
    tree_lock,
    work_tree_for,
    work_tree_path,
)
from seriesgate.tree.ladder import PatchJob, absent_files, apply_patch
from seriesgate.tree.model import AppliedTree, ApplyResult, BaseTree, Role, Verdict
from seriesgate.tree.presence import SeriesContext, significant_lines

BRANCH_PREFIX = "seriesgate/"


def jobs_for(series_set: SeriesSet) -> list[PatchJob]:
    """Every patch in application order: prerequisites, the series, local fixups, repairs."""
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
    jobs += _local_jobs(series_set, Role.FIXUP, "fixups", series_set.fixups)
    jobs += _local_jobs(series_set, Role.REPAIR, "repairs", series_set.repairs)
    return jobs


def _local_jobs(
    series_set: SeriesSet, role: Role, kind: str, known: tuple[Path, ...]
) -> list[PatchJob]:
    """The project's own patches of one kind (``patches/<name>/<kind>/*.patch``), sorted."""
    found = list(known)
    if series_set.manifest is not None:  # they may be added after the fetch
        found = sorted({*found, *local_patches(series_set.manifest.parent, kind)})
    return [
        PatchJob(role, kind, number, len(found), _fixup_subject(path), "", path)
        for number, path in enumerate(found, 1)
    ]


def _fixup_subject(path: Path) -> str:
    """A local patch's Subject: header (git format-patch output), else its file name."""
    head = path.read_text(encoding="utf-8", errors="replace").split("\ndiff ", 1)[0]
    match = re.search(r"^Subject: (.*(?:\n[ \t].*)*)", head, re.MULTILINE)
    return split_subject(match.group(1)).subject if match else path.stem


def prepare_tree(series_set: SeriesSet, *, base_spec: str | None, workdir: Path) -> AppliedTree:
    """Apply the series set to its base tree; write ``workdir/apply.json``.

    The work tree is the cached one for the base (see base.py), on branch
    ``seriesgate/<series name>`` reset to the pristine base. A conflict does
    not raise: the tree stays at the last applied patch, later patches are
    ``not-tried``, and ``AppliedTree.conflict`` names the first conflict
    (``AppliedTree.repair_conflict`` when it is one of the repairs, which come
    last: then only the repaired tree is missing).
    A patch that only touches files the base lacks (a series for another
    project) is an InputError, raised after apply.json is written.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    spec = base_spec or series_set.base or DEFAULT_BASE
    base, parsed = obtain_base(spec)
    jobs = jobs_for(series_set)
    with tree_lock(work_tree_path(base, parsed)):
        repo, base_commit = work_tree_for(base, parsed)
        if parsed.kind == "git":
            base = dataclasses.replace(base, version=base_commit)
        checkout_branch(repo, BRANCH_PREFIX + series_set.target.name, base_commit)
        results: list[ApplyResult] = []
        foreign: ApplyResult | None = None
        with progress.step("apply", f"{len(jobs)} patches onto {spec} ({base.version})"):
            for job in jobs:
                if results and results[-1].verdict in (Verdict.CONFLICT, Verdict.NOT_TRIED):
                    results.append(
                        job.result(Verdict.NOT_TRIED, evidence="an earlier patch conflicts")
                    )
                    continue
                result = apply_patch(repo, job)
                results.append(result)
                if result.verdict is Verdict.CONFLICT:
                    absent = absent_files(repo, job.file)
                    if absent and len(absent) == len(result.files):
                        foreign = result
        tree = _finish(repo, base, base_commit, results, series_set, workdir)
    if foreign is not None:
        raise InputError(
            f"patch {foreign.index}/{foreign.total} '{foreign.subject}' only touches files "
            f"the base tree lacks ({', '.join(foreign.files[:3])}): is this series for QEMU?",
            hint=f"see {workdir / 'apply.json'}",
        )
    return tree


def _latest(results: list[ApplyResult], roles: tuple[Role, ...], default: str) -> str:
    """The last commit made by a patch of these roles (the base when none)."""
    commit = default
    for result in results:
        if result.role in roles and result.commit:
            commit = result.commit
    return commit


APPLIED = (Verdict.CLEAN, Verdict.THREE_WAY, Verdict.FUZZ, Verdict.ALREADY_PRESENT)


def _repair_commit(results: list[ApplyResult], base_commit: str) -> str | None:
    """Where the repairs end; None when there are none or one of them did not apply."""
    repairs = [r for r in results if r.role is Role.REPAIR]
    if not repairs or any(r.verdict not in APPLIED for r in repairs):
        return None
    return _latest(results, tuple(Role), base_commit)


def _finish(
    repo: Path,
    base: BaseTree,
    base_commit: str,
    results: list[ApplyResult],
    series_set: SeriesSet,
    workdir: Path,
) -> AppliedTree:
    """Record where each stage ended (refs in the repo, apply.json) and type the result."""
    prereqs = (Role.PREREQUISITE,)
    posted = (Role.PREREQUISITE, Role.SERIES)
    tree = AppliedTree(
        base=base,
        repo=repo,
        base_commit=base_commit,
        baseline_commit=_latest(results, prereqs, base_commit),
        series_commit=_latest(results, posted, base_commit),
        fixup_commit=_latest(results, (*posted, Role.FIXUP), base_commit),
        results=tuple(results),
        repair_commit=_repair_commit(results, base_commit),
    )
    name = series_set.target.name
    for label, commit in (
        ("base", tree.base_commit),
        ("baseline", tree.baseline_commit),
        ("series", tree.series_commit),
        ("patched", tree.fixup_commit),
    ):
        git(repo, "update-ref", f"refs/seriesgate/{name}/{label}", commit)
    repaired_ref = f"refs/seriesgate/{name}/repaired"
    if tree.repair_commit is not None:
        git(repo, "update-ref", repaired_ref, tree.repair_commit)
    elif git(repo, "for-each-ref", repaired_ref):  # from an earlier run with repairs
        git(repo, "update-ref", "-d", repaired_ref)
    write_apply_json(tree, series_set, workdir / "apply.json")
    return tree


def _name(result: ApplyResult | None) -> str | None:
    return (
        None
        if result is None
        else f"{result.series} {result.index}/{result.total} {result.subject}"
    )


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
            "repaired": tree.repair_commit,
        },
        "applied": conflict is None,
        "first_conflict": _name(conflict),
        "repair_conflict": _name(tree.repair_conflict),
        "patches": [{**to_jsonable(r), "label": r.label} for r in tree.results],
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def format_table(tree: AppliedTree) -> str:
    """The verdict table printed by ``seriesgate apply`` (one row per patch)."""
    rows = [("role", "patch", "verdict", "subject / evidence")]
    for r in tree.results:
        role = "prereq" if r.role is Role.PREREQUISITE else r.role.value
        subject = r.subject if len(r.subject) <= 60 else r.subject[:57] + "..."
        rows.append((role, f"{r.index}/{r.total}", r.label, subject))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
        )
        if n == 0:
            continue
        r = tree.results[n - 1]
        detail = ""
        if r.verdict in (Verdict.ALREADY_PRESENT, Verdict.CONFLICT):
            detail = r.evidence
        elif r.verdict is Verdict.FUZZ:
            detail = "; ".join(o for o in r.offsets if "fuzz" in o)
        if detail:
            lines.append(" " * (sum(widths) + 6) + "  " + detail[:160])
    counts: dict[str, int] = {}
    for r in tree.results:
        counts[r.label] = counts.get(r.label, 0) + 1
    lines.append("")
    lines.append("summary: " + ", ".join(f"{n} {label}" for label, n in counts.items()))
    if tree.conflict:
        c = tree.conflict
        lines.append(
            f"CONFLICT: {c.series} {c.index}/{c.total} '{c.subject}'; "
            f"partial tree kept in {tree.repo}"
        )
        for hunk in c.failing_hunks[:3]:
            lines.append(f"  {hunk.file} hunk #{hunk.hunk}:")
            lines.extend("    " + ln for ln in hunk.text.splitlines()[:12])
    else:
        repaired = f", repaired = {tree.repair_commit[:12]}" if tree.repair_commit else ""
        lines.append(f"tree: {tree.repo} (patched = {tree.fixup_commit[:12]}{repaired})")
    if tree.repair_conflict:
        c = tree.repair_conflict
        lines.append(
            f"REPAIR DOES NOT APPLY: {c.series} {c.index}/{c.total} '{c.subject}': no repaired "
            "tree (a problem of seriesgate's repair, not of the series)"
        )
    return "\n".join(lines)
