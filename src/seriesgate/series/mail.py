"""Read mail: the input mbox (sanity checks) and b4's am-ready output (typed patches)."""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from seriesgate.errors import InputError
from seriesgate.series.diff import DiffError, parse_diff
from seriesgate.series.manifest import normalize_msgid
from seriesgate.series.model import FileStat, Patch

# b4 (like git format-patch) starts every message of its am-ready mbox with this line.
B4_SEPARATOR = re.compile(rb"^From git@z Thu Jan  1 00:00:00 1970$", re.MULTILINE)
PREFIX = re.compile(r"^\s*\[(?P<prefix>[^\]]*)\]\s*(?P<subject>.*)$", re.DOTALL)
COUNTER = re.compile(r"(?<![\w/])(\d+)/(\d+)(?![\w/])")
VERSION = re.compile(r"(?<!\w)v(\d+)(?!\w)", re.IGNORECASE)
TRAILER = re.compile(r"^([A-Za-z][A-Za-z0-9-]*[A-Za-z0-9]):\s+(\S.*)$")
MSGID_IN_HEADER = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
BASED_ON = re.compile(r"^\s*Based-on:\s*<?([^\s<>]+@[^\s<>]+)>?", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class SubjectParts:
    subject: str  # without the [PATCH ...] prefix
    index: int
    total: int
    version: int


def split_subject(raw: str) -> SubjectParts:
    """``[PATCH RFC v2 3/10] foo`` -> ("foo", 3, 10, 2).

    >>> split_subject("[PATCH RFC v2 3/10] vdpa: foo")
    SubjectParts(subject='vdpa: foo', index=3, total=10, version=2)
    """
    text = " ".join(raw.split())
    match = PREFIX.match(text)
    if not match:
        return SubjectParts(text, 1, 1, 1)
    prefix = match.group("prefix")
    counter = COUNTER.search(prefix)
    version = VERSION.search(prefix)
    index, total = (int(counter.group(1)), int(counter.group(2))) if counter else (1, 1)
    return SubjectParts(
        match.group("subject"), index, total, int(version.group(1)) if version else 1
    )


def mbox_message_ids(path: Path) -> list[str]:
    """Message-ids in an input mbox; InputError when it is not a readable mbox."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read mbox {path}: {exc.strerror}") from None
    if not data.startswith(b"From "):
        raise InputError(
            f"{path} is not an mbox (it must start with a 'From ' line)",
            hint="save the thread as mbox, e.g. with 'b4 mbox'",
        )
    ids = []
    for message in mailbox.mbox(path, create=False):
        msgid = message.get("Message-Id") or message.get("Message-ID")
        if msgid:
            ids.append(normalize_msgid(str(msgid)))
    return ids


def mbox_thread_ids(path: Path) -> set[str]:
    """Message-ids b4 can start from: the messages, and the parents they reply to.

    A thread copy may lack its root (e.g. a pull request's cover letter) while
    every message still names it in In-Reply-To/References.
    """
    known = set(mbox_message_ids(path))
    for message in mailbox.mbox(path, create=False):
        for header in ("In-Reply-To", "References"):
            known.update(MSGID_IN_HEADER.findall(str(message.get(header, ""))))
    return known


def based_on(text: str) -> list[str]:
    """Message-ids named by ``Based-on:`` lines (QEMU's convention for prerequisites).

    >>> based_on("Hi\\nBased-on: <a@b>\\nBased-on: c@d\\n")
    ['a@b', 'c@d']
    """
    seen: list[str] = []
    for msgid in BASED_ON.findall(text):
        msgid = normalize_msgid(msgid)
        if msgid not in seen:
            seen.append(msgid)
    return seen


def _trailers(body: str) -> tuple[tuple[str, str], ...]:
    message = body.split("\n---\n", 1)[0].rstrip()
    last = message.split("\n\n")[-1]
    found = []
    for line in last.splitlines():
        match = TRAILER.match(line.strip())
        if match:
            found.append((match.group(1), match.group(2).strip()))
    return tuple(found)


def _parse_message(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return ""
    content = part.get_content()
    return content if isinstance(content, str) else ""


def split_am_mbox(mbx: Path, patch_dir: Path) -> list[Patch]:
    """Split b4's am-ready mbox into one file per patch and describe each patch.

    A hunk cut short (a truncated mail) is an InputError naming the patch.
    """
    data = mbx.read_bytes()
    starts = [m.start() for m in B4_SEPARATOR.finditer(data)]
    patch_dir.mkdir(parents=True, exist_ok=True)
    patches: list[Patch] = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(data)
        raw = data[start:end]
        message = _parse_message(raw.split(b"\n", 1)[1])
        parts = split_subject(str(message.get("Subject", "")))
        body = _body(message)
        try:
            files = parse_diff(body)
        except DiffError as exc:
            raise InputError(
                f"patch {parts.index}/{parts.total} '{parts.subject}' is damaged: {exc}",
                hint="the mbox looks truncated; fetch the thread again",
            ) from None
        if not files:
            raise InputError(
                f"message {parts.index}/{parts.total} '{parts.subject}' has no diff",
                hint="the mbox looks truncated or is not a patch series",
            )
        slug = slugify(parts.subject, 40)
        path = patch_dir / f"{n + 1:04d}-{slug}.patch"
        path.write_bytes(raw)
        patches.append(
            Patch(
                index=parts.index,
                total=parts.total,
                subject=parts.subject,
                message_id=normalize_msgid(str(message.get("Message-Id", ""))),
                author=str(message.get("From", "")),
                date=str(message.get("Date", "")),
                files=tuple(f.path for f in files),
                diffstat=tuple(FileStat(f.path, f.added, f.removed) for f in files),
                trailers=_trailers(body),
                mbox=path,
            )
        )
    return patches


def read_cover(path: Path) -> tuple[str, str, str, str]:
    """(subject without prefix, author, message-id, body) of b4's ``.cover`` file."""
    message = _parse_message(path.read_bytes())
    parts = split_subject(str(message.get("Subject", "")))
    return (
        parts.subject,
        str(message.get("From", "")),
        normalize_msgid(str(message.get("Message-Id", ""))),
        _body(message),
    )


def slugify(text: str, limit: int = 60) -> str:
    """A filesystem- and shell-safe name: lowercase letters, digits, dashes.

    >>> slugify("vdpa: $(rm -rf /); `x` & y")
    'vdpa-rm-rf-x-y'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "series"
