"""Baseline functional results kept between runs, keyed by everything that can change them.

The baseline (base + prerequisites) is the same for every series on that base, so a gate of
five series on one base need not measure it five times (as NIPA does for netdev). A group's
baseline results are stored under ``cache_dir()/baseline-results/<key>/`` with a copy of the
Avocado job directories; a later run whose key matches reuses them and runs the variants only.

The key (:func:`baseline_key`) hashes: the baseline binary's content, the functional tests and
the test support code (``tests/functional``, ``seriesgate.functional``, the guest-side test
environment code), the test VM's assets (L1 kernel, initramfs images, their manifest), the
seriesgate version, and what the group runs (its test references and tag filter). Change any
of them and the key changes, so the baseline is measured again.

Never reused (:func:`unreliable`): the result of a test that was flaky, or that has no
result (ERROR without a crash, INTERRUPTED: the machinery may be at fault). Such a test is
stored as ``remeasure``: a run that reuses the baseline measures it again, alone, and takes
every other test from the cache (a baseline with one flaky test out of five still saves the
other four).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seriesgate import __version__
from seriesgate.functional import guestpool
from seriesgate.functional.model import Status, TestOutcome
from seriesgate.paths import PROJECT_ROOT, cache_dir
from seriesgate.testenv.model import TestEnv

FORMAT = 1
# Code whose change can change a test's result, besides the binary and the VM assets.
TEST_CODE = (
    PROJECT_ROOT / "tests" / "functional",
    PROJECT_ROOT / "src" / "seriesgate" / "functional",
    PROJECT_ROOT / "src" / "seriesgate" / "testenv",
    PROJECT_ROOT / "avocado.cfg",
)
# Host orchestration: which tests run where and how the test VM is started, not how the
# tests behave (the test VM's accelerator is part of the assets' identity instead).
NOT_TEST_CODE = frozenset(
    {"runner.py", "bisect.py", "cli.py", "baseline_cache.py", "retry.py", "vm.py", "accel.py"}
)


def file_digest(path: Path) -> str:
    """sha256 of a file's content (a QEMU binary: ~0.2 s)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(paths: Iterable[Path], skip: frozenset[str] = NOT_TEST_CODE) -> str:
    """sha256 over the names and contents of the files under ``paths`` (``skip``: names)."""
    digest = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for f in files:
            if not f.is_file() or f.name in skip or "__pycache__" in f.parts:
                continue
            rel = f.relative_to(PROJECT_ROOT) if f.is_relative_to(PROJECT_ROOT) else f
            digest.update(str(rel).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def key_components(
    *,
    binary_digest: str,
    test_code_digest: str,
    assets: Mapping[str, Any],
    references: Sequence[str],
    tags: Sequence[str],
    version: str = __version__,
    shared_guests: bool | None = None,
) -> dict[str, Any]:
    """What the key is made of, kept beside the results so a miss can be explained.

    ``shared_guests``: whether tests hand guests on (default: ``$SERIESGATE_SHARE_GUESTS``
    is not "0"); a source guest booted for the test or left by the one before can change
    what a test measures, so results of one kind are not reused for the other."""
    if shared_guests is None:
        shared_guests = guestpool.sharing_enabled()
    return {
        "shared_guests": shared_guests,
        "format": FORMAT,
        "seriesgate_version": version,
        "baseline_binary_sha256": binary_digest,
        "test_code_sha256": test_code_digest,
        "testenv_assets": dict(assets),
        "tests": sorted(references),
        "tags": sorted(tags),
    }


def key_of(components: Mapping[str, Any]) -> str:
    """The cache key: a hash of the components (order-independent JSON).

    >>> c = key_components(binary_digest="b", test_code_digest="t", assets={"kver": "6.12"},
    ...                    references=["x"], tags=[], version="0.1.0")
    >>> key_of(c) == key_of(dict(reversed(list(c.items()))))
    True
    >>> key_of(c) == key_of({**c, "baseline_binary_sha256": "other"})
    False
    """
    blob = json.dumps(components, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def testenv_identity(env: TestEnv) -> dict[str, Any]:
    """The test environment's part of a key: the asset manifest, the content hash of the L1
    kernel and both initramfs images, the mode, the L1 accelerator, the L1 QEMU's version and
    vCPU count."""
    ident: dict[str, Any] = {"manifest": json.loads(json.dumps(env.manifest, default=str))}
    for f in (env.l1_kernel, env.l1_initrd):
        if f is not None and f.is_file():
            ident[f.name] = file_digest(f)
    ident["l2_initrd"] = file_digest(env.l2_guest.initrd)
    ident["mode"] = str(env.mode)
    ident["l1_accel"] = env.l1_accel
    # The L1 QEMU (7.2 or 10.0, $SERIESGATE_L1_QEMU) can change results: part of the key.
    ident["l1_qemu"] = env.l1_qemu
    # So can the L1's vCPU count ($SERIESGATE_L1_SMP); 0 (host mode, or an environment from
    # before the field) leaves the key as it was.
    if env.l1_smp:
        ident["l1_smp"] = env.l1_smp
    # And an overridden -cpu model or extra L1 kernel parameters (none set: key as before).
    if env.l1_overrides:
        ident["l1_overrides"] = dict(env.l1_overrides)
    return ident


def unreliable(outcomes: Sequence[TestOutcome]) -> dict[str, str]:
    """The tests whose baseline result must not be reused, and why: flaky ones, and those
    without a result (ERROR without a crash, INTERRUPTED: the machinery may be at fault).

    >>> from seriesgate.functional.model import Direction
    >>> def o(status, flaky=False):
    ...     return TestOutcome("f.py:T.t", "T.t", "baseline", status, 1.0, (), None,
    ...                        Direction.HOLDS_ON_BOTH, flaky=flaky)
    >>> unreliable([o(Status.PASS), o(Status.FAIL)])
    {}
    >>> unreliable([o(Status.PASS, flaky=True)])
    {'f.py:T.t': 'flaky'}
    >>> unreliable([o(Status.INTERRUPTED)])
    {'f.py:T.t': 'no result (INTERRUPTED)'}
    """
    found = {}
    for o in outcomes:
        if o.flaky:
            found[o.test_id] = "flaky"
        elif o.status in (Status.INTERRUPTED, Status.ERROR) and o.crash is None:
            found[o.test_id] = f"no result ({o.status.value})"
    return found


@dataclass(frozen=True)
class CachedBaseline:
    """A stored baseline: its job entry (as in ``jobs.json``) and where it came from."""

    key: str
    directory: Path
    # {"job": DIR, "retry_jobs": [DIR, ...], "remeasure": [test id, ...]}, DIRs in ``directory``
    entry: dict[str, Any]
    from_run: str
    date: str

    def fact(self) -> dict[str, str]:
        """What the report says: ``baseline: reused from <run> (<date>)``, with a link."""
        return {
            "from_run": self.from_run,
            "date": self.date,
            "results": str(self.directory),
            "key": self.key,
        }


def cache_root() -> Path:
    return cache_dir() / "baseline-results"


def load(key: str, root: Path | None = None) -> CachedBaseline | None:
    """The stored baseline for ``key``, or None (missing or incomplete)."""
    directory = (root or cache_root()) / key
    try:
        record = json.loads((directory / "record.json").read_text())
    except (OSError, ValueError):
        return None
    job = directory / record["job"]
    entry = {
        "job": str(job),
        "retry_jobs": [str(directory / r) for r in record["retry_jobs"]],
        "remeasure": list(record.get("remeasure", {})),
    }
    if not (job / "results.json").is_file():
        return None
    return CachedBaseline(key, directory, entry, record["from_run"], record["date"])


def store(
    key: str,
    components: Mapping[str, Any],
    entry: Mapping[str, Any],
    *,
    from_run: str,
    remeasure: Mapping[str, str] | None = None,
    root: Path | None = None,
) -> CachedBaseline:
    """Copy a baseline's job directories into the cache under ``key`` (atomically);
    ``remeasure``: tests (id -> why) whose result a reuse must measure again."""
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    tmp = root / f".{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    job = Path(entry["job"])
    shutil.copytree(job, tmp / "job" / job.name, symlinks=True)
    retries = []
    for n, r in enumerate(x for x in entry.get("retry_jobs", []) if x):
        shutil.copytree(Path(r), tmp / f"retry-{n}" / Path(r).name, symlinks=True)
        retries.append(f"retry-{n}/{Path(r).name}")
    record = {
        "key": key,
        "components": dict(components),
        "job": f"job/{job.name}",
        "retry_jobs": retries,
        "remeasure": dict(remeasure or {}),
        "from_run": from_run,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (tmp / "record.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.replace(final)
    found = load(key, root)
    assert found is not None
    return found
