"""Where things live: the project, the shared cache, the offline series copies."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PATCHES_DIR = PROJECT_ROOT / "patches"
SHARED_SERIES_DIR = PROJECT_ROOT.parent / "shared" / "series"


def cache_dir() -> Path:
    """The cache outside the clone, shared by runs and CI (``$SERIESGATE_CACHE``)."""
    path = Path(os.environ.get("SERIESGATE_CACHE", Path.home() / ".cache" / "seriesgate"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_root() -> Path:
    """Root of per-run results directories (``$SERIESGATE_RESULTS``, default ./results)."""
    return Path(os.environ.get("SERIESGATE_RESULTS", PROJECT_ROOT / "results"))
