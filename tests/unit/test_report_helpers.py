"""Stage results for report tests, built from the typed models (no tests in this module).

The series data is the real default series (subjects and message-ids of RFC v2 and its
prerequisite); the cover letter comes from tests/unit/data/report/rfc-v2-cover.mbox, a copy
of the real posting.
"""

from __future__ import annotations

from pathlib import Path

from seriesgate.build.model import (
    BuildResult,
    BuildSet,
    CheckpatchResult,
    CompilerError,
    PatchBuild,
)
from seriesgate.functional import model as fm
from seriesgate.functional.model import Crash, Direction, FunctionalResults, Status
from seriesgate.series.model import Patch, Series, SeriesSet
from seriesgate.testenv.model import GuestImage, Mode, TestEnv
from seriesgate.tree.model import (
    AppliedTree,
    ApplyResult,
    BaseTree,
    FailingHunk,
    Role,
    Verdict,
)

DATA = Path(__file__).parent / "data" / "report"
COVER_MBOX = DATA / "rfc-v2-cover.mbox"
COVER_ID = "20231128104303.3314000-1-eperezma@redhat.com"
AUTHOR = "Eugenio Pérez <eperezma@redhat.com>"
SUBJECTS = (
    "vdpa: do not set virtio status bits if unneeded",
    "vdpa: make batch_begin_once early return",
    "vdpa: merge _begin_batch into _batch_begin_once",
    "vdpa: extract out _dma_end_batch from _listener_commit",
    "vdpa: factor out stop path of vhost_vdpa_dev_start",
    "vdpa: check for iova tree initialized at net_client_start",
    "vdpa: set backend capabilities at vhost_vdpa_init",
    "vdpa: add vhost_vdpa_load_setup",
    "vdpa: add vhost_vdpa_net_load_setup NetClient callback",
    "virtio_net: register incremental migration handlers",
)
# what the apply ladder reported on Debian's 10.0.13 source (see ../shared/series/README.md)
APPLY = ("already-present", "clean", "clean", "clean", "fuzz", "clean", "clean", "fuzz", "fuzz")
APPLY += ("fuzz",)


def patch_id(i: int) -> str:
    return f"20231128104303.3314000-{i + 1}-eperezma@redhat.com"


def series_set(*, cover_mbox: Path = COVER_MBOX, subject: str | None = None) -> SeriesSet:
    patches = tuple(
        Patch(
            index=i,
            total=10,
            subject=s,
            message_id=patch_id(i),
            author=AUTHOR,
            date="Tue, 28 Nov 2023 11:42:54 +0100",
            files=("hw/virtio/vhost-vdpa.c",),
            diffstat=(),
        )
        for i, s in enumerate(SUBJECTS, 1)
    )
    target = Series(
        name="vdpa-map-at-load-setup",
        message_id=COVER_ID,
        version=2,
        subject=subject or "Map memory at destination .load_setup in vDPA-net migration",
        author=AUTHOR,
        cover="Only tested with vdpa_sim. I'm sending this before full benchmark, as some "
        "work like [1] can be based on it.\n",
        patches=patches,
        mbox=cover_mbox,
        source=f"mbox:{cover_mbox}",
    )
    prereq = Series(
        name="vhost-vdpa-shared",
        message_id="20231124171430.2964464-1-eperezma@redhat.com",
        version=1,
        subject="Consolidate common vdpa members in VhostVDPAShared",
        author=AUTHOR,
        cover="",
        patches=(),
        mbox=cover_mbox,
        source="mbox:/nonexistent.mbox",
    )
    return SeriesSet(
        target=target,
        prerequisites=(prereq,),
        base="debian:qemu/trixie",
        fixups=(Path("patches/vdpa-map-at-load-setup/fixups/0001-load-setup-errp.patch"),),
    )


def tree(*, conflict_at: int | None = None) -> AppliedTree:
    results = []
    for i, (s, label) in enumerate(zip(SUBJECTS, APPLY, strict=True), 1):
        verdict = Verdict(label)
        hunks: tuple[FailingHunk, ...] = ()
        if conflict_at is not None and i == conflict_at:
            verdict = Verdict.CONFLICT
            hunks = (FailingHunk("hw/virtio/vhost-vdpa.c", 2, "@@ -10,3 +10,4 @@\n-a\n+b\n"),)
        elif conflict_at is not None and i > conflict_at:
            verdict = Verdict.NOT_TRIED
        results.append(
            ApplyResult(
                role=Role.SERIES,
                series="vdpa-map-at-load-setup",
                index=i,
                total=10,
                subject=s,
                message_id=patch_id(i),
                verdict=verdict,
                fuzz=2 if verdict is Verdict.FUZZ else 0,
                files=("hw/virtio/vhost-vdpa.c",),
                failing_hunks=hunks,
                evidence="2 of 5 hunks fail" if hunks else "",
            )
        )
    if conflict_at is None:
        results.append(
            ApplyResult(
                role=Role.FIXUP,
                series="fixups",
                index=1,
                total=1,
                subject="virtio-net: port load_setup to the Error **errp signature",
                message_id="",
                verdict=Verdict.CLEAN,
            )
        )
    return AppliedTree(
        base=BaseTree("debian:qemu/trixie", "1:10.0.13+ds-1", Path("/cache/qemu-src")),
        repo=Path("/cache/tree"),
        base_commit="a" * 40,
        baseline_commit="b" * 40,
        series_commit="c" * 40,
        fixup_commit="d" * 40,
        results=tuple(results),
    )


