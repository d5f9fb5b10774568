"""The apply ladder: each patch, in order, gets the gentlest method that works.

Per patch: ``git am`` -> ``git am --3way`` -> already-present test (per hunk,
see presence.py) -> fuzzy apply (``patch --fuzz``, fuzz and offsets
recorded, committed with the original author, date and message) -> conflict
(failing files and hunks quoted). The already-present test runs before the
fuzzy apply on purpose: fuzz can re-apply a merged hunk a second time at a
nearby place, duplicating code, and would then be reported as "fuzz".
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from seriesgate.errors import InputError
from seriesgate.proc import run
from seriesgate.series.diff import DiffError, FileDiff, parse_diff
from seriesgate.tree.base import COMMITTER, git
from seriesgate.tree.model import ApplyResult, FailingHunk, Role, Verdict
from seriesgate.tree.presence import SeriesContext, patch_presence

# GNU patch's own default; more fuzz than this ignores too much context to trust.
MAX_FUZZ = 2
PATCH_TIMEOUT = 300.0
HUNK_LINE = re.compile(
    r"^Hunk #(\d+) (succeeded|FAILED) at (\d+)(?: \(different line endings\))?"
    r"(?: with fuzz (\d+))?(?: \(offset (-?\d+) lines?\))?"
)
PATCHING_FILE = re.compile(r"^(?:patching|checking) file (.+)$")


@dataclass(frozen=True)
class PatchJob:
    """One patch to apply, with what the report needs to name it."""

    role: Role
    series: str
    index: int
    total: int
    subject: str
    message_id: str
    file: Path
    context: SeriesContext = SeriesContext()  # what later patches of its series change

    def result(self, verdict: Verdict, **fields: Any) -> ApplyResult:
        """This patch's ApplyResult with ``verdict`` (and any other fields)."""
        return ApplyResult(
            role=self.role,
            series=self.series,
            index=self.index,
            total=self.total,
            subject=self.subject,
            message_id=self.message_id,
            verdict=verdict,
            **fields,
        )


def _head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


INDEX_LINE = re.compile(r"^index ([0-9a-f]{7,40})\.\.[0-9a-f]{7,40}", re.MULTILINE)


def _first_error(output: str) -> str:
    return next((ln.strip() for ln in output.splitlines() if ln.startswith("error:")), "")[:160]


def _try_am(repo: Path, patch: Path, *, three_way: bool) -> tuple[bool, str]:
    """git am (or git am --3way); returns (applied, why not).

    A cheap check runs first so that a doomed ``git am`` (and its abort, which
    refreshes the whole index of a big tree) is skipped: ``git apply --check``
    for a plain am, the pre-image blobs' existence for a 3-way am.
    """
    if three_way:
        absent = absent_files(repo, patch)
        if absent:
            # A 3-way merge would re-create them from the pre-image blob (if known).
            return False, f"3way: files absent from the tree ({', '.join(absent[:3])})"
        text = patch.read_text(encoding="utf-8", errors="replace")
        blobs = sorted({b for b in INDEX_LINE.findall(text) if set(b) != {"0"}})
        if not blobs:
            return False, "3way: the patch names no pre-image blobs"
        probe = run(
            ["git", "-C", str(repo), "cat-file", "--batch-check"],
            input="".join(f"{b}\n" for b in blobs),
            what="git cat-file",
        )
        missing = [ln.split()[0] for ln in probe.stdout.splitlines() if ln.endswith(" missing")]
        if missing:
            return False, f"3way: {len(missing)}/{len(blobs)} pre-image blobs not in the tree"
    else:
        check = run(["git", "-C", str(repo), "apply", "--check", str(patch)], check=False)
        if check.returncode != 0:
            return False, f"git am: {_first_error(check.stderr) or 'does not apply'}"
    # Committer date = author date: the same patches on the same base give the same commit ids.
    args = ["am", "-q", "--no-gpg-sign", "--keep-cr", "--committer-date-is-author-date"]
    args += ["--3way"] if three_way else ["--no-3way"]
    result = run(["git", "-C", str(repo), *args, str(patch)], env=COMMITTER, check=False)
    if result.returncode != 0:
        git(repo, "am", "--abort", check=False)
        step = "3way" if three_way else "git am"
        return False, f"{step}: {_first_error(result.stdout + result.stderr) or 'failed'}"
    return True, ""


