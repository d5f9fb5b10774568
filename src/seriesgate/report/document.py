"""The human report as a list of blocks, built once from summary.json, rendered twice.

``report.md`` and ``report.html`` carry the same content because both render the blocks that
:func:`build_document` produces: the verdict headline, patch table, builds, claims table (with
the number that decides each claim), test table, readable measurements, migration timeline
pictures, crashes grouped by signature (one backtrace each, links to the full gdb output),
other failures with log excerpts, flaky retries, findings, downtime benchmark, environment and
stage times. When the run has a ``repaired`` build (our repair of the series' defects) every
baseline-versus-patched table gets a repaired column beside patched, labelled as ours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seriesgate.report import bench_plot
from seriesgate.report.crashes import describe
from seriesgate.report.readable import claim_numbers, measurement_parts


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str
    strong: bool = False
    kind: str = ""  # what it is, for the HTML page's classes: "headline", "crash"


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Pre:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Image:
    path: Path  # relative to the report's directory
    alt: str


@dataclass(frozen=True)
class Links:
    """A list of links: (text, href) with href relative to the report's directory."""

    items: tuple[tuple[str, str], ...]


Block = Heading | Para | Table | Pre | Bullets | Image | Links

REPAIRED = "repaired"
REPAIRED_LABEL = "repaired (our repair, not the author's series)"


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} s" if value >= 100 else f"{value:.1f} s"


def direction_label(direction: str) -> str:
    """``expect:`` value as shown in tables ("invariant" reads better than holds-on-both)."""
    return "invariant" if direction == "holds-on-both" else direction


def patch_number(p: dict[str, Any]) -> str:
    if p["role"] in ("fixup", "repair"):
        return str(p["role"])
    return f"{p['index']:02d}/{p['total']:02d}"


def checkpatch_text(p: dict[str, Any]) -> str:
    c = p.get("checkpatch")
    if not c:
        return "-"
    return f"{c['errors']} errors, {c['warnings']} warnings"


def measurements_text(m: dict[str, Any], limit: int = 8) -> str:
    """What a test measured, as a person reads it (``traffic 8/8 frames``, ``maps in
    downtime 2 of 2``, ``guest pause 1301 ms``), the telling values first.

    >>> measurements_text({"traffic": {"guest_tx_packets": 8, "guest_rx_packets": 8},
    ...                    "guest_maps": 2, "maps_in_downtime": 2, "guest_pause_ms": 1301.2})
    'maps in downtime 2 of 2, guest pause 1301 ms, traffic 8/8 frames'
    """
    parts = measurement_parts(m)
    more = f" (+{len(parts) - limit} more)" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def href(path: str | Path | None, base_dir: Path | None) -> str | None:
    """A recorded path as a link from the report's directory (relative paths stay as they
    are: they are relative to the results directory already)."""
    if not path:
        return None
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    if base_dir is None:
        return None
    return Path(os.path.relpath(p, Path(base_dir).resolve())).as_posix()


def has_repaired(summary: dict[str, Any]) -> bool:
    """Whether the run has results of our repaired build (issue 15's third variant)."""
    return any(t["build"] == REPAIRED for t in summary.get("tests", []))


