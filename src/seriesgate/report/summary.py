"""summary.json: every stage's typed result flattened into one JSON document.

Every report (Markdown, HTML, JUnit, the list reply) renders from this dict alone, so
``seriesgate report --from results/<run>/summary.json`` re-renders a finished run without the
trees, builds or test VM. Stages that did not run are ``null`` (or empty lists).

Top-level keys: ``schema``, ``seriesgate_version``, ``generated``, ``series``, ``base``,
``patches``, ``builds``, ``functional_ran``, ``tests``, ``test_verdicts``, ``claims``, ``crashes``,
``flaky``, ``findings``, ``overall``, ``stage_times``, ``environment``, ``bench``, ``error``
(and ``bisect`` when the pipeline bisected a regression), ``crash_groups`` (crashes by
signature, :mod:`seriesgate.report.crashes`) and ``headline`` (the verdict in one sentence,
:mod:`seriesgate.report.headline`; also ``overall["headline"]``).

A migration test's run carries ``timeline`` (the destination's guest-RAM maps against STOP,
RESUME and device start, :mod:`seriesgate.report.migration_timeline`).

When the run has a ``repaired`` build (series + fixups + our repairs of the series' defects),
its runs are judged against baseline like patched: ``test_verdicts[i]["verdict_repaired"]``
and ``claims_repaired``; ``overall`` stays decided by patched alone.
"""

from __future__ import annotations

import datetime as dt
import json
import mailbox
import os
import platform
import re
import shlex
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass, replace
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

from seriesgate import __version__
from seriesgate.build.model import BuildResult, BuildSet
from seriesgate.errors import InputError
from seriesgate.functional.model import Direction, FunctionalResults, TestOutcome
from seriesgate.report import migration_timeline
from seriesgate.report import verdict as v
from seriesgate.report.crashes import group_crashes
from seriesgate.report.headline import headline
from seriesgate.series.model import Series, SeriesSet
from seriesgate.testenv.model import TestEnv
from seriesgate.tree.model import AppliedTree, Role

SCHEMA_VERSION = 1
STOCK_VDPA_SIM_QUEUE_MAX = 256  # VDPASIM_QUEUE_MAX in the kernel's vdpa_sim.h
EXCERPT_LINES = 40
EXCERPT_CHARS = 6000
REPAIRED = "repaired"  # the build of series + fixups + our repairs (patches/<series>/repairs)
REPAIR_ROLE = "repair"  # a patch of ours that repairs a defect of the series (not the author's)


