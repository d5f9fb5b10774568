"""Base trees: resolve a base spec to a pristine source and a cached git work tree.

Specs:

- ``debian:PACKAGE[/SUITE]`` — the Debian source package, as packaged
  (``apt-get source``, ``dpkg-source -x`` applies Debian's patches). A
  ``deb-src``-only entry for SUITE is added to apt when missing.
- ``git:URL@REF`` — fetched into the cache, REF resolved to a commit.
- ``dir:PATH`` — an existing tree: a git repo's HEAD, or a plain directory's
  current content.

The work tree lives in ``cache_dir()/trees/<key>/``: a git repo whose base
commit is the pristine source, reused by every run (a branch per series), so
later stages can build in place incrementally. It is never copied per run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from seriesgate import paths, progress
from seriesgate.errors import CommandError, InfraError, InputError
from seriesgate.proc import run
from seriesgate.tree.model import BaseTree

DEFAULT_BASE = "debian:qemu/trixie"
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
APT_TIMEOUT = 600.0
GIT_TIMEOUT = 1800.0
# The committer of every commit seriesgate makes (authors stay the patches' own).
COMMITTER = {
    "GIT_COMMITTER_NAME": "seriesgate",
    "GIT_COMMITTER_EMAIL": "seriesgate@localhost",
}
BASE_AUTHOR = {
    "GIT_AUTHOR_NAME": "seriesgate",
    "GIT_AUTHOR_EMAIL": "seriesgate@localhost",
    # Fixed dates: the same pristine source always gives the same base commit id.
    "GIT_AUTHOR_DATE": "1970-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "1970-01-01T00:00:00Z",
}
BASE_REF = "refs/seriesgate/base"
# Build directories later stages create inside the tree survive branch switches.
WORKTREE_EXCLUDES = ("/build/", "/build-*/")


@dataclass(frozen=True)
class BaseSpec:
    """A parsed base spec."""

    kind: str  # "debian" | "git" | "dir"
    spec: str
    package: str = ""
    suite: str = ""
    url: str = ""
    ref: str = ""
    path: Path | None = None


def parse_base_spec(spec: str) -> BaseSpec:
    """Parse ``debian:PKG[/SUITE]``, ``git:URL@REF`` or ``dir:PATH``.

    >>> parse_base_spec("debian:qemu/trixie").suite
    'trixie'
    >>> parse_base_spec("git:https://example.org/qemu.git@v9.0.0").ref
    'v9.0.0'
    """
    kind, sep, rest = spec.partition(":")
    hint = "use debian:qemu[/SUITE], git:URL@REF or dir:PATH"
    if not sep or not rest:
        raise InputError(f"unknown base spec '{spec}'", hint=hint)
    if kind == "debian":
        package, _, suite = rest.partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", package) or (
            suite and not re.fullmatch(r"[a-z0-9-]+", suite)
        ):
            raise InputError(f"bad Debian source package in base spec '{spec}'", hint=hint)
        return BaseSpec("debian", spec, package=package, suite=suite)
    if kind == "git":
        url, at, ref = rest.rpartition("@")
        if not at or not url or not ref or ":" in ref or ref.startswith("-"):
            raise InputError(f"git base spec '{spec}' needs @REF", hint="e.g. git:URL@v9.2.0")
        return BaseSpec("git", spec, url=url, ref=ref)
    if kind == "dir":
        path = Path(rest).expanduser().resolve()
        if not path.is_dir():
            raise InputError(f"base directory {path} does not exist", hint=hint)
        return BaseSpec("dir", spec, path=path)
    raise InputError(f"unknown base spec '{spec}'", hint=hint)


def git(repo: Path, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT) -> str:
    """Run git in ``repo`` (no pager, no user config surprises); return stdout."""
    env = {**COMMITTER, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    result = run(["git", "-C", str(repo), *args], env=env, check=check, timeout=timeout)
    return result.stdout.strip()


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (two runs must not share a work tree at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress.say("tree", f"waiting for another run to release {path.name}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# --- Debian source packages ----------------------------------------------------------


def _host_codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "stable"
    match = re.search(r"^VERSION_CODENAME=(\S+)", text, re.MULTILINE)
    return match.group(1).strip('"') if match else "stable"


def _archive_uri() -> str:
    """The Debian mirror the host already uses (first deb entry), else the default one."""
    for source in sorted(APT_SOURCES_DIR.glob("*.sources")):
        text = source.read_text(errors="replace")
        for stanza in text.split("\n\n"):
            if re.search(r"^Types:.*\bdeb\b", stanza, re.MULTILINE) and "security" not in stanza:
                match = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
                if match and "/debian" in match.group(1):
                    return match.group(1)
    return "http://deb.debian.org/debian"


def ensure_deb_src(suite: str) -> bool:
    """Add a deb-src-only apt entry for ``suite`` (never ``deb``: no foreign binaries).

    Returns True when the entry was written (apt needs an update).
    """
    path = APT_SOURCES_DIR / f"seriesgate-deb-src-{suite}.sources"
    content = (
        f"# Added by seriesgate: source packages only (never binaries) from {suite}.\n"
        "Types: deb-src\n"
        f"URIs: {_archive_uri()}\n"
        f"Suites: {suite}\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    if path.exists():
        return False
    try:
        path.write_text(content)
    except OSError as exc:
        raise InfraError(
            f"cannot add the deb-src entry {path}: {exc.strerror}",
            hint="run as root, or add a deb-src line for the suite yourself",
        ) from None
    progress.say("tree", f"added apt source entry {path}")
    return True


@dataclass(frozen=True)
class SourceFiles:
    version: str
    dsc: str
    files: tuple[tuple[str, int], ...]  # (file name, size)


def _print_uris(package: str, suite: str) -> SourceFiles | None:
    target = f"{package}/{suite}" if suite else package
    # In an empty directory: apt lists nothing for files already downloaded to the cwd.
    with tempfile.TemporaryDirectory(prefix="seriesgate-apt-") as empty:
        result = run(
            ["apt-get", "source", "--print-uris", target],
            cwd=empty,
            check=False,
            timeout=APT_TIMEOUT,
            what="apt-get source --print-uris",
        )
    files = []
    for match in re.finditer(r"^'[^']+' (\S+) (\d+) ", result.stdout, re.MULTILINE):
        files.append((match.group(1), int(match.group(2))))
    dsc = next((name for name, _ in files if name.endswith(".dsc")), None)
    if result.returncode != 0 or dsc is None:
        return None
    version = dsc[len(package) + 1 : -len(".dsc")]
    return SourceFiles(version, dsc, tuple(files))


def resolve_debian_source(package: str, suite: str, downloads: Path) -> SourceFiles:
    """Find the exact source version apt offers for PACKAGE/SUITE; update apt if needed."""
    added = ensure_deb_src(suite)
    found = None if added else _print_uris(package, suite)
    if found is None:
        with progress.step("tree", f"apt-get update (deb-src {suite})"):
            update = run(
                ["apt-get", "update", "-q"], timeout=APT_TIMEOUT, check=False, what="apt-get update"
            )
        output = update.stdout + update.stderr
        failed = [ln for ln in output.splitlines() if ln.startswith(("E:", "W: Failed", "Err:"))]
        if update.returncode != 0 or failed:
            entry = APT_SOURCES_DIR / f"seriesgate-deb-src-{suite}.sources"
            if added:  # never leave an entry behind that breaks every later apt-get update
                entry.unlink(missing_ok=True)
            if f" {suite} Release' does not have a Release file" in output:
                raise InputError(
                    f"Debian suite '{suite}' is not in the archive",
                    hint="check the base spec (e.g. debian:qemu/trixie)",
                )
            first = failed[0] if failed else f"exit {update.returncode}"
            raise InfraError(
                f"apt not reachable: {first[:200]}",
                hint="check the network/proxy to Debian's archive, or use --base dir:PATH",
            )
        found = _print_uris(package, suite)
    if found is None:
        raise InputError(
            f"no source package '{package}' in Debian suite '{suite or 'default'}'",
            hint="check the base spec (e.g. debian:qemu/trixie)",
        )
    return found


def _download(package: str, suite: str, files: SourceFiles, downloads: Path) -> None:
    missing = [
        name
        for name, size in files.files
        if not (downloads / name).is_file() or (downloads / name).stat().st_size != size
    ]
    if not missing:
        return
    target = f"{package}/{suite}" if suite else package
    with progress.step("tree", f"download Debian source {package} {files.version}"):
        try:
            run(
                ["apt-get", "source", "--download-only", target],
                cwd=downloads,
                timeout=APT_TIMEOUT,
                what="apt-get source",
            )
        except CommandError as exc:
            raise InfraError(
                f"apt not reachable: {exc.message}",
                hint="check the network/proxy to Debian's archive",
            ) from None


def debian_base(spec: BaseSpec) -> BaseTree:
    """Fetch (cached) and unpack (cached) a Debian source package."""
    suite = spec.suite or _host_codename()
    downloads = paths.cache_dir() / "downloads" / "debian-src"
    downloads.mkdir(parents=True, exist_ok=True)
    files = resolve_debian_source(spec.package, suite, downloads)
    _download(spec.package, suite, files, downloads)
    key = slug_key(f"debian-{spec.package}-{files.version}")
    source = paths.cache_dir() / "base" / key
    # The "complete" marker sits beside the tree, not in it: the base must be the package only.
    marker = source.with_name(source.name + ".unpacked")
    if not marker.exists():
        # dpkg-source also drops the orig tarball next to its target: use a scratch parent.
        scratch = source.with_name(f".unpack-{source.name}-{os.getpid()}")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            with progress.step("tree", f"unpack {files.dsc} (dpkg-source -x)"):
                run(
                    ["dpkg-source", "-x", str(downloads / files.dsc), str(scratch / "src")],
                    timeout=APT_TIMEOUT,
                    what="dpkg-source -x",
                )
            shutil.rmtree(source, ignore_errors=True)
            (scratch / "src").rename(source)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        marker.write_text(f"{files.dsc}\n")
    return BaseTree(spec=spec.spec, version=files.version, source_dir=source)


def slug_key(text: str) -> str:
    """A cache directory name for ``text`` (readable, and unique by a short hash)."""
    readable = re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-")[:60]
    if readable == text:
        return readable
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


# --- work trees ---------------------------------------------------------------------


def init_repo(repo: Path) -> None:
    """A fresh git repo tuned for a big tree that only seriesgate writes to."""
    repo.mkdir(parents=True, exist_ok=True)
    if (repo / ".git").exists():
        return
    git(repo, "init", "-q")
    for key, value in (
        ("user.name", "seriesgate"),
        ("user.email", "seriesgate@localhost"),
        ("gc.auto", "0"),
        ("core.autocrlf", "false"),
        ("commit.gpgsign", "false"),
        ("am.threeway", "false"),
        ("advice.detachedHead", "false"),
    ):
        git(repo, "config", key, value)
    exclude = repo / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a") as handle:
        handle.write("\n".join(["# seriesgate: build directories", *WORKTREE_EXCLUDES]) + "\n")


def snapshot(repo: Path, source: Path, message: str) -> str:
    """Commit the whole content of ``source`` (ignored files too) as a root commit."""
    env = {
        **BASE_AUTHOR,
        "GIT_INDEX_FILE": str(repo / ".git" / "seriesgate-snapshot-index"),
        "GIT_DIR": str(repo / ".git"),
        "GIT_WORK_TREE": str(source),
        "LC_ALL": "C",
    }
    run(["git", "add", "-A", "-f", "."], cwd=source, env=env, timeout=GIT_TIMEOUT, what="git add")
    tree = run(["git", "write-tree"], cwd=source, env=env, what="git write-tree").stdout.strip()
    commit = run(
        ["git", "commit-tree", tree, "-m", message], cwd=source, env=env, what="git commit-tree"
    ).stdout.strip()
    return commit


def work_tree_path(base: BaseTree, spec: BaseSpec) -> Path:
    """Where the cached git work tree for this base lives."""
    if spec.kind == "debian":
        key = base.source_dir.name
    else:
        key = slug_key(f"{spec.kind}-{spec.url or spec.path}")
    return paths.cache_dir() / "trees" / key


def tree_lock(repo: Path) -> contextlib.AbstractContextManager[None]:
    """The lock every writer of a cached work tree holds (apply; builds in place should too)."""
    return locked(repo.parent / f".{repo.name}.lock")


def work_tree_for(base: BaseTree, spec: BaseSpec) -> tuple[Path, str]:
    """The cached git work tree for ``base`` and its pristine base commit."""
    repo = work_tree_path(base, spec)
    init_repo(repo)
    if spec.kind == "git":
        with progress.step("tree", f"git fetch {spec.url} {spec.ref}"):
            try:
                git(repo, "fetch", "-q", "--no-tags", spec.url, spec.ref)
            except CommandError as exc:
                raise InputError(
                    f"cannot fetch {spec.ref} from {spec.url}: {exc.message}",
                    hint="check the URL and the ref",
                ) from None
        commit = git(repo, "rev-parse", "FETCH_HEAD^{commit}")
    elif spec.kind == "dir" and (base.source_dir / ".git").exists():
        git(repo, "fetch", "-q", "--no-tags", str(base.source_dir), "HEAD")
        commit = git(repo, "rev-parse", "FETCH_HEAD^{commit}")
        if git(base.source_dir, "status", "--porcelain", "--untracked-files=no"):
            progress.say("tree", f"{base.source_dir} has uncommitted changes; using its HEAD")
    else:
        known = git(repo, "rev-parse", "-q", "--verify", BASE_REF, check=False)
        if known and spec.kind == "debian":
            commit = known  # the unpacked source package never changes
        else:
            with progress.step("tree", f"commit pristine base ({base.source_dir.name})"):
                commit = snapshot(repo, base.source_dir, f"base: {base.spec} {base.version}")
    git(repo, "update-ref", BASE_REF, commit)
    return repo, commit


def obtain_base(spec_text: str) -> tuple[BaseTree, BaseSpec]:
    """Resolve a base spec to a pristine source (downloading/unpacking when needed)."""
    spec = parse_base_spec(spec_text)
    if spec.kind == "debian":
        return debian_base(spec), spec
    if spec.kind == "dir":
        assert spec.path is not None
        version = "dir"
        if (spec.path / ".git").exists():
            version = git(spec.path, "rev-parse", "HEAD")
        return BaseTree(spec=spec.spec, version=version, source_dir=spec.path), spec
    # git: the pristine source is the fetched commit inside the work tree.
    tree_dir = paths.cache_dir() / "trees" / slug_key(f"git-{spec.url}")
    return BaseTree(spec=spec.spec, version=spec.ref, source_dir=tree_dir), spec


def checkout_branch(repo: Path, branch: str, commit: str) -> None:
    """Start ``branch`` at ``commit``, dropping leftovers of an earlier run (not build dirs)."""
    if (repo / ".git" / "rebase-apply").exists():
        git(repo, "am", "--abort", check=False)
    git(repo, "checkout", "-q", "-f", "-B", branch, commit)
    git(repo, "clean", "-q", "-f", "-d")