def build_document(
    summary: dict[str, Any],
    *,
    plot: Path | None = None,
    timelines: dict[str, Path] | None = None,
    base_dir: Path | None = None,
) -> list[Block]:
    """All blocks of the report, in order. ``plot``: bench PNG relative to the report;
    ``timelines``: test name -> timeline PNG relative to the report; ``base_dir``: the
    report's directory (links to files of the run are made relative to it)."""
    s = summary["series"]
    verdict = summary["overall"]
    blocks: list[Block] = [
        Heading(1, f"seriesgate: {verdict['verdict'].upper()} — {s['cover_subject']}"),
        Para(summary.get("headline") or verdict["headline"], strong=True, kind="headline"),
        Para(
            f"Exit code {verdict['exit_code']}"
            + (
                "; the repaired build is reported beside the series and does not decide it."
                if has_repaired(summary)
                else "."
            )
        ),
    ]
    if summary.get("error"):
        blocks.append(Para(f"The run stopped: {summary['error']}"))
    blocks.append(_series_table(summary))
    reuse = baseline_reuse(summary)
    if reuse:
        text, target = reuse
        link = href(target, base_dir)
        blocks.append(Links(((text, link),)) if link else Para(text))

    blocks += [Heading(2, "Patches"), _patch_table(summary["patches"])]
    blocks += _apply_details(summary["patches"])

    if summary["builds"]:
        blocks.append(Heading(2, "Builds"))
        blocks.append(
            Table(
                ("build", "ok", "time", "compile steps", "commit"),
                tuple(
                    (
                        b["name"],
                        yes_no(b["ok"]),
                        seconds(b["time"]),
                        str(b["compile_steps"]),
                        (b["commit"] or "")[:12],
                    )
                    for b in summary["builds"]
                ),
            )
        )
        for b in summary["builds"]:
            if not b["ok"]:
                errors = "\n".join(
                    f"{e['file']}:{e['line']}: {e['message']}" for e in b["errors"][:10]
                )
                blocks.append(Para(f"Build {b['name']} failed (log: {b['log']})"))
                blocks.append(Pre(errors or b.get("log_excerpt") or "(no log)"))

    blocks.append(Heading(2, "Claims"))
    if summary["claims"]:
        blocks += _claim_blocks(summary)
    else:
        blocks.append(Para("No claim was tested (the functional stage did not run)."))

    blocks += _test_blocks(summary)
    blocks += _timeline_blocks(summary, timelines or {})
    blocks += _crash_blocks(summary, base_dir)
    if summary["flaky"]:
        blocks.append(Heading(2, "Flaky tests (failed, then passed on retry)"))
        blocks.append(
            Bullets(
                tuple(
                    f"{f['test']} on {f['build']}: {f['attempts']} attempts"
                    for f in summary["flaky"]
                )
            )
        )
    if summary.get("bisect"):
        blocks += _bisect_blocks(summary["bisect"])
    if summary["findings"]:
        blocks.append(Heading(2, "Findings (not regressions of the series)"))
        blocks.append(Bullets(tuple(summary["findings"])))
    if summary.get("bench"):
        blocks += bench_plot.bench_blocks(summary, plot)
    blocks += _environment_blocks(summary)
    return blocks


def _claim_blocks(summary: dict[str, Any]) -> list[Block]:
    repaired = {c["claim"]: c for c in summary.get("claims_repaired") or []}
    with_repaired = bool(repaired) or has_repaired(summary)
    headers = ["claim", "expected", "tests", "baseline", "patched", "verdict"]
    if with_repaired:
        headers += [REPAIRED_LABEL, "verdict (repaired)"]
    headers.append(
        "deciding number (baseline → patched" + (" → repaired)" if with_repaired else ")")
    )
    rows = []
    for c in summary["claims"]:
        label, values = claim_numbers(summary, c)
        chain = " → ".join(
            values.get(b, "-") for b in ("baseline", "patched", REPAIRED) if b in values
        )
        row = [
            c["claim"],
            ", ".join(direction_label(d) for d in c["directions"]),
            str(len(c["tests"])),
            c["baseline"],
            c["patched"],
            c["verdict"],
        ]
        if with_repaired:
            r = repaired.get(c["claim"], {})
            row += [r.get(REPAIRED, "-"), r.get("verdict", "-")]
        row.append(f"{label}: {chain}" if label else chain)
        rows.append(tuple(row))
    blocks: list[Block] = [Table(tuple(headers), tuple(rows))]
    if with_repaired:
        blocks.append(
            Para(
                "The repaired build is the series with our own repair of its defects "
                "(patches/<series>/repairs), not the author's series: its column shows what "
                "the series' claims would be with that repair; the verdict stays the posted "
                "series'."
            )
        )
    return blocks


