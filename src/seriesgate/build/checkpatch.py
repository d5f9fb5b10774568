"""Run the tree's own ``scripts/checkpatch.pl`` on each series patch and read its verdict.

Results are cached by the patch text and the checkpatch.pl script: re-running
with nothing changed does not start perl again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict
from pathlib import Path

from seriesgate.build.model import CheckpatchResult
from seriesgate.errors import InfraError
from seriesgate.proc import run

_TOTAL = re.compile(
    r"^total: (?P<errors>\d+) errors, (?P<warnings>\d+) warnings, \d+ lines checked"
)
_REPORT = re.compile(r"^(?P<kind>ERROR|WARNING|CHECK): (?P<text>.+)$")
_WHERE = re.compile(r"^#\d+: FILE: (?P<where>\S+?):?$")

MAX_MESSAGES = 5
CHECKPATCH_TIMEOUT = 120.0


def parse_checkpatch(output: str, *, limit: int = MAX_MESSAGES) -> tuple[int, int, tuple[str, ...]]:
    """``(errors, warnings, first messages)`` from checkpatch.pl output.

    Messages read ``ERROR: text (file:line)`` when checkpatch names the place.
    The counts come from checkpatch's own ``total:`` line; without one the
    output is not a checkpatch report and ValueError is raised.
    """
    errors = warnings = -1
    messages: list[str] = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if total := _TOTAL.match(line):
            errors, warnings = int(total["errors"]), int(total["warnings"])
        elif (report := _REPORT.match(line)) and len(messages) < limit:
            text = f"{report['kind']}: {report['text'].strip()}"
            following = lines[i + 1] if i + 1 < len(lines) else ""
            if where := _WHERE.match(following):
                text += f" ({where['where']})"
            messages.append(text)
    if errors < 0:
        raise ValueError("no 'total:' line: not checkpatch.pl output")
    return errors, warnings, tuple(messages)


def _cache_key(patch: str, script: Path) -> str:
    digest = hashlib.sha256()
    digest.update(script.read_bytes())
    digest.update(b"\0")
    digest.update(patch.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def run_checkpatch(
    patch: str,
    *,
    tree: Path,
    index: int,
    subject: str,
    cache: Path,
    log: Path,
) -> CheckpatchResult:
    """Check one patch (mail text) with ``tree``'s checkpatch.pl; output kept in ``log``."""
    script = tree / "scripts" / "checkpatch.pl"
    if not script.is_file():
        raise InfraError(f"{script} missing: the tree has no checkpatch.pl")
    key = _cache_key(patch, script)
    cached = cache / f"{key}.json"
    log.parent.mkdir(parents=True, exist_ok=True)
    if cached.is_file():
        data = json.loads(cached.read_text())
        log.write_text(data["output"])
        errors, warnings, messages = parse_checkpatch(data["output"])
    else:
        # Exit status 1 means "style problems": that is the result, not a failure.
        proc = run(
            ["perl", script, "--color=never", "-"],
            cwd=tree,
            input=patch,
            check=False,
            timeout=CHECKPATCH_TIMEOUT,
            what="checkpatch.pl",
        )
        output = proc.stdout + proc.stderr
        log.write_text(output)
        try:
            errors, warnings, messages = parse_checkpatch(output)
        except ValueError:
            raise InfraError(
                f"checkpatch.pl on patch {index} gave no report (exit {proc.returncode})",
                hint=f"see {log}",
            ) from None
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"output": output}))
        os.replace(tmp, cached)
    return CheckpatchResult(
        index=index, subject=subject, errors=errors, warnings=warnings, messages=messages
    )


def checkpatch_dict(result: CheckpatchResult) -> dict[str, object]:
    """JSON form for build.json."""
    return asdict(result)
