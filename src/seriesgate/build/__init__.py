"""build stage: baseline, every-patch, posted and patched QEMU builds; checkpatch."""

from seriesgate.build.builder import BuildInterrupted, build_all
from seriesgate.build.model import (
    BuildResult,
    BuildSet,
    CheckpatchResult,
    CompilerError,
    PatchBuild,
)

__all__ = [
    "BuildInterrupted",
    "BuildResult",
    "BuildSet",
    "CheckpatchResult",
    "CompilerError",
    "PatchBuild",
    "build_all",
]