def baseline_reuse(summary: dict[str, Any]) -> tuple[str, str | None] | None:
    """("baseline: reused from <run> (<date>)", results path) when the run reused the
    baseline's results of an earlier run (the functional stage's ``baseline_reuse`` fact)."""
    facts = (summary.get("environment") or {}).get("facts") or {}
    reuse = facts.get("baseline_reuse")
    if not isinstance(reuse, dict) or not reuse.get("from_run"):
        return None
    date = f" ({reuse['date']})" if reuse.get("date") else ""
    return f"baseline: reused from {reuse['from_run']}{date}", reuse.get("results")


def accel_text(summary: dict[str, Any]) -> str | None:
    """``kvm`` / ``tcg (reason)`` from the functional stage's ``l1_accel`` fact."""
    facts = (summary.get("environment") or {}).get("facts") or {}
    accel = facts.get("l1_accel")
    if not isinstance(accel, dict) or not accel.get("accel"):
        return None
    reason = f" ({accel['reason']})" if accel.get("reason") else ""
    return f"{accel['accel']}{reason}"


def l1_qemu_text(summary: dict[str, Any]) -> str | None:
    """The L1 QEMU's version (``10.0.2 (Debian ...)``) from the ``l1_accel`` fact, if known."""
    accel = ((summary.get("environment") or {}).get("facts") or {}).get("l1_accel")
    return str(accel["qemu"]) if isinstance(accel, dict) and accel.get("qemu") else None


def l1_smp_count(summary: dict[str, Any]) -> int | None:
    """The L1's vCPU count from the ``l1_accel`` fact, if known (summaries from before it: None)."""
    accel = ((summary.get("environment") or {}).get("facts") or {}).get("l1_accel")
    smp = accel.get("smp") if isinstance(accel, dict) else None
    return smp if isinstance(smp, int) and smp > 0 else None


def _series_table(summary: dict[str, Any]) -> Table:
    s = summary["series"]
    base = summary["base"] or {}
    rows = [
        ("series", f"{s['subject']} (v{s['version']}, {s['patch_count']} patches)"),
        ("message-id", f"<{s['message_id']}>"),
        ("author", s["author"]),
    ]
    for pre in s.get("prerequisites", []):
        rows.append(
            (
                "prerequisite",
                f"{pre['subject']} (v{pre['version']}, {pre['patch_count']} patches) "
                f"<{pre['message_id']}>",
            )
        )
    if s.get("fixups"):
        rows.append(("local fixups", ", ".join(s["fixups"])))
    rows.append(("base", f"{base.get('spec') or '-'} {base.get('version') or ''}".strip()))
    return Table(("", ""), tuple(rows))


def _patch_table(patches: list[dict[str, Any]]) -> Table:
    return Table(
        ("#", "role", "subject", "apply", "builds", "checkpatch"),
        tuple(
            (
                patch_number(p),
                {"prerequisite": f"prereq ({p['series']})", "repair": "our repair"}.get(
                    p["role"], p["role"]
                ),
                p["subject"],
                p["apply"] or "-",
                yes_no(p["builds"]),
                checkpatch_text(p),
            )
            for p in patches
        ),
    )


def _apply_details(patches: list[dict[str, Any]]) -> list[Block]:
    blocks: list[Block] = []
    for p in patches:
        if p["apply_verdict"] == "conflict":
            blocks.append(Para(f"Conflict in {patch_number(p)} {p['subject']}: {p['evidence']}"))
            for h in p["failing_hunks"][:5]:
                blocks.append(Pre(f"{h['file']} hunk #{h['hunk']}\n{h['text']}"))
        messages = (p.get("checkpatch") or {}).get("messages") or []
        if messages:
            blocks.append(Para(f"checkpatch on {patch_number(p)} {p['subject']}:"))
            blocks.append(Pre("\n".join(messages[:15])))
    return blocks


