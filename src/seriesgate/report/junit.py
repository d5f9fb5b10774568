"""junit.xml for GitLab's test report: apply, build, checkpatch, claims, functional tests.

One ``<testsuite>`` per stage. GitLab shows ``classname``, ``name``, ``file``, ``time`` and the
``<failure>``/``<error>``/``<skipped>`` message with its text; ``system-out`` holds details.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from seriesgate.report.document import measurements_text, patch_number


@dataclass
class Case:
    classname: str
    name: str
    file: str = ""
    time: float = 0.0
    outcome: str = "pass"  # pass | failure | error | skipped
    message: str = ""
    text: str = ""
    out: str = ""


@dataclass
class Suite:
    name: str
    cases: list[Case] = field(default_factory=list)


def _apply_suite(summary: dict[str, Any]) -> Suite:
    suite = Suite("apply")
    for p in summary["patches"]:
        files = p["files"] or []
        hunks = p["failing_hunks"]
        case = Case(
            classname=f"seriesgate.apply.{p['role']}.{p['series']}",
            name=f"{patch_number(p)} {p['subject']}",
            file=hunks[0]["file"] if hunks else (files[0] if files else ""),
            out=f"verdict: {p['apply'] or 'not tried'}\n{p['evidence']}".strip(),
        )
        if p["apply_verdict"] == "conflict":
            case.outcome = "failure"
            case.message = f"conflict: {p['evidence'] or 'does not apply'}"
            case.text = "\n\n".join(f"{h['file']} hunk #{h['hunk']}\n{h['text']}" for h in hunks)
        elif p["apply_verdict"] in (None, "not-tried"):
            case.outcome = "skipped"
            case.message = "not tried (apply stage did not reach it)"
        suite.cases.append(case)
    return suite


def _build_suite(summary: dict[str, Any]) -> Suite:
    suite = Suite("build")
    for b in summary["builds"]:
        errors = b["errors"]
        case = Case(
            classname="seriesgate.build",
            name=b["name"],
            file=errors[0]["file"] if errors else "",
            time=b["time"],
            out=f"commit {b['commit']}\n{b['configure_line']}",
        )
        if not b["ok"]:
            case.outcome = "failure"
            case.message = (
                f"{errors[0]['file']}:{errors[0]['line']}: {errors[0]['message']}"
                if errors
                else f"build {b['name']} failed"
            )
            case.text = "\n".join(f"{e['file']}:{e['line']}: {e['message']}" for e in errors)
            case.text = case.text or b.get("log_excerpt", "")
        suite.cases.append(case)
    for p in summary["patches"]:
        if p["builds"] is None:
            continue
        errs = p["build_errors"]
        case = Case(
            classname="seriesgate.build.each-patch",
            name=f"{patch_number(p)} {p['subject']}",
            file=errs[0]["file"] if errs else "",
        )
        if not p["builds"]:
            case.outcome = "failure"
            case.message = "does not build at this patch"
            case.text = "\n".join(f"{e['file']}:{e['line']}: {e['message']}" for e in errs)
        suite.cases.append(case)
    return suite


def _checkpatch_suite(summary: dict[str, Any]) -> Suite:
    suite = Suite("checkpatch")
    for p in summary["patches"]:
        c = p.get("checkpatch")
        if not c:
            continue
        case = Case(
            classname="seriesgate.checkpatch",
            name=f"{patch_number(p)} {p['subject']}",
            file=(p["files"] or [""])[0],
            out="\n".join(c["messages"]),
        )
        if c["errors"]:
            case.outcome = "failure"
            case.message = f"{c['errors']} errors, {c['warnings']} warnings"
            case.text = "\n".join(c["messages"])
        suite.cases.append(case)
    return suite


def _claims_suite(summary: dict[str, Any]) -> Suite:
    suite = Suite("claims")
    # the repaired build's claims (our repair of the series, not the author's) beside them
    claims = [("seriesgate.claims", "patched", c) for c in summary["claims"]]
    claims += [
        ("seriesgate.claims.repaired", "repaired", c) for c in summary.get("claims_repaired") or []
    ]
    for classname, build, c in claims:
        case = Case(
            classname=classname,
            name=c["claim"],
            out=f"verdict: {c['verdict']}\nbaseline: {c['baseline']}\n{build}: {c[build]}\n"
            f"tests: {', '.join(c['tests'])}",
        )
        if c["verdict"] == "regressed":
            case.outcome = "failure"
            case.message = f"regressed (baseline: {c['baseline']}; {build}: {c[build]})"
        elif c["verdict"] == "undecided":
            case.outcome = "error"
            case.message = "could not decide"
        elif c["verdict"] == "not-run":
            case.outcome = "skipped"
            case.message = "not run"
        suite.cases.append(case)
    return suite


def _functional_suite(summary: dict[str, Any]) -> Suite:
    suite = Suite("functional")
    for t in summary["tests"]:
        cls, _, method = t["name"].rpartition(".")
        case = Case(
            classname=f"functional.{t['build']}.{cls or t['name']}",
            name=method or t["name"],
            file=t["file"],
            time=t["time"],
            out="\n".join(
                filter(
                    None,
                    [
                        f"tags: {', '.join(t['tags'])}",
                        f"claim: {t['claim']} (expect {t['direction']})" if t["claim"] else "",
                        f"attempts: {t['attempts']}" + (" (flaky)" if t["flaky"] else ""),
                        measurements_text(t["measurements"], limit=50),
                        f"logs: {t['logdir']}" if t["logdir"] else "",
                    ],
                )
            ),
        )
        crash = t["crash"]
        expected = (
            t["build"] == "baseline"
            and t["direction"] == "fixed-by-series"
            and t["status"] == "FAIL"
            and not crash
        )
        if expected:
            # what the series fixes fails before it: that is the expected outcome, not red
            case.out += f"\nexpected failure on baseline (fixed-by-series): {t['fail_reason']}"
        elif crash:
            case.outcome = "failure"
            case.message = f"{crash['binary']} died on {crash['signal']}"
            case.text = "\n".join(crash["frames"]) + "\n" + crash.get("log_excerpt", "")
        elif t["status"] == "FAIL":
            case.outcome = "failure"
            case.message = t["fail_reason"] or "FAIL"
            case.text = t.get("log_excerpt", "")
        elif t["status"] in ("ERROR", "INTERRUPTED"):
            case.outcome = "error"
            case.message = f"{t['status']}: {t['fail_reason']}"
            case.text = t.get("log_excerpt", "")
        elif t["status"] in ("SKIP", "CANCEL"):
            case.outcome = "skipped"
            case.message = t["fail_reason"] or t["status"]
        suite.cases.append(case)
    return suite


def render_junit(summary: dict[str, Any]) -> str:
    """junit.xml text for a summary."""
    suites = [
        _apply_suite(summary),
        _build_suite(summary),
        _checkpatch_suite(summary),
        _claims_suite(summary),
        _functional_suite(summary),
    ]
    root = ET.Element("testsuites", name=f"seriesgate {summary['series']['subject']}")
    for s in suites:
        counts = {o: sum(c.outcome == o for c in s.cases) for o in ("failure", "error", "skipped")}
        el = ET.SubElement(
            root,
            "testsuite",
            name=s.name,
            tests=str(len(s.cases)),
            failures=str(counts["failure"]),
            errors=str(counts["error"]),
            skipped=str(counts["skipped"]),
            time=f"{sum(c.time for c in s.cases):.2f}",
        )
        for c in s.cases:
            attrs = {"classname": c.classname, "name": c.name, "time": f"{c.time:.2f}"}
            if c.file:
                attrs["file"] = c.file
            tc = ET.SubElement(el, "testcase", attrs)
            if c.outcome != "pass":
                child = ET.SubElement(tc, c.outcome, message=_clean(c.message)[:1000])
                child.text = _clean(c.text) or None
            if c.out:
                ET.SubElement(tc, "system-out").text = _clean(c.out)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _clean(text: str) -> str:
    """XML 1.0 cannot carry most control characters (QEMU logs can contain them)."""
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)
