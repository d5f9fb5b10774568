"""series stage: fetch a series (and its prerequisites) with b4."""

from seriesgate.series.fetch import fetch_series_set
from seriesgate.series.model import FileStat, Patch, Series, SeriesSet

__all__ = ["FileStat", "Patch", "Series", "SeriesSet", "fetch_series_set"]
