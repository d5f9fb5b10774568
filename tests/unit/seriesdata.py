"""Helpers for series/tree tests: real mails built from real git repos, fixture paths."""

from __future__ import annotations

import subprocess
from pathlib import Path

DATA = Path(__file__).parent / "data" / "series"
RFC_V2 = DATA / "rfc-v2.mbox"
PREREQ = DATA / "prereq.mbox"
RFC_COVER = "20231128104303.3314000-1-eperezma@redhat.com"
PULL_COVER = "cover.1703582625.git.mst@redhat.com"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada Author",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_AUTHOR_DATE": "2023-11-28T11:42:54+01:00",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "test@example.org",
    "GIT_COMMITTER_DATE": "2023-11-28T11:42:54+01:00",
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": "/usr/bin:/bin",
}


def sh_git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git in a test repo (argument list, no shell)."""
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**GIT_ENV, **(env or {})},
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def numbered(n: int, prefix: str = "line") -> list[str]:
    return [f"{prefix} {i:02d} of the file" for i in range(1, n + 1)]


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def init_repo(repo: Path, files: dict[str, list[str]]) -> str:
    """A repo with one commit holding ``files``; returns the commit id."""
    repo.mkdir(parents=True, exist_ok=True)
    sh_git(repo, "init", "-q", "-b", "main")
    for name, lines in files.items():
        write(repo / name, lines)
    sh_git(repo, "add", "-A")
    sh_git(repo, "commit", "-q", "-m", "base")
    return sh_git(repo, "rev-parse", "HEAD")


def commit_change(repo: Path, name: str, lines: list[str], subject: str, body: str = "") -> str:
    write(repo / name, lines)
    sh_git(repo, "add", "-A")
    sob = "Signed-off-by: Ada Author <ada@example.org>"
    message = f"{subject}\n\n{body or 'Why: a test change.'}\n\n{sob}"
    sh_git(repo, "commit", "-q", "-m", message)
    return sh_git(repo, "rev-parse", "HEAD")


def format_patch(repo: Path, rev: str, out: Path) -> Path:
    """``git format-patch -1 rev`` into ``out``; returns the patch file."""
    out.mkdir(parents=True, exist_ok=True)
    name = sh_git(repo, "format-patch", "-1", rev, "-o", str(out))
    return Path(name.splitlines()[0])


def series_mail(
    cover_id: str,
    subject: str,
    patches: list[tuple[str, str]],
    *,
    based_on: tuple[str, ...] = (),
    date: str = "Tue, 28 Nov 2023 11:42:53 +0100",
) -> str:
    """An mbox thread: a cover letter and patches (subject, diff) replying to it.

    The diffs are real ``git diff`` output; headers follow git format-patch / send-email.
    """
    total = len(patches)
    domain = cover_id.split("@", 1)[1]
    stem = cover_id.split("@", 1)[0].rsplit("-", 1)[0]
    cover_body = "This series does a thing.\n\n" + "".join(f"Based-on: <{b}>\n" for b in based_on)
    mails = [
        _mail(cover_id, f"[PATCH 0/{total}] {subject}", cover_body, date, None),
    ]
    for n, (psubject, diff) in enumerate(patches, 1):
        body = (
            f"Explain patch {n}.\n\nSigned-off-by: Ada Author <ada@example.org>\n---\n{diff}"
            "-- \n2.39.5\n"
        )
        mails.append(
            _mail(
                f"{stem}-{n + 1}@{domain}", f"[PATCH {n}/{total}] {psubject}", body, date, cover_id
            )
        )
    return "".join(mails)


def _mail(msgid: str, subject: str, body: str, date: str, reply_to: str | None) -> str:
    headers = [
        "From mboxrd@z Thu Jan  1 00:00:00 1970",
        "From: Ada Author <ada@example.org>",
        "To: qemu-devel@nongnu.org",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-Id: <{msgid}>",
    ]
    if reply_to:
        headers += [f"In-Reply-To: <{reply_to}>", f"References: <{reply_to}>"]
    headers += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=UTF-8", ""]
    return "\n".join(headers) + "\n" + body + "\n"


def diff_of(repo: Path, rev: str) -> str:
    """The ``git show`` diff of one commit (what a patch mail carries after '---')."""
    return sh_git(repo, "show", "--format=", "--stat", "-p", rev) + "\n"
