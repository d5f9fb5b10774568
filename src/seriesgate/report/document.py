"""The human report as a list of blocks, built once from summary.json, rendered twice.

``report.md`` and ``report.html`` carry the same content because both render the blocks that
:func:`build_document` produces: header verdict, patch table, builds, claims table, test table,
crash / failure details with log excerpts, flaky retries, findings, downtime benchmark,
environment and stage times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seriesgate.report import bench_plot


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str
    strong: bool = False


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


Block = Heading | Para | Table | Pre | Bullets | Image


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
    if p["role"] == "fixup":
        return "fixup"
    return f"{p['index']:02d}/{p['total']:02d}"


def checkpatch_text(p: dict[str, Any]) -> str:
    c = p.get("checkpatch")
    if not c:
        return "-"
    return f"{c['errors']} errors, {c['warnings']} warnings"


def measurements_text(m: dict[str, Any], limit: int = 8) -> str:
    """Scalars of a measurements dict as ``k=v`` pairs (lists/dicts are counted, not dumped)."""
    parts = []
    for key, value in m.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, (int, str, bool)) or value is None:
            parts.append(f"{key}={value}")
        elif isinstance(value, (list, dict)):
            parts.append(f"{key}=[{len(value)}]")
    more = f" (+{len(parts) - limit})" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def build_document(summary: dict[str, Any], *, plot: Path | None = None) -> list[Block]:
    """All blocks of the report, in order. ``plot``: bench PNG relative to the report."""
    s = summary["series"]
    verdict = summary["overall"]
    blocks: list[Block] = [
        Heading(1, f"seriesgate: {verdict['verdict'].upper()} — {s['cover_subject']}"),
        Para(
            f"Verdict: {verdict['headline']} (exit code {verdict['exit_code']})",
            strong=True,
        ),
    ]
    if verdict["reasons"] and verdict["undecided"]:
        blocks.append(Para("Also undecided: " + "; ".join(verdict["undecided"])))
    if summary.get("error"):
        blocks.append(Para(f"The run stopped: {summary['error']}"))
    blocks.append(_series_table(summary))

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
        blocks.append(
            Table(
                ("claim", "expected", "tests", "baseline", "patched", "verdict"),
                tuple(
                    (
                        c["claim"],
                        ", ".join(direction_label(d) for d in c["directions"]),
                        str(len(c["tests"])),
                        c["baseline"],
                        c["patched"],
                        c["verdict"],
                    )
                    for c in summary["claims"]
                ),
            )
        )
    else:
        blocks.append(Para("No claim was tested (the functional stage did not run)."))

    blocks += _test_blocks(summary)
    blocks += _crash_blocks(summary)
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
                p["role"] if p["role"] != "prerequisite" else f"prereq ({p['series']})",
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

    rows = tuple(
        (
            tv["name"],
            tv["claim"] or "-",
            direction_label(tv["direction"]),
            cell(tv["name"], "baseline"),
            cell(tv["name"], "patched"),
            tv["verdict"],
            tv["note"],
        )
        for tv in summary["test_verdicts"]
    )
    blocks: list[Block] = [Heading(2, "Tests")]
    selected = summary.get("test_selection")
    if selected is not None:
        which = f"tags {', '.join(selected)}" if selected else "all tests"
        blocks.append(Para(f"Tests selected: {which} (`seriesgate run --all` runs every test)."))
    blocks.append(
        Table(("test", "claim", "expected", "baseline", "patched", "verdict", "note"), rows)
    )
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


def _crash_blocks(summary: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    for c in summary["crashes"]:
        blocks.append(
            Para(f"{c['test']} on {c['build']}: {c['binary']} died on {c['signal']}", strong=True)
        )
        if c["frames"]:
            blocks.append(Pre("\n".join(c["frames"])))
        if c.get("log_excerpt"):
            blocks.append(Pre(c["log_excerpt"]))
    for t in summary["tests"]:
        if t["status"] in ("PASS", "WARN", "SKIP", "CANCEL") or t["crash"]:
            continue
        blocks.append(Para(f"{t['name']} on {t['build']}: {t['status']}: {t['fail_reason']}"))
        if t.get("log_excerpt"):
            blocks.append(Pre(t["log_excerpt"]))
    if blocks:
        blocks.insert(0, Heading(2, "Crashes, hangs and failures"))
    return blocks


def _bisect_blocks(found: list[dict[str, Any]]) -> list[Block]:
    """First failing patch per regressed test (the pipeline's bisect results, any keys)."""
    keys = list(dict.fromkeys(k for item in found for k in item))
    return [
        Heading(2, "Bisect (first patch where a regressed test fails)"),
        Table(
            tuple(keys),
            tuple(tuple(_plain(item.get(k)) for k in keys) for item in found),
        ),
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
    rows += [(str(k), str(val)) for k, val in e.get("facts", {}).items()]
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
