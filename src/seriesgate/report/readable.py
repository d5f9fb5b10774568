"""Measurements as a person reads them, and the one number that decides each claim.

A test's ``measurements.json`` is what the test measured, keyed by the test's own names
(``traffic``: counter deltas, ``maps_in_downtime``, ``guest_pause_ms``, ``qmp_rtt_migration``,
...). :func:`measurement_parts` turns them into short phrases (``traffic 8/8 frames``, ``maps
in downtime 2 of 2``, ``guest pause 1301 ms``); :func:`deciding_number` picks, for one run,
the number its claim turns on (``guest-RAM maps in the downtime window: 2 of 2``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Keys shown another way (the timeline picture, the claim's reasons) or not worth a cell.
_HIDDEN = {
    "markers_ms_from_stop",
    "map_threads",
    "claim_reasons",
    "first_map_ms_from_stop",
    "last_map_end_ms_from_stop",
    "maps",
    "qmp_rtt_bound_ms",
    "qmp_rtt_samples",
    "resume_to_device_ready_ms",
    "map_busy_ms",
    "device_maps",
    "guest_map_bytes",
    "setup_ms",
    "maps_on_main_thread",
    "guest_maps",
    "left_guest_running",
}
_UNITS = (("_ms", "ms"), ("_s", "s"), ("_mb", "MB"), ("_seconds", "s"), ("_bytes", "B"))


def _label(key: str) -> tuple[str, str]:
    for suffix, unit in _UNITS:
        if key.endswith(suffix):
            return key[: -len(suffix)].replace("_", " "), unit
    return key.replace("_", " "), ""


def number(value: float, unit: str = "") -> str:
    """A number with its unit, as wide as it needs.

    >>> number(1301.4, "ms"), number(0.25, "s"), number(3, "")
    ('1301 ms', '0.25 s', '3')
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        text = str(value)
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def _is_traffic(value: Any) -> bool:
    return isinstance(value, dict) and "guest_tx_packets" in value and "guest_rx_packets" in value


def traffic_text(label: str, delta: dict[str, Any]) -> str:
    """Frames back of frames sent.

    >>> traffic_text("traffic", {"guest_tx_packets": 8, "guest_rx_packets": 8})
    'traffic 8/8 frames'
    """
    return f"{label} {delta['guest_rx_packets']}/{delta['guest_tx_packets']} frames"


def _rtt_text(label: str, stats: dict[str, Any]) -> str | None:
    if stats.get("max_ms") is None:
        return None
    return f"{label} max {number(float(stats['max_ms']), 'ms')} ({stats.get('count', '?')} samples)"