def _test_blocks(summary: dict[str, Any]) -> list[Block]:
    if not summary["tests"]:
        return []
    runs: dict[tuple[str, str], dict[str, Any]] = {
        (t["name"], t["build"]): t for t in summary["tests"]
    }

    def cell(name: str, build: str) -> str:
        t = runs.get((name, build))
        if t is None:
            return "-"
        flaky = " (flaky)" if t["flaky"] else ""
        crash = f" {t['crash']['signal']}" if t["crash"] else ""
        return f"{t['status']}{crash}{flaky} {seconds(t['time'])}"

    with_repaired = has_repaired(summary)

    def note(tv: dict[str, Any]) -> str:
        retry = [
            f"{b}: {runs[(tv['name'], b)]['retry_note']}"
            for b in ("baseline", "patched", REPAIRED)
            if runs.get((tv["name"], b), {}).get("retry_note")
        ]
        return "; ".join(filter(None, [tv["note"], *retry]))

    rows = []
    for tv in summary["test_verdicts"]:
        row = [
            tv["name"],
            tv["claim"] or "-",
            direction_label(tv["direction"]),
            cell(tv["name"], "baseline"),
            cell(tv["name"], "patched"),
            tv["verdict"],
        ]
        if with_repaired:
            row += [cell(tv["name"], REPAIRED), tv.get("verdict_repaired") or "-"]
        row.append(note(tv))
        rows.append(tuple(row))
    headers = ["test", "claim", "expected", "baseline", "patched", "verdict"]
    if with_repaired:
        headers += [REPAIRED_LABEL, "verdict (repaired)"]
    headers.append("note")
    blocks: list[Block] = [Heading(2, "Tests")]
    selected = summary.get("test_selection")
    if selected is not None:
        which = f"tags {', '.join(selected)}" if selected else "all tests"
        blocks.append(Para(f"Tests selected: {which} (`seriesgate run --all` runs every test)."))
    blocks.append(Table(tuple(headers), tuple(rows)))
    measured = [t for t in summary["tests"] if t["measurements"]]
    if measured:
        blocks.append(Heading(3, "Measurements"))
        blocks.append(
            Table(
                ("test", "build", "measurements"),
                tuple(
                    (t["name"], t["build"], measurements_text(t["measurements"])) for t in measured
                ),
            )
        )
    return blocks


def _timeline_blocks(summary: dict[str, Any], images: dict[str, Path]) -> list[Block]:
    if not images:
        return []
    blocks: list[Block] = [
        Heading(2, "Migration timelines"),
        Para(
            "The destination's guest-RAM DMA maps against the migration: each bar is one map "
            "(start, duration, size), coloured by the thread that issued it; dashed lines "
            "mark source STOP, destination RESUME, device start (DRIVER_OK) and the "
            "destination's MIGRATION completed; the shaded span is the downtime. A build "
            "whose destination crashed ends at the crash."
        ),
    ]
    for test, path in images.items():
        blocks.append(Heading(3, test))
        blocks.append(Image(path, f"migration timeline of {test}"))
    return blocks


def _crash_blocks(summary: dict[str, Any], base_dir: Path | None = None) -> list[Block]:
    blocks: list[Block] = []
    groups = summary.get("crash_groups") or []
    if groups:
        blocks.append(Heading(2, "Crashes by signature"))
    for g in groups:
        where = ", ".join(g["builds"])
        vms = f" ({', '.join(g['vms'])})" if g.get("vms") else ""
        bad = f"; first bad patch {g['first_bad_patch']}" if g.get("first_bad_patch") else ""
        n = len(g["tests"])
        blocks.append(
            Para(
                f"{describe(g)}: {n} test{'s' if n != 1 else ''} on {where}{vms}{bad}",
                strong=True,
                kind="crash",
            )
        )
        blocks.append(Bullets(tuple(f"{t['test']} on {t['build']}" for t in g["tests"])))
        blocks.append(Pre("\n".join(g["backtrace"]) or "(no backtrace: no core or gdb)"))
        links = tuple(
            (f"full gdb output: {t['test']} on {t['build']}", link)
            for t in g["tests"]
            if (link := href(t.get("gdb"), base_dir))
        )
        if links:
            blocks.append(Links(links))
    failures: list[Block] = []
    for t in summary["tests"]:
        if t["status"] in ("PASS", "WARN", "SKIP", "CANCEL") or t["crash"]:
            continue
        failures.append(Para(f"{t['name']} on {t['build']}: {t['status']}: {t['fail_reason']}"))
        if t.get("log_excerpt"):
            failures.append(Pre(t["log_excerpt"]))
    if failures:
        blocks.append(Heading(2, "Failures and hangs"))
        blocks += failures
    return blocks


