"""Downtime benchmark: statistics, a matplotlib plot, and the report section.

Input: the bench runner's JSON list, one object per migration::

    {"build": "baseline"|"patched"|"repaired", "guest_mem_mb": 1024, "run": 1, "downtime_ms": 120.5,
     "total_ms": 1400.0, "stop_to_resume_ms": 310.2, "maps_in_downtime": 12}
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seriesgate.errors import InputError

if TYPE_CHECKING:
    from seriesgate.report.document import Block

METRICS = (
    ("downtime_ms", "downtime (query-migrate)", "ms"),
    # What the guest really sees: the destination's vCPUs run only after vm_start, device
    # start (and, before the series, the pinning of guest RAM) included.
    ("guest_pause_ms", "guest pause (STOP → destination completed)", "ms"),
    ("stop_to_resume_ms", "source STOP → destination RESUME", "ms"),
    ("total_ms", "total migration time", "ms"),
    ("maps_in_downtime", "guest-RAM maps inside downtime", ""),
)
REQUIRED = ("build", "guest_mem_mb", "run", "downtime_ms")

# What vdpa_sim cannot show, next to the series' authors' hardware figures.
VDPA_SIM_LIMITS = (
    "vdpa_sim is a software device: it pins and maps guest memory far faster than a real "
    "vDPA NIC (whose IOMMU/firmware mapping of a large guest takes seconds), so the downtime "
    "this series saves is small here in absolute terms. These numbers show the direction "
    "(maps moved out of the downtime window), not the size of the gain on hardware."
)
# Reference figures of the series' authors on real hardware, keyed by cover message-id.
# Not measured by seriesgate; shown only next to the numbers it measured.
AUTHOR_FIGURES: dict[str, str] = {
    "20231128104303.3314000-1-eperezma@redhat.com": (
        "The series' authors report on mlx5 hardware, 128 GB guest: downtime 20–30 s "
        "before the series, about 5 s with it. (This figure is not in the RFC v2 cover "
        "letter, which says the series was tested with vdpa_sim only.)"
    ),
}


def load_bench(path: Path) -> list[dict[str, Any]]:
    """Read and check a bench JSON list (see the module docstring)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read bench results {path}: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InputError(f"{path}: bench results must be a JSON list of objects")
    for i, row in enumerate(data):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise InputError(f"{path}: bench run #{i} lacks {', '.join(missing)}")
    return data


def bench_stats(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median, min and max of every metric per (build, guest RAM), sorted by RAM then build."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((int(r["guest_mem_mb"]), str(r["build"])), []).append(r)
    out = []
    for (mem, build), rows in sorted(groups.items()):
        entry: dict[str, Any] = {"build": build, "guest_mem_mb": mem, "runs": len(rows)}
        errors = [str(r["error"]) for r in rows if r.get("error")]
        entry["failed"] = len(errors)
        entry["first_error"] = errors[0] if errors else ""
        for key, _, _ in METRICS:
            values = [float(r[key]) for r in rows if r.get(key) is not None]
            if values:
                entry[key] = {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                }
        out.append(entry)
    return out


# Plotted panels: the three times and the series' own measure (maps inside the downtime).
PLOTTED = ("downtime_ms", "guest_pause_ms", "stop_to_resume_ms", "maps_in_downtime")
# Build order in legends and tables; a repaired build is labelled as ours, never the author's.
BUILD_ORDER = ("baseline", "patched", "repaired")
BUILD_LABELS = {"repaired": "repaired (our repair)"}


def build_label(build: str, stats: list[dict[str, Any]]) -> str:
    """The legend entry of ``build``: its name, and how many of its runs failed, if any.

    >>> build_label("repaired", [{"build": "repaired", "runs": 3, "failed": 0}])
    'repaired (our repair)'
    >>> build_label("patched", [{"build": "patched", "runs": 2, "failed": 2}] * 2)
    'patched: 4 of 4 runs failed'
    """
    rows = [s for s in stats if s["build"] == build]
    runs, failed = sum(s["runs"] for s in rows), sum(s["failed"] for s in rows)
    label = BUILD_LABELS.get(build, build)
    return f"{label}: {failed} of {runs} runs failed" if failed else label


def _builds(stats: list[dict[str, Any]]) -> list[str]:
    present = {s["build"] for s in stats}
    return [b for b in BUILD_ORDER if b in present] + sorted(present - set(BUILD_ORDER))


def plot_bench(runs: list[dict[str, Any]], path: Path) -> Path:
    """Median with min–max spread per build versus guest RAM, one panel per metric.

    Every build is in every legend, a build whose runs all failed (the posted series'
    destination crashing) with that count, so a missing line is never a silent gap.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    stats = bench_stats(runs)
    panels = [m for m in METRICS if m[0] in PLOTTED and any(m[0] in s for s in stats)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (key, title, unit) in zip(axes[0], panels, strict=True):
        for build in _builds(stats):
            rows = [s for s in stats if s["build"] == build and key in s]
            mems = [s["guest_mem_mb"] for s in rows]
            med = [s[key]["median"] for s in rows]
            low = [s[key]["median"] - s[key]["min"] for s in rows]
            high = [s[key]["max"] - s[key]["median"] for s in rows]
            label = build_label(build, stats)
            if rows:
                ax.errorbar(mems, med, yerr=[low, high], marker="o", capsize=4, label=label)
            else:
                ax.plot([], [], linestyle="none", marker="x", label=label)
        ax.set_title(title)
        ax.set_xlabel("guest RAM (MB)")
        ax.set_ylabel(unit or "count")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        order = [build_label(b, stats) for b in _builds(stats)]
        pairs = sorted(zip(labels, handles, strict=True), key=lambda lh: order.index(lh[0]))
        ax.legend([h for _, h in pairs], [label for label, _ in pairs])
    fig.suptitle("Migration with vdpa_sim: median and min–max over runs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(entry: dict[str, Any], key: str) -> str:
    m = entry.get(key)
    if not m:
        return "-"
    return f"{m['median']:.4g} ({m['min']:.4g}–{m['max']:.4g})"


def bench_blocks(summary: dict[str, Any], plot: Path | None) -> list[Block]:
    """The report's downtime benchmark section."""
    from seriesgate.report.document import Bullets, Heading, Image, Para, Table

    stats = bench_stats(summary["bench"])
    blocks: list[Block] = [
        Heading(2, "Downtime benchmark"),
        Para("Median (min–max) per build and guest RAM."),
        Table(
            ("guest RAM", "build", "runs", *(title for _, title, _ in METRICS), "failed runs"),
            tuple(
                (
                    f"{s['guest_mem_mb']} MB",
                    BUILD_LABELS.get(s["build"], s["build"]),
                    str(s["runs"]),
                    *(_fmt(s, key) for key, _, _ in METRICS),
                    f"{s['failed']}: {s['first_error']}" if s["failed"] else "0",
                )
                for s in stats
            ),
        ),
    ]
    if plot is not None:
        blocks.append(Image(plot, "downtime benchmark plot"))
    notes = [VDPA_SIM_LIMITS]
    reference = AUTHOR_FIGURES.get(summary["series"]["message_id"])
    if reference:
        notes.append(reference)
    notes += [f"Cover letter: “{line}”" for line in summary["series"].get("cover_testing", [])]
    blocks.append(Heading(3, "What vdpa_sim cannot show"))
    blocks.append(Bullets(tuple(notes)))
    return blocks
