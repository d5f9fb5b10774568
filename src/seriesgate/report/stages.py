"""Typed stage results back from the JSON files the stages write, for reports across CI jobs.

A scaled-out pipeline runs ``seriesgate build --out DIR`` in one job and ``seriesgate
functional --results-dir DIR`` in parallel jobs; the report job rebuilds the typed results
from their files and makes one summary:

- ``DIR/series/series.json`` (or ``DIR/series.json``): the SeriesSet (series stage)
- ``DIR/apply.json``: base, commits and one ApplyResult per patch (tree stage)
- ``DIR/build.json``: BuildResult per build name, checkpatch, firmware dirs (build stage)
- functional dirs: ``jobs.json`` + Avocado job results (functional stage's ``collect``)
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from seriesgate.build.model import BuildResult, BuildSet, CheckpatchResult, PatchBuild
from seriesgate.errors import InputError
from seriesgate.functional.model import FunctionalResults
from seriesgate.series.model import SeriesSet
from seriesgate.tree.model import AppliedTree, ApplyResult, BaseTree


def from_jsonable(tp: Any, data: Any) -> Any:
    """Rebuild a value of type ``tp`` (dataclasses, tuples, Paths, enums, optionals)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if data is None else from_jsonable(members[0], data)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        kwargs = {
            f.name: from_jsonable(hints[f.name], data[f.name])
            for f in dataclasses.fields(tp)
            if f.init and f.name in data
        }
        return tp(**kwargs)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_jsonable(args[0], v) for v in data)
        return tuple(from_jsonable(a, v) for a, v in zip(args, data, strict=True))
    if origin is list:
        return [from_jsonable(typing.get_args(tp)[0], v) for v in data]
    if origin is dict or tp is dict:
        return dict(data)
    if tp is Path:
        return Path(data)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(data)
    return data


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"no {path.name} in {path.parent}", hint="give the stage's --out dir"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None


def load_series_set(stage_dir: Path) -> SeriesSet:
    """``series.json`` of `seriesgate build` (DIR/series/) or `seriesgate apply` (DIR/)."""
    path = stage_dir / "series.json"
    data = _read(path if path.exists() else stage_dir / "series" / "series.json")
    try:
        series_set: SeriesSet = from_jsonable(SeriesSet, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"{stage_dir}/series/series.json does not describe a series: {exc}"
        ) from None
    return series_set


def load_tree(stage_dir: Path) -> AppliedTree | None:
    path = stage_dir / "apply.json"
    if not path.exists():
        return None
    data = _read(path)
    try:
        commits = data["commits"]
        return AppliedTree(
            base=from_jsonable(BaseTree, data["base"]),
            repo=Path(data["repo"]),
            base_commit=commits["base"],
            baseline_commit=commits["baseline"],
            series_commit=commits["series"],
            fixup_commit=commits["patched"],
            results=tuple(from_jsonable(ApplyResult, p) for p in data["patches"]),
            repair_commit=commits.get("repaired"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path} is not an apply.json: {exc}") from None


def load_builds(stage_dir: Path, tree: AppliedTree | None) -> BuildSet | None:
    path = stage_dir / "build.json"
    if not path.exists():
        return None
    data = _read(path)
    try:
        results = {
            name: from_jsonable(BuildResult, b) for name, b in data.get("builds", {}).items()
        }
        if "baseline" not in results or "patched" not in results:
            return None  # interrupted before both builds finished: nothing to compare
        each = []
        for r in tree.series_results() if tree else ():
            b = results.get(f"patch-{r.index:02d}")
            if b is not None:
                each.append(
                    PatchBuild(r.index, r.subject, b.commit, b.ok, b.errors, b.log, b.binary)
                )
        return BuildSet(
            baseline=results["baseline"],
            patched=results["patched"],
            posted=results.get("posted"),
            each_patch=tuple(each),
            checkpatch=tuple(from_jsonable(CheckpatchResult, c) for c in data["checkpatch"]),
            firmware_dirs=tuple(Path(p) for p in data.get("firmware_dirs", ())),
            repaired=results.get("repaired"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path} is not a build.json: {exc}") from None


def load_functional(dirs: Sequence[Path]) -> FunctionalResults:
    """Outcomes of several ``seriesgate functional --results-dir`` directories, together."""
    from seriesgate.functional.runner import collect

    outcomes = []
    jobs: list[Path] = []
    for d in dirs:
        got, job_dirs = collect(d)
        outcomes += got
        jobs += job_dirs
    return FunctionalResults(outcomes=tuple(outcomes), job_dirs=tuple(jobs))
