"""Build baseline, every patch, posted and patched QEMU from one AppliedTree, cached.

Layout under the cache (``seriesgate.paths.cache_dir()``)::

    build/<key>/src     git checkout (objects borrowed from the tree's repo)
    build/<key>/build   the meson/ninja build dir, reused by checkout + ninja
    build/<key>/lock    flock: one build per build dir at a time
    bin/<key>/<tree>/   finished result of one source tree: qemu-system-x86_64,
                        build.log, result.json (written last = "complete" marker)
    ccache/             shared compiler cache (second line of defence)

``<key>`` = base version + configure options + compiler; ``<tree>`` = the git
tree hash of the commit, so the same content is never built twice even when
the tree stage recreates its commits. Failed builds are stored too (their
verdict is as deterministic as a success); interrupted ones never are.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from seriesgate import paths, progress
from seriesgate.build import configure as cfg
from seriesgate.build.checkpatch import run_checkpatch
from seriesgate.build.diagnostics import disk_full, failed_targets, parse_compiler_errors
from seriesgate.build.firmware import firmware_dirs
from seriesgate.build.model import (
    BuildResult,
    BuildSet,
    CheckpatchResult,
    CompilerError,
    PatchBuild,
)
from seriesgate.build.ninja import run_logged
from seriesgate.errors import GateFailure, InfraError
from seriesgate.proc import run
from seriesgate.series.model import SeriesSet
from seriesgate.tree.model import AppliedTree, ApplyResult, Role

MIN_FREE_BYTES = 3 * 1024**3  # a cold build dir takes ~1 GiB; keep a margin for ccache
RESULT_FILE = "result.json"  # the "complete" marker of a stored build


def build_cache_dir() -> Path:
    """Root of build dirs, binary store and ccache: ``$SERIESGATE_BUILD_CACHE`` or the cache.

    The benchmark points it at an empty directory to measure a truly cold build.
    """
    override = os.environ.get("SERIESGATE_BUILD_CACHE")
    return Path(override) if override else paths.cache_dir()


class BuildInterrupted(InfraError):
    """Ctrl-C during a build: nothing stored, the build dir resumes next time."""


@dataclass(frozen=True)
class Plan:
    """One build to produce: a name for the report and the commit to build."""

    name: str
    commit: str


def _git(repo: Path, *args: str, git_dir: Path | None = None) -> str:
    argv = ["git", *(["--git-dir", str(git_dir)] if git_dir else []), *args]
    return run(argv, cwd=repo, what=f"git {args[0]}").stdout.strip()


def _tree_hashes(repo: Path, commits: list[str]) -> dict[str, str]:
    """commit -> tree hash, in one git call."""
    unique = list(dict.fromkeys(commits))
    out = _git(repo, "rev-parse", *(f"{c}^{{tree}}" for c in unique)).splitlines()
    return dict(zip(unique, out, strict=True))


def _short(commit: str) -> str:
    return commit[:12]


def add_gdb_index(binary: Path) -> bool:
    """Give ``binary`` a ``.gdb_index`` section; whether it has one now.

    Why: a crash's backtrace is taken by gdb inside the test VM (TCG), where reading the
    73 MB of DWARF of a QEMU binary without an index took ~17 s per crash; natively the
    symbol lookup goes from 0.63 s to 0.21 s with it. The binary is replaced atomically
    (a QEMU running from it keeps the old inode).
    """
    tool = shutil.which("gdb-add-index")
    if tool is None:
        return False
    work = binary.with_name(f".{binary.name}.index{os.getpid()}")
    try:
        shutil.copy2(binary, work)
        result = run([tool, str(work)], what="gdb-add-index", timeout=300, check=False)
        if result.returncode != 0:
            return False
        os.replace(work, binary)
        return True
    finally:
        work.unlink(missing_ok=True)


class BuildDir:
    """The persistent source checkout + build dir for one cache key."""

    def __init__(self, cache: Path, key: str) -> None:
        self.cache = cache
        self.key = key
        self.root = cache / "build" / key
        self.source = self.root / "src"
        self.build = self.root / "build"
        self.store = cache / "bin" / key
        self.configure_line: tuple[str, ...] = ()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the build dir's lock; wait (saying so) if another seriesgate holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress.say("build", f"waiting for another seriesgate build in {self.root}")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- binary store ---------------------------------------------------------------------

    def stored(self, tree_hash: str) -> dict[str, Any] | None:
        marker = self.store / tree_hash / RESULT_FILE
        if not marker.is_file():
            return None
        data: dict[str, Any] = json.loads(marker.read_text())
        binary = self.store / tree_hash / cfg.BINARY_NAME
        if data.get("ok") and not binary.is_file():
            return None  # binary removed by hand: build again
        if data.get("ok") and "gdb_index" not in data:  # stored before binaries had one
            data["gdb_index"] = add_gdb_index(binary)
            marker.write_text(json.dumps(data, indent=2))
        return data

    def put(self, tree_hash: str, log: Path, data: dict[str, Any]) -> Path:
        """Store a finished build atomically; returns the stored directory."""
        final = self.store / tree_hash
        tmp = self.store / f".{tree_hash}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        index = False
        if data["ok"]:
            shutil.copy2(self.build / cfg.BINARY_NAME, tmp / cfg.BINARY_NAME)
            index = add_gdb_index(tmp / cfg.BINARY_NAME)
        shutil.copy2(log, tmp / "build.log")
        stored_data = {
            **data,
            "binary": str(final / cfg.BINARY_NAME) if data["ok"] else None,
            "gdb_index": index,
        }
        (tmp / RESULT_FILE).write_text(json.dumps(stored_data, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return final

    # --- checkout + configure ---------------------------------------------------------------

    def checkout(self, repo: Path, commit: str) -> None:
        """Make src/ the tree of ``commit``, rewriting only files that differ.

        The checkout borrows objects from the tree stage's repo (alternates), and
        ``read-tree -u --reset`` works from the index alone, so unchanged files keep
        their mtimes (ninja rebuilds only what changed) even after the tree stage
        recreated its repo, and an interrupted checkout is redone from the old index.
        """
        objects = (
            Path(_git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir")) / "objects"
        )
        git_dir = self.source / ".git"
        if not git_dir.is_dir():
            self.source.mkdir(parents=True, exist_ok=True)
            run(["git", "init", "-q", str(self.source)], what="git init")
        alternates = git_dir / "objects" / "info" / "alternates"
        alternates.parent.mkdir(parents=True, exist_ok=True)
        alternates.write_text(f"{objects}\n")
        (git_dir / "index.lock").unlink(
            missing_ok=True
        )  # a stale one from Ctrl-C; we hold the lock
        _git(self.source, "read-tree", "-u", "--reset", commit, git_dir=git_dir)
        _git(self.source, "update-ref", "--no-deref", "HEAD", commit, git_dir=git_dir)

    def ensure_configured(self, log: Path) -> None:
        """Run configure once per build dir (again only when the command line changed)."""
        argv = cfg.configure_argv(self.source, cfg.python_with_meson())
        self.configure_line = argv
        stamp = self.build / "seriesgate-configured.json"
        if stamp.is_file() and (self.build / "build.ninja").is_file():
            old = tuple(json.loads(stamp.read_text()).get("argv", ()))
            if old == argv:
                return
            # Another clone's venv configured it: keep that (same options, same meson
            # requirement) as long as its Python is still there, instead of rebuilding.
            same_options = [a for a in old if not a.startswith("--python=")] == [
                a for a in argv if not a.startswith("--python=")
            ]
            old_python = next((a.split("=", 1)[1] for a in old if a.startswith("--python=")), "")
            if same_options and old_python and Path(old_python).exists():
                self.configure_line = old
                return
        shutil.rmtree(self.build, ignore_errors=True)  # half-configured: start clean
        self.build.mkdir(parents=True)
        with progress.step("build", "configure QEMU"):
            result = run_logged(
                argv, cwd=self.build, env=cfg.ccache_env(self.cache), log=log, label="configure"
            )
        if result.returncode != 0:
            text = log.read_text(errors="replace")
            if disk_full(text):
                raise InfraError(f"disk full while configuring QEMU in {self.build}", hint=str(log))
            missing = cfg.missing_dependency(text)
            if missing is not None:
                missing.hint = f"{missing.hint}; log: {log}"
                raise missing
            raise InfraError(f"QEMU configure failed (exit {result.returncode})", hint=f"see {log}")
        tmp = stamp.with_suffix(".tmp")
        tmp.write_text(json.dumps({"argv": list(argv)}))
        os.replace(tmp, stamp)

    def ninja(self, log: Path, label: str) -> tuple[int, float, int]:
        jobs = str(os.cpu_count() or 2)
        result = run_logged(
            ["ninja", "-j", jobs, *cfg.NINJA_TARGETS],
            cwd=self.build,
            env=cfg.ccache_env(self.cache),
            log=log,
            label=label,
        )
        return result.returncode, result.wall_time, result.edges


class Builder:
    """Builds the plans of one AppliedTree, reusing stored results."""

    def __init__(self, tree: AppliedTree, out_dir: Path) -> None:
        cfg.check_host_programs()
        self.tree = tree
        self.out_dir = out_dir
        self.logs = out_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cache = build_cache_dir()
        self.dir = BuildDir(self.cache, cfg.build_key(tree.base.version))
        self.checked_out: str | None = None
        self.configured = False

    def _check_disk(self) -> None:
        free = shutil.disk_usage(self.cache).free
        if free < MIN_FREE_BYTES:
            raise InfraError(
                f"disk full: {free / 1024**3:.1f} GiB free under {self.cache}, a QEMU build needs "
                f"{MIN_FREE_BYTES / 1024**3:.0f} GiB",
                hint="free space or point SERIESGATE_CACHE elsewhere",
            )

    def _result(self, plan: Plan, data: dict[str, Any], log: Path, cached: bool) -> BuildResult:
        return BuildResult(
            name=plan.name,
            commit=plan.commit,
            build_dir=self.dir.build,
            configure_line=tuple(data["configure_line"]),
            ok=bool(data["ok"]),
            wall_time=float(data["wall_time"]),
            compile_steps=int(data["compile_steps"]),
            binary=Path(data["binary"]) if data.get("binary") else None,
            log=log,
            errors=tuple(CompilerError(**e) for e in data["errors"]),
            cached=cached,
        )

    def build(self, plan: Plan, tree_hash: str) -> BuildResult:
        """The build of ``plan``: from the store, or checkout + ninja (+ configure once)."""
        log = self.logs / f"build-{plan.name}.log"
        data = self.dir.stored(tree_hash)
        if data is not None:
            shutil.copy2(self.dir.store / tree_hash / "build.log", log)
            result = self._result(plan, data, log, cached=True)
            state = "builds" if result.ok else "FAILS"
            progress.say("build", f"{plan.name} {_short(plan.commit)}: {state} (stored)")
            return result
        self._check_disk()
        log.unlink(missing_ok=True)
        what = f"{plan.name} {_short(plan.commit)}"
        try:
            if self.checked_out != plan.commit:
                self.dir.checkout(self.tree.repo, plan.commit)
                self.checked_out = plan.commit
            if not self.configured:
                self.dir.ensure_configured(self.logs / "configure.log")
                self.configured = True
            progress.say("build", f"{what}: ninja ...")
            returncode, wall, edges = self.dir.ninja(log, plan.name)
        except KeyboardInterrupt:
            raise BuildInterrupted(
                f"build of {what} interrupted (Ctrl-C or SIGTERM)",
                hint=f"nothing was stored; the next run resumes in {self.dir.build}",
            ) from None
        text = log.read_text(errors="replace")
        errors = parse_compiler_errors(text, source_dir=str(self.dir.source))
        if returncode != 0:
            if disk_full(text):
                raise InfraError(f"disk full while building {what}", hint=f"log: {log}")
            if not failed_targets(text) and not errors:
                raise InfraError(
                    f"ninja failed on {what} without a failed compile step (exit {returncode})",
                    hint=f"log: {log}",
                )
        data = {
            "configure_line": list(self.dir.configure_line),
            "ok": returncode == 0,
            "wall_time": round(wall, 1),
            "compile_steps": edges,
            "errors": [asdict(e) for e in errors] if returncode != 0 else [],
            "commit": plan.commit,
            "tree": tree_hash,
        }
        self.dir.put(tree_hash, log, data)
        stored = self.dir.stored(tree_hash)
        assert stored is not None
        result = self._result(plan, stored, log, cached=False)
        if result.ok:
            progress.say("build", f"{what}: builds ({wall:.0f} s, {edges} steps)")
        else:
            first = result.errors[0] if result.errors else None
            where = f": {first.file}:{first.line}: {first.message}" if first else ""
            progress.say("build", f"{what}: FAILS ({wall:.0f} s){where}")
        return result


def _series_commits(tree: AppliedTree) -> list[ApplyResult]:
    return [r for r in tree.results if r.role is Role.SERIES and r.commit]


def _patch_texts(tree: AppliedTree, series_set: SeriesSet | None) -> list[tuple[ApplyResult, str]]:
    """The text checkpatch reads for each series patch: the posted mail when known,
    else the applied commit as ``git format-patch`` writes it."""
    mails: dict[str, Path] = {}
    if series_set is not None:
        mails = {p.message_id: p.mbox for p in series_set.target.patches if p.mbox is not None}
    texts = []
    for r in tree.series_results():
        mail = mails.get(r.message_id)
        if mail is not None and mail.is_file():
            texts.append((r, mail.read_text(errors="surrogateescape")))
        elif r.commit:
            text = _git(tree.repo, "format-patch", "-1", "--stdout", r.commit)
            texts.append((r, text + "\n"))
    return texts


def _build_dict(b: BuildResult) -> dict[str, Any]:
    data = asdict(b)
    for k in ("build_dir", "binary", "log"):
        data[k] = str(data[k]) if data[k] is not None else None
    data["configure_command"] = " ".join(b.configure_line)
    return data


def write_build_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def build_plans(tree: AppliedTree, *, each_patch: bool) -> list[Plan]:
    """What to build, in order: baseline, (every patch,) posted, patched, (repaired).

    "repaired" only when the tree has a repaired commit (the series has repairs and
    they applied); it is built like patched, after it.
    """
    plans = [Plan("baseline", tree.baseline_commit)]
    if each_patch:
        plans += [Plan(f"patch-{r.index:02d}", r.commit or "") for r in _series_commits(tree)]
    if tree.fixup_commit != tree.series_commit or not each_patch:
        plans.append(Plan("posted", tree.series_commit))
    plans.append(Plan("patched", tree.fixup_commit))
    if tree.repair_commit is not None:
        plans.append(Plan("repaired", tree.repair_commit))
    return plans


def build_all(
    tree: AppliedTree,
    *,
    out_dir: Path,
    each_patch: bool = True,
    series_set: SeriesSet | None = None,
) -> BuildSet:
    """Build baseline, (every patch,) posted, patched (and repaired) QEMU; checkpatch the series.

    A patch that does not build is data (``ok=False`` with its first compiler
    errors); only infrastructure failures (missing build dependency, disk full,
    Ctrl-C) raise SeriesgateError. Writes ``out_dir/build.json``. ``series_set``
    (optional) lets checkpatch read the posted mails instead of the applied commits.
    """
    if tree.conflict is not None:
        c = tree.conflict
        raise GateFailure(
            f"nothing to build: {c.series} {c.index:02d}/{c.total} does not apply ({c.subject})"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    fw = firmware_dirs()
    builder = Builder(tree, out_dir)
    series = _series_commits(tree)
    has_fixups = tree.fixup_commit != tree.series_commit
    plans = build_plans(tree, each_patch=each_patch)
    hashes = _tree_hashes(tree.repo, [p.commit for p in plans])
    json_path = out_dir / "build.json"
    done: dict[str, BuildResult] = {}

    def snapshot(complete: bool, checks: tuple[CheckpatchResult, ...] = ()) -> None:
        write_build_json(
            json_path,
            {
                "complete": complete,
                "base": {"spec": tree.base.spec, "version": tree.base.version},
                "build_dir": str(builder.dir.build),
                "configure_line": list(builder.dir.configure_line),
                "firmware_dirs": [str(p) for p in fw],
                "builds": {name: _build_dict(b) for name, b in done.items()},
                "checkpatch": [asdict(c) for c in checks],
                "wall_time": round(time.monotonic() - start, 1),
            },
        )

    snapshot(False)  # a build.json exists from the start, even if the first build is cut short
    with builder.dir.locked():
        for plan in plans:
            same = next((b for b in done.values() if hashes[b.commit] == hashes[plan.commit]), None)
            if same is not None:  # e.g. "posted" is the last patch's build
                done[plan.name] = replace(same, name=plan.name, commit=plan.commit, cached=True)
            else:
                done[plan.name] = builder.build(plan, hashes[plan.commit])
            snapshot(False)
        if not builder.dir.configure_line:  # all from the store: report the stored line
            builder.dir.configure_line = done["baseline"].configure_line
    checks = tuple(
        run_checkpatch(
            text,
            tree=tree.repo,
            index=r.index,
            subject=r.subject,
            cache=builder.cache / "checkpatch",
            log=out_dir / "logs" / f"checkpatch-{r.index:02d}.log",
        )
        for r, text in _patch_texts(tree, series_set)
    )
    each = tuple(
        PatchBuild(
            index=r.index,
            subject=r.subject,
            commit=r.commit or "",
            builds=done[f"patch-{r.index:02d}"].ok,
            errors=done[f"patch-{r.index:02d}"].errors,
            log=done[f"patch-{r.index:02d}"].log,
            binary=done[f"patch-{r.index:02d}"].binary,
        )
        for r in (series if each_patch else [])
    )
    snapshot(True, checks)
    payload = json.loads(json_path.read_text())
    payload["each_patch"] = [
        {**asdict(p), "log": str(p.log), "binary": str(p.binary) if p.binary else None}
        for p in each
    ]
    write_build_json(json_path, payload)
    return BuildSet(
        baseline=done["baseline"],
        patched=done["patched"],
        posted=done.get("posted") if has_fixups else None,
        repaired=done.get("repaired"),
        each_patch=each,
        checkpatch=checks,
        firmware_dirs=fw,
        build_json=json_path,
    )