def _is_mail(text: str) -> bool:
    head = text.split("\ndiff --git ", 1)[0].split("\n--- ", 1)[0]
    return bool(re.search(r"^(From|Subject): ", head, re.MULTILINE))


def _commit_as_posted(repo: Path, patch: Path, files: list[FileDiff], is_mail: bool) -> str:
    """Commit the work tree changes with the patch's own author, date and message."""
    with tempfile.TemporaryDirectory(prefix="seriesgate-mailinfo-") as tmp:
        msg, body = Path(tmp) / "msg", Path(tmp) / "patch"
        info = ""
        if is_mail:
            info = run(
                ["git", "mailinfo", "-u", str(msg), str(body)],
                input=patch.read_text(encoding="utf-8", errors="replace"),
                what="git mailinfo",
            ).stdout
        fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line)
        subject = fields.get("Subject") or f"fixup: {patch.stem}"
        text = msg.read_text(encoding="utf-8") if msg.exists() else ""
        message = Path(tmp) / "message"
        message.write_text(f"{subject}\n\n{text}".rstrip() + "\n", encoding="utf-8")
        env = dict(COMMITTER)
        env["GIT_AUTHOR_NAME"] = fields.get("Author") or "seriesgate"
        env["GIT_AUTHOR_EMAIL"] = fields.get("Email") or "seriesgate@localhost"
        if fields.get("Date"):
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = fields["Date"]
        touched = sorted({p for f in files for p in (f.old_path, f.new_path) if p})
        run(["git", "-C", str(repo), "add", "-A", "-f", "--", *touched], what="git add")
        run(
            ["git", "-C", str(repo), "commit", "-q", "--no-verify", "-F", str(message)],
            env=env,
            what="git commit",
        )
    return _head(repo)


def _patch_cmd(repo: Path, patch: Path, *, dry_run: bool) -> tuple[int, str]:
    argv = [
        "patch",
        "-p1",
        "--batch",
        "--forward",
        f"--fuzz={MAX_FUZZ}",
        "--no-backup-if-mismatch",
        "-i",
        str(patch),
    ]
    if dry_run:
        argv.insert(1, "--dry-run")
    result = run(argv, cwd=repo, check=False, timeout=PATCH_TIMEOUT, env={"LC_ALL": "C"})
    return result.returncode, result.stdout + result.stderr


def _hunk_report(output: str) -> tuple[int, list[str], list[tuple[str, int]], list[str]]:
    """From patch's output: max fuzz, offsets, failed (file, hunk), missing files."""
    fuzz = 0
    offsets: list[str] = []
    failed: list[tuple[str, int]] = []
    missing: list[str] = []
    current = "?"
    for line in output.splitlines():
        file_match = PATCHING_FILE.match(line)
        if file_match:
            current = file_match.group(1).strip().strip("'")
            continue
        if line.startswith("can't find file to patch"):
            missing.append(current)
            continue
        match = HUNK_LINE.match(line)
        if not match:
            continue
        number = int(match.group(1))
        if match.group(2) == "FAILED":
            failed.append((current, number))
            continue
        if match.group(4):
            fuzz = max(fuzz, int(match.group(4)))
        offset = match.group(5)
        detail = []
        if match.group(4):
            detail.append(f"fuzz {match.group(4)}")
        if offset:
            detail.append(f"offset {offset}")
        offsets.append(f"{current}: hunk #{number} at line {match.group(3)} ({', '.join(detail)})")
    return fuzz, offsets, failed, missing


