"""Series intake: b4 turns a thread into an am-ready mbox; prerequisites resolved recursively.

Prerequisites come from ``Based-on: <msgid>`` lines in a cover letter (QEMU's
convention; b4 does not follow them) and from a series manifest
(``patches/<name>/series.toml``). They are resolved depth-first, so every
series comes after everything it needs; a cycle or a prerequisite that
cannot be found is an InputError.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seriesgate import paths, progress
from seriesgate.errors import CommandError, InfraError, InputError
from seriesgate.proc import run
from seriesgate.series.mail import (
    based_on,
    mbox_message_ids,
    mbox_thread_ids,
    read_cover,
    slugify,
    split_am_mbox,
    split_subject,
)
from seriesgate.series.manifest import (
    Manifest,
    SeriesRef,
    default_manifest,
    find_manifest,
    normalize_msgid,
)
from seriesgate.series.model import Patch, Series, SeriesSet

# Offline, b4 reads the mbox and never waits on the network (--offline-mode).
# Online, a whole thread download should take seconds; give up after this.
B4_ONLINE_TIMEOUT = 300.0
B4_OFFLINE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Wanted:
    """One series to fetch: where from, which version, which patches."""

    message_id: str
    name: str | None = None
    version: int | None = None
    mbox: Path | None = None
    cherry_pick: str | None = None
    declared: tuple[str, ...] = ()  # prerequisites declared by a manifest


def b4_path() -> str:
    """b4 from the same virtualenv as seriesgate, else from $PATH."""
    candidate = Path(sys.executable).parent / "b4"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("b4")
    if found is None:
        raise InfraError("b4 is not installed", hint="run 'make venv'")
    return found


def run_b4_am(want: Wanted, outdir: Path) -> tuple[Path, Path | None, str]:
    """Run ``b4 am`` into ``outdir``; return (am-ready mbox, cover or None, b4's output)."""
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    argv: list[str] = [b4_path()]
    if want.mbox is not None:
        argv.append("--offline-mode")
    argv += ["am", "-o", str(outdir)]
    if want.mbox is not None:
        argv += ["-m", str(want.mbox)]
    if want.version is not None:
        argv += ["-v", str(want.version)]
    if want.cherry_pick:
        argv += ["-P", want.cherry_pick]
    argv.append(want.message_id)
    try:
        result = run(
            argv,
            timeout=B4_OFFLINE_TIMEOUT if want.mbox else B4_ONLINE_TIMEOUT,
            what="b4 am",
            hint=(
                "check the message-id and the mbox"
                if want.mbox
                else "online fetch failed; offline, pass --mbox FILE"
            ),
        )
    except CommandError as exc:
        markers = ("CRITICAL", "ERROR", "Could not retrieve")
        critical = [ln for ln in exc.output.splitlines() if any(m in ln for m in markers)]
        if critical:
            exc.message = f"b4 am {want.message_id}: {critical[-1].strip()[:200]}"
        if want.mbox is not None:  # b4 read the user's file: the input is at fault
            raise InputError(exc.message, hint=exc.hint) from None
        raise
    output = result.stdout + result.stderr
    mbx = sorted(outdir.glob("*.mbx"))
    unreachable = next((ln for ln in output.splitlines() if "Could not retrieve" in ln), None)
    if not mbx and want.mbox is None and unreachable:
        raise InfraError(
            f"b4 could not fetch <{want.message_id}> online: {unreachable.strip()[:160]}",
            hint="check the network, or pass --mbox FILE with a saved thread",
        )
    if not mbx and want.version is not None and "Unable to find revision" in output:
        raise InputError(
            f"no v{want.version} of <{want.message_id}> in "
            + (f"mbox {want.mbox}" if want.mbox else "its thread"),
            hint="drop --version, or pass the version the thread holds",
        )
    if not mbx:
        where = f"mbox {want.mbox}" if want.mbox else "the thread"
        raise InputError(
            f"no patches found for {want.message_id} in {where}",
            hint="the message-id must be a series' cover letter or one of its patches",
        )
    covers = sorted(outdir.glob("*.cover"))
    return mbx[0], covers[0] if covers else None, output


def fetch_one(want: Wanted, series_dir: Path) -> Series:
    """Fetch one series with b4 and describe it (without its prerequisites)."""
    if want.mbox is not None:
        ids = mbox_message_ids(want.mbox)
        if not ids:
            raise InputError(f"mbox {want.mbox} holds no messages")
        if want.message_id not in mbox_thread_ids(want.mbox):
            raise InputError(
                f"message-id <{want.message_id}> is not in mbox {want.mbox}",
                hint=f"it holds {len(ids)} messages, e.g. <{ids[0]}>",
            )
    source = f"mbox:{want.mbox}" if want.mbox else "online:b4"
    tmp = series_dir.with_name(series_dir.name + ".b4")
    with progress.step("fetch", f"b4 am {want.message_id} ({source})"):
        mbx, cover, _ = run_b4_am(want, tmp)
    patches = split_am_mbox(mbx, tmp / "patches")
    if not patches:
        raise InputError(f"no patches in the series <{want.message_id}> ({source})")
    version = _version_from(mbx)
    if want.cherry_pick is None:
        present = {p.index for p in patches}
        total = patches[0].total
        missing = [i for i in range(1, total + 1) if i not in present]
        if missing:
            shown = ", ".join(f"{i}/{total}" for i in missing[:5])
            raise InputError(
                f"series <{want.message_id}> is incomplete: missing patch {shown}",
                hint="the mbox looks truncated; fetch the whole thread",
            )
    if cover is not None:
        subject, author, cover_id, body = read_cover(cover)
    else:
        first = patches[0]
        # No cover letter (e.g. a pull's patches without its cover): keep the id asked for.
        subject, author, cover_id, body = first.subject, first.author, want.message_id, ""
    # Based-on: lines normally sit in the cover; without one, in the first patch's notes.
    text = body if cover is not None else (tmp / "patches").joinpath(_file(patches[0])).read_text()
    deps = [*want.declared, *[d for d in based_on(text) if d not in want.declared]]
    name = want.name or slugify(f"v{version}-{subject}", 50)
    final = series_dir.parent / name
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    patches = [dataclasses.replace(p, mbox=final / "patches" / _file(p)) for p in patches]
    return Series(
        name=name,
        message_id=cover_id or want.message_id,
        version=version,
        subject=subject,
        author=author,
        cover=body,
        patches=tuple(patches),
        mbox=final / mbx.name,
        source=source,
        based_on=tuple(deps),
    )


def _file(patch: Patch) -> str:
    """The file name of a patch's own am-ready mail (split_am_mbox always writes one)."""
    assert patch.mbox is not None
    return patch.mbox.name


def _version_from(mbx: Path) -> int:
    for line in mbx.read_text("utf-8", "replace").splitlines():
        if line.startswith("Subject:"):
            return split_subject(line[len("Subject:") :]).version
    return 1


class _Resolver:
    """Depth-first resolution of prerequisites, in application order."""

    def __init__(self, workdir: Path, shared_dir: Path, fallback_mbox: Path | None) -> None:
        self.series_root = workdir / "series"
        self.shared_dir = shared_dir
        self.fallback_mbox = fallback_mbox  # where Based-on ids are looked up offline
        self.done: dict[str, Series] = {}
        self.order: list[Series] = []

    def want_for(self, message_id: str, ref: SeriesRef | None, parent: str) -> Wanted:
        """How to fetch a prerequisite: its manifest entry, its own manifest, or the mbox."""
        manifest = find_manifest(message_id) if ref is None else None
        if manifest is not None:
            ref = manifest.target
        mbox: Path | None = None
        if ref is not None:
            mbox = ref.mbox_path(self.shared_dir)
        if mbox is None and self.fallback_mbox is not None:
            if message_id not in mbox_thread_ids(self.fallback_mbox):
                raise InputError(
                    f"prerequisite <{message_id}> of {parent} is not in mbox {self.fallback_mbox}",
                    hint="add its thread to the mbox, or fetch online without --mbox",
                )
            mbox = self.fallback_mbox
        declared = tuple(p.message_id for p in manifest.prerequisites) if manifest else ()
        return Wanted(
            message_id=message_id,
            name=ref.name if ref else None,
            version=ref.version if ref else None,
            mbox=mbox,
            cherry_pick=ref.cherry_pick if ref else None,
            declared=declared,
        )

    def resolve(self, want: Wanted, chain: tuple[str, ...], refs: dict[str, SeriesRef]) -> Series:
        if want.message_id in chain:
            cycle = " -> ".join(f"<{m}>" for m in (*chain, want.message_id))
            raise InputError(f"prerequisite cycle: {cycle}", hint="fix the Based-on: lines")
        if want.message_id in self.done:
            return self.done[want.message_id]
        slot = self.series_root / (want.name or slugify(want.message_id, 50))
        series = fetch_one(want, slot)
        chain = (*chain, want.message_id)
        for dep in series.based_on:
            if dep in chain or dep == series.message_id:
                cycle = " -> ".join(f"<{m}>" for m in (*chain, dep))
                raise InputError(f"prerequisite cycle: {cycle}", hint="fix the Based-on: lines")
            self.resolve(self.want_for(dep, refs.get(dep), f"<{want.message_id}>"), chain, refs)
        self.done[want.message_id] = series
        self.done[series.message_id] = series
        self.order.append(series)
        return series


def fetch_series_set(
    message_id: str | None,
    *,
    mbox: Path | None = None,
    version: int | None = None,
    workdir: Path,
) -> SeriesSet:
    """Fetch a series and, recursively, what it is based on.

    ``message_id=None`` means the default series (the manifest under
    ``patches/``), read offline from the shared series copies when they exist,
    else fetched online by b4. With ``mbox``, b4 reads that file instead of
    the network, and ``Based-on:`` prerequisites must be in it (or have a
    manifest with an offline copy). Writes ``workdir/series.json``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    manifest: Manifest | None
    if message_id is None:
        manifest = default_manifest()
        message_id = manifest.target.message_id
    else:
        message_id = normalize_msgid(message_id)
        manifest = find_manifest(message_id)
    shared = paths.SHARED_SERIES_DIR
    if mbox is not None:
        mbox = mbox.resolve()
        if not mbox.is_file():
            raise InputError(f"mbox {mbox} does not exist")
    refs: dict[str, SeriesRef] = {}
    if manifest is not None:
        target_ref = manifest.target
        refs = {r.message_id: r for r in manifest.prerequisites}
        want = Wanted(
            message_id=message_id,
            name=target_ref.name,
            version=version if version is not None else target_ref.version,
            mbox=mbox or target_ref.mbox_path(shared),
            cherry_pick=target_ref.cherry_pick,
            declared=tuple(refs),
        )
    else:
        want = Wanted(message_id=message_id, version=version, mbox=mbox)
    resolver = _Resolver(workdir, shared, want.mbox)
    # Manifest prerequisites use their own offline copies; Based-on ones fall back to the mbox.
    target = resolver.resolve(want, (), refs)
    prereqs = tuple(s for s in resolver.order if s is not target)
    series_set = SeriesSet(
        target=target,
        prerequisites=prereqs,
        manifest=manifest.path if manifest else None,
        base=manifest.base if manifest else None,
        fixups=manifest.fixups if manifest else (),
        repairs=manifest.repairs if manifest else (),
    )
    write_series_json(series_set, workdir / "series.json")
    return series_set


def to_jsonable(value: Any) -> Any:
    """Dataclasses, paths and enums as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def write_series_json(series_set: SeriesSet, path: Path) -> None:
    data = to_jsonable(series_set)
    data["application_order"] = [s.name for s in series_set.all_series]
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
