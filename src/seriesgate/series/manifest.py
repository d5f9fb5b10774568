"""Series manifests: ``patches/<series-name>/series.toml``.

A manifest names a series seriesgate knows about, pins its version, says
where its offline copy lives, which base tree it targets, and which series
it needs first (prerequisites a cover letter only links by URL, so b4 and
``Based-on:`` cannot find them). Format::

    name = "vdpa-map-at-load-setup"
    message_id = "<cover message-id>"
    version = 2
    mbox = "rfc-v2.mbox"            # offline copy, relative to ../shared/series
    base = "debian:qemu/trixie"

    [[prerequisites]]               # applied first, in this order
    name = "vdpa-shared"
    message_id = "<cover or thread root message-id>"
    version = 1
    mbox = "prereq.mbox"
    cherry_pick = "9-21"            # b4 am -P: only these patches of the thread

Next to it, ``fixups/*.patch`` adapt the series to a newer base (applied after the
series; "patched" = series + fixups) and ``repairs/*.patch`` are seriesgate's own fixes
of the series' defects (applied after the fixups; "repaired" = patched + repairs,
reported apart from the series as posted).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from seriesgate import paths
from seriesgate.errors import InputError

MANIFEST_NAME = "series.toml"


@dataclass(frozen=True)
class SeriesRef:
    """How to fetch one series: message-id, pinned version, offline copy."""

    name: str
    message_id: str
    version: int | None = None
    mbox: str | None = None  # file name, resolved against the shared series dir
    cherry_pick: str | None = None
    note: str = ""

    def mbox_path(self, shared_dir: Path) -> Path | None:
        """The offline copy, when the shared series directory has it."""
        if self.mbox is None:
            return None
        path = Path(self.mbox)
        path = path if path.is_absolute() else shared_dir / path
        return path if path.is_file() else None


@dataclass(frozen=True)
class Manifest:
    """A parsed ``series.toml``."""

    path: Path
    target: SeriesRef
    prerequisites: tuple[SeriesRef, ...]
    base: str | None

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def fixups(self) -> tuple[Path, ...]:
        """The project's own adaptation patches, applied after the series, sorted."""
        return local_patches(self.directory, "fixups")

    @property
    def repairs(self) -> tuple[Path, ...]:
        """The project's own fixes of the series' defects, applied after the fixups, sorted."""
        return local_patches(self.directory, "repairs")


def local_patches(directory: Path, kind: str) -> tuple[Path, ...]:
    """``directory/kind/*.patch`` in file-name order (``kind``: "fixups" or "repairs")."""
    return tuple(sorted((directory / kind).glob("*.patch")))


def normalize_msgid(message_id: str) -> str:
    """``<id@host>`` and ``id@host`` are the same message-id; keep the bare form."""
    return message_id.strip().strip("<>").strip()


def _ref(table: dict[str, object], where: Path, default_name: str) -> SeriesRef:
    msgid = table.get("message_id")
    if not isinstance(msgid, str) or not msgid.strip():
        raise InputError(f"{where}: a series entry has no message_id")
    version = table.get("version")
    if version is not None and not isinstance(version, int):
        raise InputError(f"{where}: version of {msgid} must be an integer")
    name = table.get("name", default_name)
    mbox = table.get("mbox")
    cherry = table.get("cherry_pick")
    note = table.get("note", "")
    return SeriesRef(
        name=str(name),
        message_id=normalize_msgid(msgid),
        version=version,
        mbox=str(mbox) if mbox is not None else None,
        cherry_pick=str(cherry) if cherry is not None else None,
        note=str(note),
    )


def load_manifest(path: Path) -> Manifest:
    """Read one manifest; a malformed one is an InputError naming the file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read series manifest {path}: {exc}") from None
    target = _ref(data, path, path.parent.name)
    prereqs = data.get("prerequisites", [])
    if not isinstance(prereqs, list):
        raise InputError(f"{path}: prerequisites must be an array of tables")
    refs = tuple(_ref(p, path, f"prereq-{n + 1}") for n, p in enumerate(prereqs))
    base = data.get("base")
    return Manifest(path, target, refs, str(base) if base is not None else None)


def all_manifests(patches_dir: Path | None = None) -> list[Manifest]:
    root = patches_dir or paths.PATCHES_DIR
    return [load_manifest(p) for p in sorted(root.glob(f"*/{MANIFEST_NAME}"))]


def default_manifest(patches_dir: Path | None = None) -> Manifest:
    """The series ``seriesgate`` verifies with no arguments (the only/first manifest)."""
    manifests = all_manifests(patches_dir)
    if not manifests:
        raise InputError(
            "no series given and no manifest found",
            hint=f"pass a message-id, or add {paths.PATCHES_DIR}/<name>/{MANIFEST_NAME}",
        )
    return manifests[0]


def find_manifest(message_id: str, patches_dir: Path | None = None) -> Manifest | None:
    """The manifest whose target series has this message-id, if any."""
    wanted = normalize_msgid(message_id)
    return next((m for m in all_manifests(patches_dir) if m.target.message_id == wanted), None)
