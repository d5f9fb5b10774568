"""The verdict in one sentence, computed from the summary (pure logic).

The cause that decides the gate comes first, then counts::

    FAIL: the patched destination crashes on every incoming migration (SIGSEGV in
    virtio_net_load_setup; first bad patch 10/10); 4 tests regressed, claims: 2 not shown,
    1 broken on both builds, 1 regressed.

Causes, in the gate's own order (:func:`seriesgate.report.verdict.gate_verdict`): a series
patch that does not apply, a patched build that fails, a crash of the patched QEMU (the
largest crash group; see :mod:`seriesgate.report.crashes`), tests that regressed. A run that
could not decide names its first reason. Counts: regressed and undecided tests, then the
claims by verdict (most first). When the run has a ``repaired`` build (our repair of the
series' defects, never the author's series), a trailing clause gives its claims; the gate's
word stays the patched build's.
"""

from __future__ import annotations

from typing import Any

from seriesgate.report.crashes import describe

# claim verdicts as a sentence says them, and their order among equal counts
CLAIM_WORDS = {
    "confirmed": "confirmed",
    "not-shown": "not shown",
    "holds-on-both": "hold on both builds",
    "fixed-on-patched": "fixed on patched",
    "broken-on-both": "broken on both builds",
    "regressed": "regressed",
    "undecided": "undecided",
    "not-run": "not run",
}
_NOT_RUN = ("SKIP", "CANCEL")


def plural(n: int, word: str) -> str:
    """A count and its noun.

    >>> plural(1, "test"), plural(4, "test")
    ('1 test', '4 tests')
    """
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def claim_counts(claims: list[dict[str, Any]]) -> str:
    """``claims: 2 not shown, 1 broken on both builds`` ("" without claims)."""
    counts: dict[str, int] = {}
    for c in claims:
        counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    order = list(CLAIM_WORDS)
    ranked = sorted(
        counts.items(),
        key=lambda kv: (-kv[1], order.index(kv[0]) if kv[0] in order else len(order)),
    )
    if not ranked:
        return ""
    return "claims: " + ", ".join(f"{n} {CLAIM_WORDS.get(v, v)}" for v, n in ranked)


def _patch_label(p: dict[str, Any]) -> str:
    if p["role"] == "series":
        return f"patch {p['index']}/{p['total']}"
    if p["role"] == "fixup":
        return f"local fixup {p['subject']!r}"
    return f"prerequisite {p['series']} {p['index']}/{p['total']}"


def _crash_cause(summary: dict[str, Any], group: dict[str, Any], build: str) -> str:
    crashed = {t["test"] for t in group["tests"] if t["build"] == build}
    ran = [t for t in summary["tests"] if t["build"] == build and t["status"] not in _NOT_RUN]
    migrations = {t["name"] for t in ran if "migration" in t.get("tags", [])}
    vms = group.get("vms") or []
    who = vms[0] if len(vms) == 1 else "QEMU"
    if who == "destination" and migrations and migrations <= crashed:
        where = "on every incoming migration"
    elif migrations and crashed <= migrations:
        where = f"in {len(crashed)} of {plural(len(migrations), 'migration test')}"
    else:
        where = f"in {len(crashed)} of {plural(len({t['name'] for t in ran}), 'test')}"
    detail = describe(group)
    if group.get("first_bad_patch"):
        detail += f"; first bad patch {group['first_bad_patch']}"
    return f"the {build} {who} crashes {where} ({detail})"


def _gating_groups(summary: dict[str, Any], build: str) -> list[dict[str, Any]]:
    """Crash groups of ``build`` that are not crashes of the baseline too."""
    baseline_crashed = {c["test"] for c in summary["crashes"] if c["build"] == "baseline"}
    return [
        g
        for g in summary.get("crash_groups", [])
        if any(t["build"] == build and t["test"] not in baseline_crashed for t in g["tests"])
    ]


def _cause(summary: dict[str, Any]) -> list[str]:
    overall = summary["overall"]
    word = overall["verdict"]
    if word == "fail":
        conflicts = [
            p
            for p in summary["patches"]
            if p["role"] == "series" and p["apply_verdict"] == "conflict"
        ]
        if conflicts:
            p = conflicts[0]
            files = sorted({h["file"] for h in p.get("failing_hunks", [])})
            where = f" (conflict in {', '.join(files)})" if files else ""
            more = f" and {len(conflicts) - 1} more" if len(conflicts) > 1 else ""
            return [f"{_patch_label(p)}{more} does not apply{where}"]
        builds = {b["name"]: b for b in summary["builds"]}
        if "patched" in builds and not builds["patched"]["ok"]:
            errors = builds["patched"].get("errors") or []
            where = f" ({errors[0]['file']}:{errors[0]['line']})" if errors else ""
            return [f"the patched build fails{where}"]
        groups = _gating_groups(summary, "patched")
        if groups:
            out = [_crash_cause(summary, groups[0], "patched")]
            if len(groups) > 1:
                out.append(f"{plural(len(groups) - 1, 'other crash signature')} on patched")
            return out
        return []  # regressions: the counts say it
    if word == "undecided":
        # per-test reasons ("undecided: A.b") are what the counts say; name the others
        why = [w for w in overall.get("undecided") or [] if not w.startswith("undecided: ")]
        return why[:2]
    return []


def _counts(summary: dict[str, Any]) -> str:
    verdicts = summary["test_verdicts"]
    parts = []
    regressed = sum(1 for t in verdicts if t["verdict"] == "regressed")
    if regressed:
        parts.append(f"{plural(regressed, 'test')} regressed")
    undecided = sum(1 for t in verdicts if t["blocking"])
    if undecided:
        parts.append(f"{plural(undecided, 'test')} undecided")
    if summary["overall"]["verdict"] == "pass" and verdicts:
        ran = sum(1 for t in verdicts if t["verdict"] != "not-run")
        parts.append(f"no regression in {plural(ran, 'test')} on both builds")
    claims = claim_counts(summary.get("claims", []))
    if claims:
        parts.append(claims)
    return ", ".join(parts)


def _repaired_clause(summary: dict[str, Any]) -> str:
    if not summary.get("claims_repaired") and not any(
        t["build"] == "repaired" for t in summary["tests"]
    ):
        return ""
    patched_crash = _gating_groups(summary, "patched")
    repaired_crash = _gating_groups(summary, "repaired")
    fixed = [g for g in patched_crash if g not in repaired_crash]
    what = "with our repair of the crash" if fixed and not repaired_crash else "with our repair"
    parts = []
    if repaired_crash:
        parts.append(_crash_cause(summary, repaired_crash[0], "repaired"))
    regressed = sum(1 for t in summary["test_verdicts"] if t.get("verdict_repaired") == "regressed")
    if regressed:
        parts.append(f"{plural(regressed, 'test')} regressed")
    claims = claim_counts(summary.get("claims_repaired", []))
    if claims:
        parts.append(claims)
    return f"; {what}: " + (", ".join(parts) or "no claim tested")


def headline(summary: dict[str, Any]) -> str:
    """The one-sentence verdict of a derived summary (see the module docstring)."""
    word = summary["overall"]["verdict"].upper()
    cause = "; ".join(_cause(summary))
    counts = _counts(summary)
    body = "; ".join(p for p in (cause, counts) if p)
    if not body and summary.get("error"):
        body = str(summary["error"])
    text = f"{word}: {body}" if body else word
    text += _repaired_clause(summary)
    return text.rstrip(".") + "."