def _quote_failing(files: list[FileDiff], failed: list[tuple[str, int]]) -> list[FailingHunk]:
    by_path = {f.path: f for f in files}
    quoted = []
    for path, number in failed:
        diff = by_path.get(path)
        text = diff.hunks[number - 1].text() if diff and 0 < number <= len(diff.hunks) else ""
        quoted.append(FailingHunk(path, number, text))
    return quoted


def apply_patch(repo: Path, job: PatchJob) -> ApplyResult:
    """Run the ladder for one patch on the work tree's current branch."""
    text = job.file.read_text(encoding="utf-8", errors="replace")
    try:
        files = parse_diff(text)
    except DiffError as exc:
        raise InputError(f"{job.file.name}: {exc}", hint="the patch file is damaged") from None
    template = job.result(Verdict.NOT_TRIED, files=tuple(f.path for f in files))
    before = _head(repo)
    mail = _is_mail(text)
    tried: list[str] = []  # why each gentler step failed, for the evidence
    if mail:
        for three_way, verdict in ((False, Verdict.CLEAN), (True, Verdict.THREE_WAY)):
            applied, why = _try_am(repo, job.file, three_way=three_way)
            if not applied:
                tried.append(why)
                continue
            after = _head(repo)
            if after == before:
                return replace(
                    template,
                    verdict=Verdict.ALREADY_PRESENT,
                    evidence="git am --3way: no changes, patch already applied",
                )
            return replace(template, verdict=verdict, commit=after, evidence="; ".join(tried))
    else:  # a plain diff (a local fixup without mail headers)
        check = run(["git", "-C", str(repo), "apply", "--check", str(job.file)], check=False)
        if check.returncode == 0:
            run(["git", "-C", str(repo), "apply", str(job.file)], what="git apply")
            commit = _commit_as_posted(repo, job.file, files, mail)
            return replace(template, verdict=Verdict.CLEAN, commit=commit)
        tried.append(f"git apply: {_first_error(check.stderr) or 'does not apply'}")
    presence = patch_presence(repo, files, job.context)
    if presence.already_present:
        return replace(template, verdict=Verdict.ALREADY_PRESENT, evidence=presence.summary())
    code, output = _patch_cmd(repo, job.file, dry_run=True)
    if code == 0:
        code, output = _patch_cmd(repo, job.file, dry_run=False)
        if code == 0:
            fuzz, offsets, _, _ = _hunk_report(output)
            commit = _commit_as_posted(repo, job.file, files, mail)
            tried.append(f"patch --fuzz={MAX_FUZZ} applied it")
            return replace(
                template,
                verdict=Verdict.FUZZ,
                fuzz=fuzz,
                offsets=tuple(offsets),
                commit=commit,
                evidence="; ".join(tried),
            )
        # Cannot happen after a clean dry run; keep the tree at the last commit.
        git(repo, "checkout", "-q", "-f", "HEAD")
        git(repo, "clean", "-q", "-f", "-d")
    _, offsets, failed, missing = _hunk_report(output)
    reasons = []
    if missing:
        reasons.append(f"files absent from the tree: {', '.join(missing)}")
    if failed:
        reasons.append("failing hunks: " + ", ".join(f"{path} #{n}" for path, n in failed))
    reasons.append(f"already-present test: {presence.summary()}")
    return replace(
        template,
        verdict=Verdict.CONFLICT,
        failing_hunks=tuple(_quote_failing(files, failed)),
        offsets=tuple(offsets),
        evidence="; ".join(reasons),
    )


def absent_files(repo: Path, patch: Path) -> list[str]:
    """Files the patch modifies (not creates) that the tree does not have."""
    files = parse_diff(patch.read_text(encoding="utf-8", errors="replace"))
    return [f.path for f in files if not f.created and not (repo / (f.old_path or f.path)).exists()]
