"""ci/gitlab-ci.yml: valid for GitLab (its CI JSON schema, offline), shell-valid, and aligned
with the current seriesgate CLI."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from seriesgate import proc
from seriesgate.cli import build_parser

PIPELINE = Path(__file__).resolve().parents[2] / "ci" / "gitlab-ci.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def load(text: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(text if text is not None else PIPELINE.read_text())
    return data


def gitlab_schema() -> dict[str, Any]:
    """The GitLab CI schema check-jsonschema vendors (no network)."""
    path = resources.files("check_jsonschema.builtin_schemas.vendor") / "gitlab-ci.json"
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def schema_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(gitlab_schema())
    return [e.message for e in validator.iter_errors(doc)]


def test_valid_against_gitlab_schema_with_check_jsonschema() -> None:
    result = proc.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.gitlab-ci", PIPELINE], check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_valid_against_gitlab_schema_in_process_and_the_check_can_fail() -> None:
    assert schema_errors(load()) == []
    broken = load()
    broken["seriesgate:report"]["allow_failure"] = {"exit_codes": "two"}
    broken["seriesgate:build"]["scripts"] = broken["seriesgate:build"].pop("script")
    assert len(schema_errors(broken)) >= 2


def jobs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Concrete jobs with their ``extends`` chains resolved (later keys win, GitLab-style)."""

    def resolve(name: str) -> dict[str, Any]:
        job = doc[name]
        parents = job.get("extends", [])
        merged: dict[str, Any] = {}
        for parent in [parents] if isinstance(parents, str) else parents:
            merged.update(resolve(parent))
        merged.update({k: v for k, v in job.items() if k != "extends"})
        return merged

    reserved = {"variables", "stages", "default", "include", "workflow"}
    return {
        name: resolve(name) for name in doc if not name.startswith(".") and name not in reserved
    }


def test_shape_of_the_pipeline() -> None:
    doc = load()
    assert doc["stages"] == ["apply", "build", "test", "report"]
    assert "SERIESGATE_MSGID" in doc["variables"]
    assert doc["variables"]["SERIESGATE_CACHE"] == "$CI_PROJECT_DIR/.cache/seriesgate"
    js = jobs(doc)
    assert set(js) == {
        "seriesgate:run-vm",
        "seriesgate:run-host",
        "seriesgate:apply",
        "seriesgate:build",
        "seriesgate:test",
        "seriesgate:report",
    }
    for name, job in js.items():
        assert job["cache"]["paths"] == [".cache/seriesgate/"], name
        assert "results/" in job["artifacts"]["paths"], name
    assert js["seriesgate:run-host"]["tags"] == ["vdpa-sim"]
    assert js["seriesgate:run-host"]["variables"]["SERIESGATE_ENV"] == "host"
    assert js["seriesgate:run-vm"]["variables"]["SERIESGATE_ENV"] == "vm"
    # exit 2 (could not decide) is a warning; exit 1 (gate fails) fails the job
    for name in ("seriesgate:run-vm", "seriesgate:run-host", "seriesgate:report"):
        assert js[name]["allow_failure"] == {"exit_codes": [2]}, name
        assert js[name]["artifacts"]["reports"]["junit"].endswith("/junit.xml")
    # scale-out: the build's binaries travel as artifacts; tests split build x group
    assert ".cache/seriesgate/bin/" in js["seriesgate:build"]["artifacts"]["paths"]
    matrix = js["seriesgate:test"]["parallel"]["matrix"]
    assert matrix == [
        {
            "SERIESGATE_BUILD": ["baseline", "patched"],
            "SERIESGATE_TEST_GROUP": ["quick", "core", "slow"],
        }
    ]
    assert js["seriesgate:test"]["needs"] == ["seriesgate:build"]
    assert {n["job"] for n in js["seriesgate:report"]["needs"]} == {
        "seriesgate:build",
        "seriesgate:test",
    }
    assert js["seriesgate:report"]["rules"][0]["when"] == "always"


def _script(job: dict[str, Any]) -> str:
    lines = [*job.get("before_script", []), *job["script"]]
    return "\n".join(lines)


def test_job_scripts_are_valid_shell() -> None:
    for name, job in jobs(load()).items():
        result = proc.run(["bash", "-n"], input=_script(job), check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        result = proc.run(["sh", "-n"], input=_script(job), check=False)
        assert result.returncode == 0, f"{name} (POSIX sh): {result.stderr}"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_commands_and_flags_exist_in_the_cli() -> None:
    subs = _subcommands()
    used = set()
    for name, job in jobs(load()).items():
        for line in _script(job).splitlines():
            line = line.strip()
            if not line.startswith("seriesgate "):
                continue
            # ${VAR:+--flag "$VAR"} -> --flag "$VAR": optional flags are checked too
            words = shlex.split(re.sub(r"\$\{\w+:\+([^}]*)\}", r"\1", line))
            command = words[1]
            assert command in subs, f"{name}: no command {command!r}"
            options = {s for a in subs[command]._actions for s in a.option_strings}
            for flag in (w for w in words[2:] if w.startswith("--")):
                assert flag in options, f"{name}: seriesgate {command} has no {flag}"
            used.add((command, *sorted(w for w in words[2:] if w.startswith("--"))))
    assert {u[0] for u in used} == {"run", "apply", "build", "functional", "report"}
    assert ("run", "--env", "--out", "--tags") in used


def test_functional_flags_built_in_the_test_job_exist() -> None:
    job = jobs(load())["seriesgate:test"]
    options = {s for a in _subcommands()["functional"]._actions for s in a.option_strings}
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", _script(job)))
    flags -= {"--depth", "--branch", "--no-install-recommends"}  # git/apt flags
    assert flags <= options | {"--mbox", "--base"}, flags - options


@pytest.mark.parametrize("mode", ["single", "scale-out"])
def test_rules_select_one_shape(mode: str) -> None:
    js = jobs(load())
    chosen = {n for n, j in js.items() if f'$SERIESGATE_MODE == "{mode}"' in j["rules"][0]["if"]}
    if mode == "single":
        assert chosen == {"seriesgate:run-vm", "seriesgate:run-host"}
    else:
        assert chosen == {
            "seriesgate:apply",
            "seriesgate:build",
            "seriesgate:test",
            "seriesgate:report",
        }