def _bisect_blocks(found: list[dict[str, Any]]) -> list[Block]:
    """First failing patch per regressed test (the pipeline's bisect results), with how it
    was found in a few words (the failure itself is in the crash and failure sections)."""
    rows = []
    for item in found:
        ev = item.get("evidence") or {}
        if ev.get("same_crash_as"):
            how = f"same crash as {ev['same_crash_as']}"
        elif ev.get("error"):
            how = str(ev["error"]).splitlines()[0][:200]
        else:
            probes = ", ".join(
                f"{p['index']} {'passes' if p.get('passed') else 'fails'}"
                for p in ev.get("probes", [])
            )
            how = f"probes: {probes}" if probes else "no probe"
            if ev.get("skipped_unbuilt"):
                how += f"; not built alone: {_plain(ev['skipped_unbuilt'])}"
            if ev.get("by_elimination"):
                how += " (named by elimination)"
            other = [d["index"] for d in ev.get("failed_differently", [])]
            if other:
                how += f"; failed differently at {_plain(other)}"
        index = item.get("first_bad_patch_index")
        rows.append((str(item.get("test")), _plain(index), _plain(item.get("subject")), how))
    return [
        Heading(2, "Bisect (first patch where a regressed test fails)"),
        Table(("test", "first bad patch", "subject", "how"), tuple(rows)),
    ]


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def _environment_blocks(summary: dict[str, Any]) -> list[Block]:
    e = summary["environment"]
    host = e["host"]
    rows = [
        ("host", f"{host['hostname']}: {host['os']}, kernel {host['kernel']}, {host['cpus']} CPUs"),
        ("test mode", e["mode"] or "-"),
        ("KVM in L1", yes_no(e["kvm_in_l1"])),
        ("test kernel", e["test_kernel"] or "-"),
        ("QEMU configure", e["qemu_configure"] or "-"),
    ]
    accel = accel_text(summary)
    if accel:
        rows.append(("L1 acceleration", accel))
    l1_qemu = l1_qemu_text(summary)
    if l1_qemu:
        smp = l1_smp_count(summary)
        vcpus = f", {smp} vCPU{'s' if smp != 1 else ''}" if smp else ""
        rows.append(("L1 QEMU", l1_qemu + vcpus))
    reuse = baseline_reuse(summary)
    if reuse:
        rows.append(("baseline results", reuse[0].removeprefix("baseline: ")))
    rows += [
        (str(k), str(val))
        for k, val in e.get("facts", {}).items()
        if k not in ("l1_accel", "baseline_reuse")
    ]
    blocks: list[Block] = [Heading(2, "Environment"), Table(("", ""), tuple(rows))]
    if e["notes"]:
        blocks.append(Bullets(tuple(e["notes"])))
    if summary["stage_times"]:
        blocks.append(Heading(2, "Stage times"))
        times = dict(summary["stage_times"])
        # The run records its own wall-clock total (report writing included); older
        # summaries have none: then the stages' sum stands in.
        total = times.pop("total", None)
        if total is None:
            total = sum(times.values())
        blocks.append(
            Table(
                ("stage", "time"),
                tuple((k, seconds(t)) for k, t in times.items()) + (("total", seconds(total)),),
            )
        )
    return blocks