def _scalar(key: str, value: Any) -> str | None:
    label, unit = _label(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return f"{label} {'yes' if value else 'no'}"
    if isinstance(value, (int, float)):
        return f"{label} {number(value, unit)}"
    if isinstance(value, str):
        return f"{label} {value}" if len(value) <= 40 else f"{label} {value[:37]}..."
    if isinstance(value, list):
        short = all(isinstance(v, (int, float)) or (isinstance(v, str) and len(v) <= 12)
                    for v in value)  # fmt: skip
        if value and short and len(value) <= 4:
            return f"{label} " + ", ".join(str(v) for v in value)
        return f"{label}: {len(value)}"
    return None


def shared_guest_text(source: Any) -> str | None:
    """Which guest a test started from, when an earlier test of the job left it running.

    >>> shared_guest_text({"shared_from": "MigrationCorrectness.test_same_guest_mac_traffic",
    ...                    "vm": "destination", "tests_before": 1, "age_s": 21.4})
    'source: the destination MigrationCorrectness.test_same_guest_mac_traffic left running \
(its test 2, up 21 s)'
    """
    if not isinstance(source, dict) or not source.get("shared_from"):
        return None
    nth = int(source.get("tests_before", 0)) + 1
    age = float(source.get("age_s", 0))
    failed = f"; it failed its check: {source['check_failed']}" if "check_failed" in source else ""
    return (
        f"source: the {source.get('vm', 'guest')} {source['shared_from']} left running "
        f"(its test {nth}, up {age:.0f} s){failed}"
    )


def measurement_parts(m: dict[str, Any]) -> list[str]:
    """Readable phrases for a measurements dict, the telling ones first."""
    parts: list[str] = []
    seen: set[str] = set()

    def take(key: str, text: str | None) -> None:
        seen.add(key)
        if text:
            parts.append(text)

    crash = m.get("crash")
    if isinstance(crash, dict) and crash.get("signal"):
        vm = f" ({crash['vm']})" if crash.get("vm") else ""
        take("crash", f"crashed: {crash['signal']}{vm}")
    take("source_guest", shared_guest_text(m.get("source_guest")))
    if "maps_in_downtime" in m and "guest_maps" in m:
        take("maps_in_downtime", f"maps in downtime {m['maps_in_downtime']} of {m['guest_maps']}")
    if "maps_on_main_thread" in m and m.get("guest_maps"):
        take(
            "maps_on_main_thread", f"on main thread {m['maps_on_main_thread']} of {m['guest_maps']}"
        )
    for key, label in (
        ("qmp_rtt_source_running", "QMP RTT while the source runs"),
        ("qmp_rtt_stop_and_copy", "QMP RTT after the source stopped"),
        ("qmp_rtt_migration", "QMP RTT while migrating"),
    ):
        if isinstance(m.get(key), dict):
            take(key, _rtt_text(label, m[key]))
    for key in ("guest_pause_ms", "downtime_ms", "stop_to_resume_ms", "total_ms"):
        if isinstance(m.get(key), (int, float)):
            take(key, _scalar(key, m[key]))
    if isinstance(m.get("maps_per_phase"), dict) and m["maps_per_phase"]:
        phases = ", ".join(f"{k} {v}" for k, v in m["maps_per_phase"].items())
        take("maps_per_phase", f"maps per phase: {phases}")
    for key, value in m.items():
        if key in seen or key in _HIDDEN:
            continue
        if _is_traffic(value):
            take(key, traffic_text(_label(key)[0], value))
        elif isinstance(value, dict) and "max_ms" in value:
            take(key, _rtt_text(_label(key)[0], value))
        elif isinstance(value, dict):
            inner = measurement_parts(value)
            take(key, f"{_label(key)[0]}: {'; '.join(inner[:3])}" if inner else None)
        else:
            take(key, _scalar(key, value))
    return parts


# --- the number a claim turns on -------------------------------------------------------------


def _maps_in_downtime(m: dict[str, Any]) -> tuple[str, str] | None:
    if "maps_in_downtime" in m and "guest_maps" in m:
        return (
            "guest-RAM maps in the downtime window",
            f"{m['maps_in_downtime']} of {m['guest_maps']}",
        )
    return None


def _qmp_rtt(m: dict[str, Any]) -> tuple[str, str] | None:
    running = m.get("qmp_rtt_source_running")
    if isinstance(running, dict) and running.get("max_ms") is not None and m.get("guest_maps"):
        return "guest-RAM maps on the main thread; max QMP round trip while the source runs", (
            f"{m.get('maps_on_main_thread', '?')} of {m['guest_maps']}; "
            f"{number(float(running['max_ms']), 'ms')}"
        )
    # Results of before 2026-12-08: one bound over the whole migration.
    stats = m.get("qmp_rtt_migration")
    if isinstance(stats, dict) and stats.get("max_ms") is not None:
        return "max QMP round trip while mapping", number(float(stats["max_ms"]), "ms")
    return None


def _identity_maps(m: dict[str, Any]) -> tuple[str, str] | None:
    for key in ("passthrough_source", "svq_source"):
        sub = m.get(key)
        if isinstance(sub, dict) and "identity_maps" in sub and "guest_maps" in sub:
            return "guest-RAM maps at IOVA = GPA with x-svq=on", (
                f"{sub['identity_maps']} of {sub['guest_maps']}"
            )
    return None


def _problems(m: dict[str, Any]) -> tuple[str, str] | None:
    if isinstance(m.get("problems"), list):
        return "status-bit problems", str(len(m["problems"]))
    return None


DECIDERS: tuple[Callable[[dict[str, Any]], tuple[str, str] | None], ...] = (
    _qmp_rtt,  # only the QMP-responsiveness test samples it: that is what it decides on
    _maps_in_downtime,
    _identity_maps,
    _problems,
)


def deciding_number(run: dict[str, Any] | None) -> tuple[str | None, str]:
    """(what is measured, its value) for one test run; the value alone when it is a crash,
    no run or no telling measurement ("crash", "not run", "FAIL")."""
    if run is None:
        return None, "no result"
    if run.get("crash"):
        return None, "crash"
    m = run.get("measurements") or {}
    for decide in DECIDERS:
        found = decide(m)
        if found:
            return found
    if run["status"] in ("SKIP", "CANCEL"):
        return None, "not run"
    return None, run["status"]


def claim_numbers(
    summary: dict[str, Any], claim: dict[str, Any]
) -> tuple[str | None, dict[str, str]]:
    """The measure a claim turns on and its value per build (baseline, patched, repaired)."""
    runs = {(t["name"], t["build"]): t for t in summary["tests"]}
    builds = [b for b in ("baseline", "patched", "repaired") if any(k[1] == b for k in runs)]
    # the tests whose own verdict is the claim's decide it: their numbers first
    verdicts = {t["name"]: t["verdict"] for t in summary.get("test_verdicts", [])}
    names = sorted(claim["tests"], key=lambda n: verdicts.get(n) != claim["verdict"])
    for name in names:
        found = {b: deciding_number(runs.get((name, b))) for b in builds}
        labels = [label for label, _ in found.values() if label]
        if labels:
            return labels[0], {b: v for b, (_, v) in found.items()}
    name = claim["tests"][0] if claim["tests"] else ""
    return None, {b: deciding_number(runs.get((name, b)))[1] for b in builds}
