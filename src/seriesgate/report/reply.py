"""reply.txt: test results as a plain-text reply to the series' cover letter.

Written the way a reviewer posts results to qemu-devel: mail headers that thread it
(``In-Reply-To``/``References`` the cover's Message-Id), the cover subject quoted, then a short
body — result first, per patch, per claim, regressions, crashes, findings, environment.
A ``Tested-by:`` trailer is added only when the gate passes AND a tester identity is given
(``$SERIESGATE_TESTED_BY``, e.g. "Jane Doe <jane@example.org>"): the trailer is a person's
statement, so the tool never makes one up, and never offers one for a series that failed.
"""

from __future__ import annotations

import textwrap
from typing import Any

from seriesgate.report.document import patch_number

WIDTH = 72


def _wrap(text: str, indent: str = "", hang: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + hang,
        break_on_hyphens=False,
        break_long_words=False,
    ) or [""]


def render_reply(summary: dict[str, Any], *, tested_by: str | None = None) -> str:
    """reply.txt text for a summary."""
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
        f"On {s['cover_date'] or msgid}, {s['author']} wrote:",
        f"> {subject}",
        "",
        "Hi,",
        "",
    ]
    prereqs = s.get("prerequisites") or []
    intro = (
        f"I ran this series through an automated apply/build/test gate on "
        f"{base.get('spec') or 'an unknown base'}"
        + (f" ({base['version']})" if base.get("version") else "")
        + (
            ", on top of " + ", ".join(f'"{p["subject"]}" <{p["message_id"]}>' for p in prereqs)
            if prereqs
            else ""
        )
        + "."
    )
    lines += _wrap(intro)
    lines += ["", *_wrap(f"Result: {verdict['headline']}"), ""]

    series_patches = [p for p in summary["patches"] if p["role"] == "series"]
    if series_patches:
        lines.append("Per patch (apply / builds alone / checkpatch errors,warnings):")
        for p in series_patches:
            c = p.get("checkpatch")
            check = f"{c['errors']},{c['warnings']}" if c else "-"
            builds = {True: "builds", False: "NO BUILD", None: "-"}[p["builds"]]
            lines.append(
                f"  {patch_number(p)} {p['apply'] or '-':<15} {builds:<8} {check:<5} {p['subject']}"
            )
        lines.append("")
    fixups = [p for p in summary["patches"] if p["role"] == "fixup"]
    if fixups:
        lines += _wrap(
            "Local adaptation to the newer base, applied after the series: "
            + ", ".join(p["subject"] for p in fixups)
            + "."
        )
        lines.append("")
    builds = summary["builds"]
    if builds:
        lines.append(
            "Builds: "
            + ", ".join(f"{b['name']} {'ok' if b['ok'] else 'FAILED'}" for b in builds)
            + "."
        )
        lines.append("")

    if summary["claims"]:
        lines.append("Claims (baseline -> patched: verdict):")
        for c in summary["claims"]:
            lines += _wrap(f"{c['claim']}: {c['baseline']} -> {c['patched']}: {c['verdict']}", "  ")
        lines.append("")
    bad = [t for t in summary["test_verdicts"] if t["verdict"] == "regressed"]
    if bad:
        lines.append("Regressions:")
        for t in bad:
            run = next(
                (r for r in summary["tests"] if r["name"] == t["name"] and r["build"] == "patched"),
                None,
            )
            reason = ""
            if run is not None:
                crash = f"QEMU died on {run['crash']['signal']}" if run["crash"] else ""
                reason = "; ".join(filter(None, [crash, run["fail_reason"]])) or run["status"]
            lines += _wrap(f"{t['name']}: {reason}", "  ")
        lines.append("")
    for c in summary["crashes"]:
        lines += _wrap(f"Crash: {c['test']} on {c['build']}: {c['binary']} died on {c['signal']}")
        lines += [f"    {f}" for f in c["frames"][:6]]
        lines.append("")
    if summary["flaky"]:
        lines += _wrap(
            "Flaky (passed on retry): "
            + ", ".join(f"{f['test']} on {f['build']}" for f in summary["flaky"])
        )
        lines.append("")
    if summary["findings"]:
        lines.append("Not caused by the series:")
        for f in summary["findings"]:
            lines += _wrap(f"- {f}", "  ", "  ")
        lines.append("")

    env = summary["environment"]
    where = {"vm": "in a test VM", "host": "on the host"}.get(env.get("mode") or "", "")
    test_env = (
        f"Tests used vdpa_sim devices {where}".strip()
        + (f", kernel {env['test_kernel']}" if env.get("test_kernel") else "")
        + (", nested KVM" if env.get("kvm_in_l1") else ", TCG" if env.get("mode") else "")
        + "."
    )
    if summary["tests"]:
        lines += _wrap(test_env)
        lines += [ln for n in env.get("notes", []) for ln in _wrap(f"Note: {n}")]
        lines.append("")
    if verdict["verdict"] == "pass" and tested_by:
        lines += [f"Tested-by: {tested_by}", ""]
    lines.append("Full report and logs: report.html / junit.xml in the results directory.")
    return "\n".join(lines).rstrip() + "\n"
