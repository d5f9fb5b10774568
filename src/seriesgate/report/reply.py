"""reply.txt: the test results as a reviewer would post them in reply to the cover letter.

Mail headers that thread it (``In-Reply-To``/``References`` the cover's Message-Id), the cover
subject quoted, then a short body at 72 columns (about 60 lines for a ten-patch series): the
verdict headline, the per-patch table, the claims (baseline -> patched, the verdict and the
one number each turns on), every crash signature once with its first bad patch, the tests
that regressed, findings, the environment in one line. No machine paths, command lines or
log tails: those stay in the report and the results directory, which the reply links when CI
publishes it (``results_url``, from ``$SERIESGATE_RESULTS_URL``).

A ``Tested-by:`` trailer is added only when the gate passes AND a tester identity is given
(``$SERIESGATE_TESTED_BY``, e.g. "Jane Doe <jane@example.org>"): the trailer is a person's
statement, so the tool never makes one up, and never offers one for a series that failed.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

from seriesgate.report.crashes import describe
from seriesgate.report.document import (
    accel_text,
    baseline_reuse,
    has_repaired,
    l1_qemu_text,
    patch_number,
)
from seriesgate.report.readable import claim_numbers

WIDTH = 72
CRASH_FRAMES = 3
MAX_FINDINGS = 3
# an absolute path of this machine (not a URL, not part of a relative path)
# (/dev, /proc and /sys name the same thing on every machine: kept)
_ABS_PATH = re.compile(r"(?<![\w:/.~-])(?:~|/(?!dev/|proc/|sys/))(?:[\w.+-]+/)+([\w.+-]*)")


def scrub(text: str) -> str:
    """Machine paths reduced to their last component (a reply carries none).

    >>> scrub("log in /root/.cache/seriesgate/trees/x/build.log, see https://h/a/b")
    'log in build.log, see https://h/a/b'
    >>> scrub("no /dev/kvm")
    'no /dev/kvm'
    """
    return _ABS_PATH.sub(lambda m: m.group(1) or "(path)", text)


def _wrap(text: str, indent: str = "", hang: str = "") -> list[str]:
    return textwrap.wrap(
        scrub(text),
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + hang,
        break_on_hyphens=False,
        break_long_words=False,
    ) or [""]


def _fit(line: str) -> str:
    line = scrub(line)
    return line if len(line) <= WIDTH else line[: WIDTH - 3].rstrip() + "..."


def _base_text(base: dict[str, Any]) -> str:
    spec = str(base.get("spec") or "an unknown base")
    if spec.startswith("dir:"):
        spec = "dir:" + (Path(spec[4:]).name or "(tree)")
    return spec + (f" ({base['version']})" if base.get("version") else "")


def environment_line(summary: dict[str, Any]) -> str:
    """Where the tests ran, in one sentence."""
    env = summary["environment"]
    where = {"vm": "vdpa_sim in a test VM", "host": "vdpa_sim on the host"}.get(
        env.get("mode") or "", "vdpa_sim"
    )
    parts = [where]
    if env.get("test_kernel"):
        parts.append(f"kernel {env['test_kernel']}")
    accel = accel_text(summary)
    if accel:  # the accelerator only: why is in the full report
        l1_qemu = l1_qemu_text(summary)  # its version number only: the rest is in the report
        on_qemu = f" (QEMU {l1_qemu.split()[0]})" if l1_qemu else ""
        parts.append(f"L1 on {accel.split(' (', 1)[0].upper()}{on_qemu}")
    if env.get("mode") == "vm":
        parts.append("guests on nested KVM" if env.get("kvm_in_l1") else "guests on TCG")
    host = env.get("host") or {}
    if host.get("os"):
        parts.append(f"host {host['os']}, {host.get('cpus', '?')} CPUs")
    text = "Environment: " + ", ".join(parts) + "."
    notes = [n for n in env.get("notes", []) if len(n) < 90]
    if notes:
        text += " Note: " + "; ".join(notes[:2]) + "."
    return text


def _link(results_url: str | None, target: str | None, base_dir: Path | None) -> str | None:
    if not results_url or not target:
        return None
    p = Path(target)
    if p.is_absolute():
        if base_dir is None:
            return None
        try:
            p = p.relative_to(Path(base_dir).resolve())
        except ValueError:
            return None
    return f"{results_url.rstrip('/')}/{p.as_posix()}"


def render_reply(
    summary: dict[str, Any],
    *,
    tested_by: str | None = None,
    results_url: str | None = None,
    base_dir: Path | None = None,
) -> str:
    """reply.txt text for a summary (``base_dir``: the results directory ``results_url``
    publishes, for links to files of the run)."""
    s = summary["series"]
    verdict = summary["overall"]
    base = summary["base"] or {}
    subject = s["cover_subject"]
    msgid = f"<{s['message_id']}>"
    lines = [
        f"Subject: Re: {subject}",
        f"In-Reply-To: {msgid}",
        f"References: {msgid}",
        "",
        *_wrap(f"On {s['cover_date'] or msgid}, {s['author']} wrote:"),
        *_wrap(subject, "> "),
        "",
        "Hi,",
        "",
    ]
    prereqs = s.get("prerequisites") or []
    intro = (
        f"I ran this series through an automated apply/build/test gate on {_base_text(base)}"
        + (", on top of " + ", ".join(f'"{p["subject"]}"' for p in prereqs) if prereqs else "")
        + "."
    )
    lines += _wrap(intro)
    lines += ["", *_wrap(summary.get("headline") or verdict["headline"]), ""]

    series_patches = [p for p in summary["patches"] if p["role"] == "series"]
    if series_patches:
        lines.append("Per patch (apply, builds alone, checkpatch errors/warnings):")
        width = max(len(p["apply"] or "-") for p in series_patches)
        for p in series_patches:
            c = p.get("checkpatch")
            check = f"{c['errors']}/{c['warnings']}" if c else "-"
            alone = {True: "ok", False: "FAIL", None: "-"}[p["builds"]]
            apply = p["apply"] or "-"
            lines.append(
                _fit(f"  {patch_number(p)} {apply:<{width}} {alone:<4} {check:<4} {p['subject']}")
            )
        lines.append("")
    fixups = [p for p in summary["patches"] if p["role"] == "fixup"]
    builds = {b["name"]: b for b in summary["builds"]}
    posted_fails = "posted" in builds and not builds["posted"]["ok"]
    notes = []
    if fixups:
        notes.append(
            ("The series as posted does not build on this base; applied after it, a "
             "local adaptation makes it build: "
             if posted_fails else "Applied after the series, a local adaptation to the base: ")
            + ", ".join(p["subject"] for p in fixups)
            + "."
        )  # fmt: skip
    repairs = [p for p in summary["patches"] if p["role"] == "repair"]
    if repairs:
        notes.append(
            f'"repaired" below is your series plus {len(repairs)} repair patch'
            f"{'es' if len(repairs) > 1 else ''} of ours, not part of your series."
        )
    failed = [n for n, b in builds.items() if not b["ok"] and not (n == "posted" and fixups)]
    if failed:
        notes.append(f"Builds that fail: {', '.join(failed)}.")
    for note in notes:
        lines += _wrap(note)
    if notes:
        lines.append("")

    lines += _claim_lines(summary)
    lines += _crash_lines(summary, results_url, base_dir)
    crashed = {t["test"] for g in summary.get("crash_groups") or [] for t in g["tests"]}
    regressed = [
        t["name"]
        for t in summary["test_verdicts"]
        if t["verdict"] == "regressed" and t["name"] not in crashed
    ]
    if regressed:
        lines += _wrap("Regressed (pass on baseline, fail on patched): " + ", ".join(regressed))
        lines.append("")
    if summary["flaky"]:
        lines += _wrap(
            "Flaky (passed on retry): "
            + ", ".join(f"{f['test']} on {f['build']}" for f in summary["flaky"])
        )
        lines.append("")
    findings = _new_findings(summary, posted_said=bool(fixups))
    if findings:
        lines.append("Not caused by the series:")
        for f in findings[:MAX_FINDINGS]:
            lines += _wrap(f"- {f}", "  ", "  ")
        if len(findings) > MAX_FINDINGS:
            lines.append(f"  (and {len(findings) - MAX_FINDINGS} more in the report)")
        lines.append("")

    if summary["tests"]:
        env = environment_line(summary)
        reuse = baseline_reuse(summary)
        if reuse:  # the date only: the run's name is this machine's business
            when = (summary["environment"].get("facts") or {}).get("baseline_reuse", {})
            env += f" Baseline results reused from a run of {str(when.get('date', '?'))[:10]}."
        lines += _wrap(env)
        lines.append("")
    if verdict["verdict"] == "pass" and tested_by:
        lines += [f"Tested-by: {tested_by}", ""]
    report = _link(results_url, "report.html", None)
    if report:
        lines.append(f"Report, logs and backtraces: {report}")
    else:
        lines += _wrap("The full report, logs and backtraces are in the gate's results.")
    return "\n".join(lines).rstrip() + "\n"


def _new_findings(summary: dict[str, Any], *, posted_said: bool) -> list[str]:
    """The findings the reply has not said already (in the patch table, the fixup note or a
    claim's verdict)."""
    claimed = {t["name"] for t in summary["test_verdicts"] if t.get("claim")}
    out = []
    for f in summary["findings"]:
        if f.endswith("(bisectability)"):
            continue  # the per-patch table's "FAIL"
        if posted_said and f.startswith("the series as posted does not build"):
            continue
        if any(f.startswith(f"{name}: ") for name in claimed):
            continue  # the claim's verdict (broken-on-both, fixed-on-patched)
        out.append(f)
    return out


def _claim_lines(summary: dict[str, Any]) -> list[str]:
    if not summary["claims"]:
        return []
    repaired = {c["claim"]: c for c in summary.get("claims_repaired") or []}
    with_repaired = bool(repaired) or has_repaired(summary)
    head = "Claims (baseline -> patched"
    head += " -> repaired):" if with_repaired else "):"
    lines = _wrap(head)
    for c in summary["claims"]:
        r = repaired.get(c["claim"])
        first = f"  {c['claim']}: {c['verdict']}"
        if r is not None:
            first += f"; repaired: {r['verdict']}"
        label, values = claim_numbers(summary, c)
        chain = " -> ".join(values[b] for b in ("baseline", "patched", "repaired") if b in values)
        lines += _wrap(first)
        lines += _wrap(f"{label}: {chain}" if label else chain, "    ", "  ")
    lines.append("")
    return lines


def _crash_lines(
    summary: dict[str, Any], results_url: str | None, base_dir: Path | None
) -> list[str]:
    lines: list[str] = []
    for g in summary.get("crash_groups") or []:
        n = len(g["tests"])
        builds = " and ".join(g["builds"])
        vms = f", {', '.join(g['vms'])}" if g.get("vms") else ""
        hit = {t["test"] for t in g["tests"]}
        regressed = sum(
            1 for t in summary["test_verdicts"] if t["verdict"] == "regressed" and t["name"] in hit
        )
        which = f"; {regressed} of them regressed" if regressed else ""
        bad = f", first bad patch {g['first_bad_patch']}" if g.get("first_bad_patch") else ""
        lines += _wrap(f"Crash: {describe(g)} in {n} test{'s' if n != 1 else ''} on {builds}"
                       f" ({vms.lstrip(', ') or 'QEMU'}{which}){bad}:")  # fmt: skip
        lines += [_fit(f"    {f}") for f in g["backtrace"][:CRASH_FRAMES]]
        gdb = next((t["gdb"] for t in g["tests"] if t.get("gdb")), None)
        link = _link(results_url, gdb, base_dir)
        if link:
            lines.append(f"  gdb: {link}")
        lines.append("")
    return lines