def build_summary(
    *,
    series_set: SeriesSet,
    tree: AppliedTree | None = None,
    builds: BuildSet | None = None,
    env: TestEnv | None = None,
    functional: FunctionalResults | None = None,
    stage_times: dict[str, float],
    error: str | None = None,
    bench: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Flatten the stage results of one run into the summary dict (JSON-serialisable).

    ``None`` for a stage means it did not run (e.g. a run that stopped at a conflict has no
    builds). ``error`` is the one-line message of the error that stopped the run, if any.
    ``bench`` is the downtime benchmark's list of runs, when one was measured.
    """
    summary: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "seriesgate_version": __version__,
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "series": _series(series_set),
        "base": _base(series_set, tree),
        "patches": _patches(series_set, tree, builds),
        "builds": _builds(builds),
        "functional_ran": functional is not None,
        "tests": [_test(o) for o in functional.outcomes] if functional else [],
        "stage_times": {k: round(float(t), 1) for k, t in stage_times.items()},
        "environment": _environment(env, builds, functional),
        "bench": bench or [],
        "error": error,
    }
    return derive(summary)


def derive(summary: dict[str, Any]) -> dict[str, Any]:
    """(Re)compute the verdicts from the summary's facts: test_verdicts, claims, crashes,
    flaky, findings and the overall verdict. Used after building and after merging."""
    tests = summary["tests"]
    patches = summary["patches"]
    builds = {b["name"]: b for b in summary["builds"]}
    test_verdicts = _test_verdicts(tests)
    # Our repair of the series' defects (issue 15): judged against baseline like patched,
    # reported beside it, never deciding the gate.
    repaired = _test_verdicts(tests, REPAIRED) if any(t["build"] == REPAIRED for t in tests) else []
    gate = v.gate_verdict(
        v.GateInputs(
            series_conflicts=tuple(
                _row_label(p)
                for p in patches
                if p["apply_verdict"] == "conflict" and p["role"] == "series"
            ),
            other_conflicts=tuple(
                _row_label(p)
                for p in patches
                if p["apply_verdict"] == "conflict" and p["role"] not in ("series", REPAIR_ROLE)
            ),
            patched_build_ok=builds["patched"]["ok"] if "patched" in builds else None,
            baseline_build_ok=builds["baseline"]["ok"] if "baseline" in builds else None,
            functional_ran=bool(summary.get("functional_ran")),
            tests=tuple(test_verdicts),
            error=summary.get("error"),
        )
    )
    summary["test_verdicts"] = [_verdict_dict(t) for t in test_verdicts]
    summary["claims"] = _claims(test_verdicts)
    summary.pop("claims_repaired", None)
    if repaired:
        by_name = {t.name: t for t in repaired}
        for tv in summary["test_verdicts"]:
            r = by_name.get(tv["name"])
            if r is not None:
                tv["repaired"] = r.patched.value
                tv["verdict_repaired"] = r.verdict.value
                tv["note_repaired"] = r.note.replace("patched", REPAIRED)
        summary["claims_repaired"] = _claims(repaired, slot=REPAIRED)
    summary["crashes"] = [
        {"build": t["build"], "test": t["name"], **t["crash"]} for t in tests if t["crash"]
    ]
    summary["crash_groups"] = group_crashes(summary)
    summary["flaky"] = [
        {"build": t["build"], "test": t["name"], "attempts": t["attempts"]}
        for t in tests
        if t["flaky"]
    ]
    summary["findings"] = _findings(test_verdicts, builds, patches)
    summary["overall"] = {
        "verdict": gate.result.value,
        "exit_code": gate.exit_code,
        "headline": gate.headline(),
        "reasons": list(gate.reasons),
        "undecided": list(gate.undecided),
    }
    summary["headline"] = summary["overall"]["headline"] = headline(summary)
    return summary


def write_summary(summary: dict[str, Any], path: Path) -> Path:
    """Write summary.json (pretty, stable key order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def load_summary(path: Path) -> dict[str, Any]:
    """Read a summary.json written by :func:`build_summary` (for re-rendering reports)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no summary at {path}", hint="give results/<run>/summary.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read summary {path}: {exc}") from None
    if not isinstance(data, dict) or "overall" not in data or "series" not in data:
        raise InputError(f"{path} is not a seriesgate summary.json (no series/overall)")
    if data.get("schema", 0) > SCHEMA_VERSION:
        raise InputError(
            f"{path} has summary schema {data.get('schema')}, newer than this seriesgate "
            f"({SCHEMA_VERSION})",
            hint="update seriesgate",
        )
    return data


# --- series, base, patches ---------------------------------------------------------------


def _series_dict(series: Series) -> dict[str, Any]:
    return {
        "name": series.name,
        "message_id": series.message_id,
        "version": series.version,
        "subject": series.subject,
        **_cover_headers(series),
        "author": series.author,
        "patch_count": len(series.patches),
        "source": series.source,
        "based_on": list(series.based_on),
        "cover_testing": cover_testing_sentences(series.cover),
    }


_TESTING_WORDS = re.compile(r"\b(tested|benchmark\w*|mlx5|measured)\b", re.I)


def cover_testing_sentences(cover: str, limit: int = 4) -> list[str]:
    """Sentences of a cover letter that say how the series was tested or measured."""
    text = " ".join(cover.replace("\r", "").split())
    sentences = re.split(r"(?<=[.!?])\s+", text)
    return [s for s in sentences if _TESTING_WORDS.search(s) and len(s) < 400][:limit]


def _series(series_set: SeriesSet) -> dict[str, Any]:
    data = _series_dict(series_set.target)
    data["prerequisites"] = [_series_dict(s) for s in series_set.prerequisites]
    data["manifest"] = str(series_set.manifest) if series_set.manifest else None
    data["fixups"] = [p.name for p in series_set.fixups]
    return data


def _cover_headers(series: Series) -> dict[str, str | None]:
    """The cover letter's Subject (with its [PATCH ...] prefix) and Date as posted."""
    mbox_path = series.source.removeprefix("mbox:") if series.source.startswith("mbox:") else None
    for candidate in (mbox_path, str(series.mbox)):
        if not candidate or not Path(candidate).is_file():
            continue
        try:
            for msg in mailbox.mbox(candidate, create=False):
                if (msg.get("Message-Id") or "").strip().strip("<>") == series.message_id:
                    raw = str(make_header(decode_header(msg.get("Subject", ""))))
                    date = msg.get("Date")
                    return {
                        "cover_subject": " ".join(raw.split()),
                        "cover_date": " ".join(str(date).split()) if date else None,
                    }
        except (OSError, mailbox.Error, UnicodeError, LookupError):
            continue
    # not found: rebuild the usual prefix (an RFC marker, if any, cannot be known)
    version = f" v{series.version}" if series.version > 1 else ""
    total = len(series.patches)
    subject = f"[PATCH{version} {0:0{len(str(total))}d}/{total}] {series.subject}"
    return {"cover_subject": subject, "cover_date": None}


def _base(series_set: SeriesSet, tree: AppliedTree | None) -> dict[str, Any]:
    if tree is None:
        return {"spec": series_set.base, "version": None, "commits": {}}
    return {
        "spec": tree.base.spec,
        "version": tree.base.version,
        "commits": {
            "base": tree.base_commit,
            "baseline": tree.baseline_commit,
            "series": tree.series_commit,
            "patched": tree.fixup_commit,
        },
    }


def _row_label(p: dict[str, Any]) -> str:
    """ "03/10 subject" (prerequisites: "<series> 03/13 subject")."""
    which = (
        p["role"] if p["role"] in ("fixup", REPAIR_ROLE) else f"{p['index']:02d}/{p['total']:02d}"
    )
    prefix = f"{p['series']} " if p["role"] == "prerequisite" else ""
    return f"{prefix}{which} {p['subject']}"


def _patches(
    series_set: SeriesSet, tree: AppliedTree | None, builds: BuildSet | None
) -> list[dict[str, Any]]:
    each = {(b.index, b.subject): b for b in (builds.each_patch if builds else ())}
    checks = {(c.index, c.subject): c for c in (builds.checkpatch if builds else ())}
    rows: list[dict[str, Any]] = []
    if tree is not None:
        for r in tree.results:
            row: dict[str, Any] = {
                "role": r.role.value,
                "series": r.series,
                "index": r.index,
                "total": r.total,
                "subject": r.subject,
                "message_id": r.message_id,
                "apply": r.label,
                "apply_verdict": r.verdict.value,
                "fuzz": r.fuzz,
                "offsets": list(r.offsets),
                "files": list(r.files),
                "failing_hunks": [asdict(h) for h in r.failing_hunks],
                "commit": r.commit,
                "evidence": r.evidence,
            }
            rows.append(row)
    else:
        for s in series_set.all_series:
            role = Role.SERIES if s is series_set.target else Role.PREREQUISITE
            for p in s.patches:
                rows.append(
                    {
                        "role": role.value,
                        "series": s.name,
                        "index": p.index,
                        "total": p.total,
                        "subject": p.subject,
                        "message_id": p.message_id,
                        "apply": None,
                        "apply_verdict": None,
                        "fuzz": 0,
                        "offsets": [],
                        "files": list(p.files),
                        "failing_hunks": [],
                        "commit": None,
                        "evidence": "",
                    }
                )
    for row in rows:
        key = (row["index"], row["subject"])
        series_row = row["role"] == Role.SERIES.value
        build = each.get(key) if series_row else None
        check = checks.get(key) if series_row else None
        row["builds"] = build.builds if build else None
        row["build_errors"] = [asdict(e) for e in build.errors] if build else []
        row["build_log"] = str(build.log) if build and build.log else None
        row["checkpatch"] = (
            {"errors": check.errors, "warnings": check.warnings, "messages": list(check.messages)}
            if check
            else None
        )
    return rows


# --- builds --------------------------------------------------------------------------------


def _build_dict(b: BuildResult) -> dict[str, Any]:
    return {
        "name": b.name,
        "commit": b.commit,
        "ok": b.ok,
        "time": round(b.wall_time, 1),
        "compile_steps": b.compile_steps,
        "configure_line": shlex.join(b.configure_line),
        "binary": str(b.binary) if b.binary else None,
        "log": str(b.log),
        "errors": [asdict(e) for e in b.errors],
        "log_excerpt": "" if b.ok else _tail(b.log),
    }


def _builds(builds: BuildSet | None) -> list[dict[str, Any]]:
    if builds is None:
        return []
    variants = (builds.baseline, builds.patched, getattr(builds, REPAIRED, None), builds.posted)
    return [_build_dict(b) for b in variants if b is not None]


# --- tests, verdicts, claims ---------------------------------------------------------------

_AVOCADO_SERIAL = re.compile(r"^\d+-")


def _test(o: TestOutcome) -> dict[str, Any]:
    crash = None
    if o.crash is not None:
        crash = {
            "binary": o.crash.binary,
            "signal": o.crash.signal,
            "frames": list(o.crash.frames),
            "log": str(o.crash.log) if o.crash.log else None,
            "log_excerpt": _tail(o.crash.log) if o.crash.log else "",
        }
    passed = o.status.value in ("PASS", "WARN")
    extra: dict[str, Any] = {}
    if "migration" in o.tags:
        extra["timeline"] = migration_timeline.extract(o.logdir)
    retry_note = getattr(o, "retry_note", None)  # the runner's retry decision (issue 15)
    if retry_note:
        extra["retry_note"] = str(retry_note)
    return {
        "id": o.test_id,
        "key": _AVOCADO_SERIAL.sub("", o.test_id),
        "name": o.name,
        "file": o.test_id.split(":", 1)[0] if ":" in o.test_id else "",
        "build": o.build,
        "status": o.status.value,
        "time": round(o.time, 2),
        "tags": list(o.tags),
        "claim": o.claim,
        "direction": o.direction.value,
        "fail_reason": o.fail_reason,
        "attempts": o.attempts,
        "flaky": o.flaky,
        "measurements": _jsonable(o.measurements),
        "crash": crash,
        "logdir": str(o.logdir) if o.logdir else None,
        "log_excerpt": "" if passed or o.logdir is None else _tail(o.logdir / "debug.log"),
        **extra,
    }


def _test_verdicts(tests: list[dict[str, Any]], slot: str = "patched") -> list[v.TestVerdict]:
    """Pair each test's baseline and ``slot`` runs (patched, or repaired judged in the
    patched slot) and judge the pair."""
    pairs: dict[str, dict[str, dict[str, Any]]] = {}
    for t in tests:
        if t["build"] in ("baseline", slot):
            pairs.setdefault(t["key"], {})[t["build"]] = t
    verdicts = []
    for runs in pairs.values():
        any_run = runs.get(slot) or runs.get("baseline") or next(iter(runs.values()))
        views: dict[str, v.RunView] = {}
        for build, view in (("baseline", "baseline"), (slot, "patched")):
            run = runs.get(build)
            views[view] = (
                v.RunView(run["status"], crashed=run["crash"] is not None, flaky=run["flaky"])
                if run
                else v.RunView(None)
            )
        verdicts.append(
            v.judge_test(
                any_run["name"],
                any_run["claim"],
                Direction(any_run["direction"]),
                views["baseline"],
                views["patched"],
            )
        )
    # a test that ran on one build only cannot be compared: its missing side is unknown
    fixed = []
    for tv, runs in zip(verdicts, pairs.values(), strict=True):
        if len(runs) == 1 and tv.verdict is not v.ClaimVerdict.NOT_RUN:
            missing = slot if "baseline" in runs else "baseline"
            tv = replace(
                tv, verdict=v.ClaimVerdict.UNDECIDED, blocking=True, note=f"no result on {missing}"
            )
        fixed.append(tv)
    return fixed


def _verdict_dict(t: v.TestVerdict) -> dict[str, Any]:
    return {
        "name": t.name,
        "claim": t.claim,
        "direction": t.direction.value,
        "baseline": t.baseline.value,
        "patched": t.patched.value,
        "verdict": t.verdict.value,
        "blocking": t.blocking,
        "crash_fails_gate": t.crash_fails_gate,
        "note": t.note,
    }


def _claims(tests: list[v.TestVerdict], slot: str = "patched") -> list[dict[str, Any]]:
    by_claim: dict[str, list[v.TestVerdict]] = {}
    for t in tests:
        if t.claim:
            by_claim.setdefault(t.claim, []).append(t)
    return [
        {
            "claim": claim,
            "verdict": v.claim_verdict(ts).value,
            "tests": [t.name for t in ts],
            "directions": sorted({t.direction.value for t in ts}),
            "baseline": _evidence_summary(t.baseline for t in ts),
            slot: _evidence_summary(t.patched for t in ts),
        }
        for claim, ts in sorted(by_claim.items())
    ]


def _evidence_summary(items: Iterable[v.Evidence]) -> str:
    counts: dict[str, int] = {}
    for e in items:
        counts[e.value] = counts.get(e.value, 0) + 1
    return ", ".join(f"{n} {e}" for e, n in counts.items())


def _findings(
    tests: list[v.TestVerdict], builds: dict[str, dict[str, Any]], patches: list[dict[str, Any]]
) -> list[str]:
    out = []
    for t in tests:
        if t.verdict is v.ClaimVerdict.BROKEN_ON_BOTH:
            out.append(f"{t.name}: fails on baseline and patched (defect already in the base)")
        elif t.verdict is v.ClaimVerdict.FIXED_ON_PATCHED:
            out.append(f"{t.name}: invariant fails on baseline, holds on patched")
    out += [
        f"our repair {p['subject']!r} does not apply: the repaired build has no results"
        for p in patches
        if p["role"] == REPAIR_ROLE and p["apply_verdict"] == "conflict"
    ]
    posted = builds.get("posted")
    if posted is not None and not posted["ok"]:
        out.append("the series as posted does not build on this base; local fixups make it build")
    out += [
        f"{_row_label(p)}: does not build at this patch (bisectability)"
        for p in patches
        if p["builds"] is False
    ]
    return out


# --- environment ---------------------------------------------------------------------------


def _environment(
    env: TestEnv | None, builds: BuildSet | None, functional: FunctionalResults | None
) -> dict[str, Any]:
    # Notes and the test device's queue max may come from the testenv's manifest (what it
    # built) or from the facts the functional stage recorded about the environment.
    facts = dict(functional.env) if functional else {}
    built: dict[str, Any] = dict(getattr(env, "manifest", None) or {})
    notes = [str(n) for n in built.get("notes", [])]
    notes += [str(n) for n in facts.pop("notes", [])]
    queue_max = facts.get("vdpa_queue_max", built.get("vdpa_queue_max"))
    for patch in built.get("test_device_patches", []):
        # the testenv records its source edit: "...: #define VDPASIM_QUEUE_MAX 256 -> ... 1024"
        found = re.findall(r"VDPASIM_QUEUE_MAX\s+(\d+)", str(patch))
        if found:
            queue_max = int(found[-1])
    if isinstance(queue_max, int) and queue_max > STOCK_VDPA_SIM_QUEUE_MAX:
        notes.insert(
            0, f"vdpa_sim built with queue max {queue_max} (test device, not code under test)"
        )
    return {
        "host": {
            "hostname": platform.node(),
            "os": _os_release(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "mode": env.mode.value if env else None,
        "kvm_in_l1": env.l1_kvm if env else None,
        "test_kernel": env.kernel_version if env else None,
        "qemu_configure": shlex.join(builds.patched.configure_line) if builds else None,
        "firmware_dirs": [str(p) for p in builds.firmware_dirs] if builds else [],
        "notes": list(dict.fromkeys(notes)),
        "facts": _jsonable(facts),
    }


def _os_release() -> str:
    try:
        text = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return platform.system()
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text, re.M)
    return m.group(1) if m else platform.system()


# --- helpers -------------------------------------------------------------------------------


def _tail(path: Path | None, lines: int = EXCERPT_LINES) -> str:
    """The last lines of a log file, for excerpts in the reports ("" when unreadable)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    text = "\n".join(data.splitlines()[-lines:])
    return text[-EXCERPT_CHARS:]


def _jsonable(value: Any) -> Any:
    """Measurements as JSON values (paths and other objects become strings)."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    return json.loads(json.dumps(value, default=str))
