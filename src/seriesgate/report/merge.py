"""Merge partial summaries (parallel CI test jobs) into one, then re-derive the verdicts.

Every job of a scaled-out pipeline writes a summary.json for what it ran (e.g. one build and one
test group). The merged summary takes series/base/patches/builds/environment from the most
complete input, the union of test outcomes (a later duplicate of the same test and build wins),
stage times summed, and the first error; the verdicts are then computed again from the facts.
"""

from __future__ import annotations

import copy
from typing import Any

from seriesgate.errors import InputError
from seriesgate.report.summary import derive


def merge_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary from several runs of the same series (see the module docstring)."""
    if not summaries:
        raise InputError("nothing to merge: no summary given")
    ids = {s["series"]["message_id"] for s in summaries}
    if len(ids) > 1:
        raise InputError(f"summaries of different series cannot be merged: {sorted(ids)}")
    best = max(summaries, key=lambda s: (len(s["builds"]), len(s["patches"])))
    merged = copy.deepcopy(best)
    tests: dict[tuple[str, str], dict[str, Any]] = {}
    for s in summaries:
        for t in s["tests"]:
            tests[(t["key"], t["build"])] = t
    merged["tests"] = list(tests.values())
    merged["functional_ran"] = any(s.get("functional_ran") for s in summaries)
    builds: dict[str, dict[str, Any]] = {}
    for s in summaries:
        for b in s["builds"]:
            builds.setdefault(b["name"], b)
    merged["builds"] = list(builds.values())
    times: dict[str, float] = {}
    for s in summaries:
        for k, t in s["stage_times"].items():
            times[k] = round(times.get(k, 0.0) + t, 1)
    merged["stage_times"] = times
    merged["error"] = next((s["error"] for s in summaries if s.get("error")), None)
    merged["bench"] = next((s["bench"] for s in summaries if s.get("bench")), [])
    facts: dict[str, Any] = {}
    notes: list[str] = []
    for s in summaries:
        facts.update(s["environment"].get("facts", {}))
        notes += s["environment"].get("notes", [])
    merged["environment"]["facts"] = facts
    merged["environment"]["notes"] = list(dict.fromkeys(notes))
    return derive(merged)
