"""The migration timeline picture: when the destination maps guest RAM, against STOP/RESUME.

Two halves:

- :func:`extract` (at summary time, from a migration test's directory): the test's first
  ``migration-N.json`` record and the destination's trace, placed on the timeline by
  :func:`seriesgate.functional.timeline.build_timeline`, flattened to a small JSON dict kept
  in the summary (``tests[i]["timeline"]``) so ``seriesgate report --from`` re-draws it. A
  destination that crashed leaves no record (the test stopped at the crash): its trace alone
  gives the incoming setup and the last event before the crash.
- :func:`plot` (at report time): one PNG per migration test, baseline above patched (and our
  repaired build, when there is one), on a time axis from the destination's incoming setup to
  its ``MIGRATION completed``; marks for source STOP, destination RESUME, device start
  (DRIVER_OK) and MIGRATION completed, the downtime window shaded, every guest-RAM DMA map a
  bar (start, duration; size written beside it) coloured by the thread that issued it. A run
  whose destination crashed ends at the crash, marked with its signal.

Timeline dict (seconds relative to ``t0``, the destination's incoming setup)::

    {"record": "migration-1.json", "status": "completed", "end": 14.96,
     "markers": {"stop": 9.39, "resume": 10.15, "driver_ok": 14.82, "completed": 14.96},
     "maps": [{"start": 11.12, "duration": 0.013, "size": 798720, "thread": "main"}, ...],
     "crash": null | {"signal": "SIGSEGV", "at": 0.71, "vm": "destination",
                      "after": "loadvm_state_setup"}}
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

MARKERS = (
    # key, Markers field, label in the picture, colour of its line
    ("stop", "source_stop", "source STOP", "#d62728"),
    ("resume", "dest_resume", "destination RESUME", "#9467bd"),
    ("driver_ok", "device_ready", "device start (DRIVER_OK)", "#2ca02c"),
    ("completed", "dest_completed", "destination MIGRATION completed", "#000000"),
)
THREAD_COLOURS = {"main": "#1f77b4", "map thread": "#ff7f0e"}
OTHER_COLOUR = "#7f7f7f"
BUILD_ORDER = ("baseline", "patched", "repaired")
BUILD_LABELS = {
    "baseline": "baseline",
    "patched": "patched (the series as posted)",
    "repaired": "repaired (our repair, not the author's series)",
}
_RECORD = re.compile(r"^migration-(\d+)\.json$")


def _records(data: Path) -> list[Path]:
    found = [
        (int(m.group(1)), p) for p in data.glob("migration-*.json") if (m := _RECORD.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def _crash(data: Path) -> dict[str, Any] | None:
    for path in sorted(data.glob("*.crash.json")):
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(obj, dict):
            return {
                "signal": str(obj.get("signal", "")),
                "vm": path.name.removesuffix(".crash.json"),
            }
    return None


def _rel(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 6)


def extract(logdir: Path | str | None) -> dict[str, Any] | None:
    """The timeline dict of one migration test run (None: nothing to draw from)."""
    from seriesgate.functional.migration import MigrationRecord
    from seriesgate.functional.timeline import QmpEvent, build_timeline
    from seriesgate.functional.trace import read_trace

    if logdir is None:
        return None
    data = Path(logdir) / "data"
    if not data.is_dir():
        return None
    crash = _crash(data)
    records = _records(data)
    try:
        if records:
            rec = MigrationRecord.from_json(
                json.loads(records[0].read_text(encoding="utf-8")), base=data
            )
            trace = read_trace(rec.dest_trace) if rec.dest_trace else []
            events: list[QmpEvent] = rec.events
            pid = rec.dest_pid
            name, status = records[0].name, rec.status
        elif crash is not None and (data / f"{crash['vm']}.trace").is_file():
            trace = read_trace(data / f"{crash['vm']}.trace")
            events, pid, name, status = [], None, f"{crash['vm']}.trace", "crashed"
        else:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    tl = build_timeline(events, trace, pid=pid)
    m = tl.markers
    # incoming setup: the destination's MIGRATION setup event, else its own trace of it
    t0 = m.dest_setup
    if t0 is None:
        t0 = next(
            (
                ev.timestamp
                for ev in trace
                if ev.name == "migrate_set_state" and ev.timestamp is not None
            ),
            m.load_setup,
        )
    if t0 is None:
        return None
    markers = {key: _rel(getattr(m, attr), t0) for key, attr, _, _ in MARKERS}
    maps: list[dict[str, Any]] = []
    for mp in tl.maps:
        if mp.start is None:
            continue
        end = mp.end if mp.end is not None else mp.start
        if tl.main_tid is None or mp.tid is None:
            thread = "unknown"
        else:
            thread = "main" if mp.tid == tl.main_tid else "map thread"
        maps.append(
            {
                "start": round(mp.start - t0, 6),
                "duration": round(max(0.0, end - mp.start), 6),
                "size": mp.size,
                "thread": thread,
            }
        )
    out_crash: dict[str, Any] | None = None
    if crash is not None:
        # the trace's last event: the moment closest to the crash that the run recorded
        seen = [ev for ev in trace if ev.timestamp is not None and ev.timestamp >= t0]
        last = max(seen, key=lambda ev: ev.timestamp or 0.0, default=None)
        at = last.timestamp if last is not None and last.timestamp is not None else t0
        out_crash = {
            "signal": crash["signal"],
            "at": round(at - t0, 6),
            "vm": crash["vm"],
            "after": last.name if last is not None else None,  # its last traced event
        }
    ends = [v for v in markers.values() if v is not None]
    ends += [float(mp["start"]) + float(mp["duration"]) for mp in maps]
    if out_crash is not None:
        ends.append(out_crash["at"])
    end = markers["completed"] if markers["completed"] is not None else max(ends, default=0.0)
    return {
        "record": name,
        "status": status,
        "end": round(end, 6),
        "markers": markers,
        "maps": maps,
        "crash": out_crash,
    }


def fill(summary: dict[str, Any], base_dir: Path | None = None) -> bool:
    """Extract the timeline of every migration test run that lacks one (summaries written
    before timelines existed) from its directory (a relative one is relative to
    ``base_dir``, the results directory); True when any was added."""
    added = False
    for t in summary.get("tests", []):
        if "timeline" in t or "migration" not in t.get("tags", []):
            continue
        logdir = t.get("logdir")
        if logdir and base_dir is not None and not Path(logdir).is_absolute():
            logdir = Path(base_dir) / logdir
        t["timeline"] = extract(logdir)
        added = added or t["timeline"] is not None
    return added


def timelines(summary: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """test name -> build -> timeline, for the tests that have one on some build."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for t in summary.get("tests", []):
        if t.get("timeline"):
            out.setdefault(t["name"], {})[t["build"]] = t["timeline"]
    return {
        name: dict(sorted(runs.items(), key=lambda kv: _build_rank(kv[0])))
        for name, runs in out.items()
    }