CONFIGURE = (
    "../configure",
    "--target-list=x86_64-softmmu",
    "--without-default-features",
    "--enable-vhost-vdpa",
)


def build(name: str, ok: bool = True, log: Path = Path("/nonexistent/build.log")) -> BuildResult:
    return BuildResult(
        name=name,
        commit="d" * 40,
        build_dir=Path(f"/cache/build-{name}"),
        configure_line=CONFIGURE,
        ok=ok,
        wall_time=361.2 if name == "baseline" else 21.5,
        compile_steps=2033 if name == "baseline" else 12,
        binary=Path(f"/cache/build-{name}/qemu-system-x86_64") if ok else None,
        log=log,
        errors=()
        if ok
        else (CompilerError("hw/net/virtio-net.c", 3912, "too few arguments to function"),),
    )


def builds(*, patched_ok: bool = True, baseline_ok: bool = True) -> BuildSet:
    return BuildSet(
        baseline=build("baseline", baseline_ok),
        patched=build("patched", patched_ok),
        posted=build("posted", False),
        each_patch=tuple(
            PatchBuild(index=i, subject=s, commit="e" * 40, builds=i < 10)
            for i, s in enumerate(SUBJECTS, 1)
        ),
        checkpatch=tuple(
            CheckpatchResult(
                index=i,
                subject=s,
                errors=1 if i == 8 else 0,
                warnings=2 if i == 8 else 0,
                messages=("ERROR: line over 90 characters",) if i == 8 else (),
            )
            for i, s in enumerate(SUBJECTS, 1)
        ),
        firmware_dirs=(Path("/usr/share/seabios"),),
    )


def env(*, manifest: dict[str, object] | None = None) -> TestEnv:
    return TestEnv(
        mode=Mode.VM,
        kernel_version="6.12.117+deb12-amd64",
        l2_guest=GuestImage(Path("/cache/l2/bzImage"), Path("/cache/l2/initrd"), "console=ttyS0"),
        assets_dir=Path("/cache/testenv"),
        l1_kvm=True,
        manifest=manifest if manifest is not None else {"vdpa_queue_max": 1024},
    )


def outcome(
    name: str,
    build: str,
    status: Status | str,
    *,
    claim: str | None = None,
    direction: Direction = Direction.HOLDS_ON_BOTH,
    crash: Crash | None = None,
    flaky: bool = False,
    fail_reason: str = "",
    measurements: dict[str, object] | None = None,
    logdir: Path | None = None,
) -> fm.TestOutcome:
    cls, method = name.split(".")
    tags = ["migration", f"expect:{direction.value}"] + ([f"claim:{claim}"] if claim else [])
    return fm.TestOutcome(
        test_id=f"tests/functional/test_migration.py:{name}",
        name=name,
        build=build,
        status=Status(status),
        time=12.5,
        tags=tuple(tags),
        claim=claim,
        direction=direction,
        fail_reason=fail_reason,
        logdir=logdir,
        attempts=2 if flaky else 1,
        flaky=flaky,
        measurements=dict(measurements or {}),
        crash=crash,
    )


def pair(
    name: str,
    baseline: str,
    patched: str,
    **kwargs: object,
) -> list[fm.TestOutcome]:
    """The same test on both builds."""
    return [
        outcome(name, "baseline", baseline, **kwargs),  # type: ignore[arg-type]
        outcome(name, "patched", patched, **kwargs),  # type: ignore[arg-type]
    ]


def functional(outcomes: list[fm.TestOutcome]) -> FunctionalResults:
    return FunctionalResults(
        outcomes=tuple(outcomes),
        job_dirs=(Path("/results/avocado/job-1"),),
        env={"qemu_version": "10.0.13"},
    )


def passing_outcomes() -> list[fm.TestOutcome]:
    """A run where the series' ordering claim is confirmed and nothing regresses."""
    return [
        *pair("Migration.test_correctness", "PASS", "PASS", claim=None),
        *pair(
            "MapOrdering.test_maps_before_stop",
            "FAIL",
            "PASS",
            claim="map-at-load-setup",
            direction=Direction.FIXED_BY_SERIES,
            measurements={"maps_in_downtime": 0, "maps_setup_phase": 64},
        ),
        *pair(
            "SvqDest.test_svq_dest_only",
            "PASS",
            "PASS",
            claim="svq-iova-tree",
            direction=Direction.FIXED_BY_SERIES,
        ),
    ]
