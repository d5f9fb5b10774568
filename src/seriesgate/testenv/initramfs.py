"""Write initramfs images (cpio "newc") without root, the cpio tool or a staging tree.

Entries are added explicitly (directories, files, symlinks, device nodes) so the image
is reproducible and carries exactly what the init script needs.

>>> img = Initramfs()
>>> img.add_dir("dev"); img.add_char_device("dev/console", 5, 1)
>>> img.to_bytes()[:6]
b'070701'
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class _Entry:
    name: str
    mode: int
    data: bytes
    rdev: tuple[int, int] = (0, 0)


class Initramfs:
    """An in-memory list of entries, written out as one uncompressed newc archive."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self._names: set[str] = set()

    def _add(self, entry: _Entry) -> None:
        name = entry.name.strip("/")
        if name in self._names:
            return
        parent = os.path.dirname(name)
        if parent and parent not in self._names:
            self.add_dir(parent)
        self._names.add(name)
        self._entries.append(_Entry(name, entry.mode, entry.data, entry.rdev))

    def add_dir(self, name: str, mode: int = 0o755) -> None:
        self._add(_Entry(name, stat.S_IFDIR | mode, b""))

    def add_file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._add(_Entry(name, stat.S_IFREG | mode, data))

    def add_path(self, name: str, source: Path, mode: int | None = None) -> None:
        """Add the regular file ``source`` as ``name`` (mode defaults to the source's)."""
        perm = stat.S_IMODE(source.stat().st_mode) if mode is None else mode
        self.add_file(name, source.read_bytes(), perm)

    def add_symlink(self, name: str, target: str) -> None:
        self._add(_Entry(name, stat.S_IFLNK | 0o777, target.encode()))

    def add_char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._add(_Entry(name, stat.S_IFCHR | mode, b"", (major, minor)))

    def to_bytes(self) -> bytes:
        out = bytearray()
        for ino, entry in enumerate([*self._entries, _Entry(_TRAILER, 0, b"")], start=1):
            name = entry.name.encode() + b"\0"
            fields = [
                ino,
                entry.mode,
                0,  # uid
                0,  # gid
                2 if stat.S_ISDIR(entry.mode) else 1,  # nlink
                0,  # mtime: fixed, for reproducible images
                len(entry.data),
                0,  # dev major
                0,  # dev minor
                entry.rdev[0],
                entry.rdev[1],
                len(name),
                0,  # check
            ]
            out += b"070701" + b"".join(b"%08X" % f for f in fields) + name
            out += b"\0" * (-len(out) % 4)
            out += entry.data
            out += b"\0" * (-len(out) % 4)
        return bytes(out)

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.to_bytes())
        tmp.replace(path)