def _build_rank(build: str) -> int:
    return BUILD_ORDER.index(build) if build in BUILD_ORDER else len(BUILD_ORDER)


def image_name(test: str) -> str:
    """The picture's file name in the results directory.

    >>> image_name("MigrationMapOrdering.test_maps_before_switchover")
    'timeline-MigrationMapOrdering.test_maps_before_switchover.png'
    """
    return "timeline-" + re.sub(r"[^A-Za-z0-9._-]+", "_", test) + ".png"


def size_text(n: int) -> str:
    """A map's size in binary units.

    >>> size_text(267386880), size_text(798720), size_text(4096)
    ('255 MiB', '780 KiB', '4 KiB')
    """
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.0f} {unit}"
    return f"{n} B"


def plot(test: str, runs: dict[str, dict[str, Any]], path: Path) -> Path:
    """Draw one test's timelines (one panel per build, shared time axis) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    builds = list(runs)
    rows = [max(1, len(runs[b]["maps"])) for b in builds]
    fig, axes = plt.subplots(
        len(builds),
        1,
        figsize=(10, 1.6 + sum(0.3 * r + 0.8 for r in rows)),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [r + 1.5 for r in rows]},
    )
    # Every map's end too: a map still running at the run's last event (device start) is
    # drawn whole, its label inside the figure.
    x_end = max(
        max(
            tl["end"],
            tl["crash"]["at"] if tl.get("crash") else 0.0,
            *(mp["start"] + mp["duration"] for mp in tl["maps"]),
        )
        for tl in runs.values()
    )
    x_end = x_end if x_end > 0 else 1.0
    threads: set[str] = set()
    for ax, build in zip(axes[:, 0], builds, strict=True):
        tl = runs[build]
        mk = tl["markers"]
        crash = tl.get("crash")
        n = max(1, len(tl["maps"]))
        if mk.get("stop") is not None:
            hi = mk.get("completed") if mk.get("completed") is not None else tl["end"]
            ax.axvspan(mk["stop"], hi, color="#d62728", alpha=0.08, lw=0)
        for key, _, _, colour in MARKERS:
            if mk.get(key) is not None:
                ax.axvline(mk[key], color=colour, lw=1.2, ls="--")
        for i, mp in enumerate(tl["maps"]):
            colour = THREAD_COLOURS.get(mp["thread"], OTHER_COLOUR)
            threads.add(mp["thread"])
            width = max(mp["duration"], x_end / 600)  # a sub-pixel map is still seen
            ax.broken_barh([(mp["start"], width)], (i + 0.15, 0.7), color=colour)
            if mp["start"] + width > 0.85 * x_end:  # no room right of it: label on the left
                ax.text(mp["start"], i + 0.5, f"{size_text(mp['size'])} ", fontsize=7,
                        va="center", ha="right")  # fmt: skip
            else:
                ax.text(mp["start"] + width, i + 0.5, f" {size_text(mp['size'])}", fontsize=7,
                        va="center", ha="left")  # fmt: skip
        if crash is not None:
            # the run ends here: nothing after the crash is data
            ax.axvspan(crash["at"], x_end * 1.04, color="#bbbbbb", alpha=0.35, lw=0)
            ax.axvline(crash["at"], color="#d62728", lw=2.5)
            after = f" after {crash['after']}" if crash.get("after") else ""
            # Left of the line when the crash is late: the label would run off the figure
            # (and tight_layout gave up with a warning on the cold run of 2026-12-07).
            late = crash["at"] > 0.5 * x_end
            label = f"{crash['vm']} died on {crash['signal']}{after}"
            ax.text(crash["at"], n * 0.5, f"{label}  " if late else f"  {label}",
                    color="#d62728", fontsize=9, fontweight="bold", va="center",
                    ha="right" if late else "left")  # fmt: skip
        if not tl["maps"]:
            why = "no guest-RAM map before the crash" if crash else "no guest-RAM map traced"
            ax.text(0.99, 0.12, why, transform=ax.transAxes, fontsize=8, color="#555", ha="right")
        ax.set_ylim(0, n)
        ax.set_yticks([])
        ax.set_title(BUILD_LABELS.get(build, build), fontsize=9, loc="left")
        ax.grid(True, axis="x", alpha=0.3)
    axes[-1, 0].set_xlim(0, x_end * 1.04)
    axes[-1, 0].set_xlabel("seconds since the destination's incoming setup")
    handles: list[Any] = [
        Patch(color=THREAD_COLOURS.get(t, OTHER_COLOUR), label=f"guest-RAM map ({t} thread)"
              if t != "map thread" else "guest-RAM map (map thread)")
        for t in sorted(threads)
    ]  # fmt: skip
    handles += [Line2D([], [], color=c, ls="--", label=label) for _, _, label, c in MARKERS]
    handles.append(Patch(color="#d62728", alpha=0.15, label="downtime (STOP to completed)"))
    fig.legend(handles=handles, loc="lower center", fontsize=7, ncol=4, frameon=False)
    fig.suptitle(f"{test}: the destination's guest-RAM DMA maps", fontsize=10)
    legend_rows = (len(handles) + 3) // 4
    fig.tight_layout(rect=(0, 0.03 + 0.035 * legend_rows, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_all(summary: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Every test's picture into ``out_dir``; test name -> path relative to ``out_dir``."""
    out = {}
    for test, runs in timelines(summary).items():
        rel = Path(image_name(test))
        plot(test, runs, out_dir / rel)
        out[test] = rel
    return out
