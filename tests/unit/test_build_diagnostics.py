"""Reading real QEMU build logs: compiler errors, ninja progress, configure failures.

The logs under data/build/ were captured from real builds of Debian's QEMU 10.0.13
source (configure line in src/seriesgate/build/configure.py):
- build-posted-rfc-v2-10.log: RFC v2 applied as posted, failing at 10/10
- configure-missing-glib.log: configure with pkg-config unable to find glib
- ld-undefined-reference.log: GNU ld (binutils 2.40) linking a call to a missing symbol
"""

from __future__ import annotations

from pathlib import Path

from seriesgate.build import configure as cfg
from seriesgate.build.diagnostics import (
    disk_full,
    edges_run,
    failed_targets,
    ninja_progress,
    parse_compiler_errors,
    source_relative,
)
from seriesgate.build.firmware import firmware_dirs
from seriesgate.errors import InfraError

DATA = Path(__file__).parent / "data" / "build"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_posted_series_error_names_file_line_and_message() -> None:
    errors = parse_compiler_errors(read("build-posted-rfc-v2-10.log"))
    assert errors, "the failing build's log has compiler errors"
    first = errors[0]
    assert first.file == "hw/net/virtio-net.c"
    assert first.line > 4000
    assert "incompatible-pointer-types" in first.message
    assert "load_setup" in read("build-posted-rfc-v2-10.log")
    # "In function", "note:" and the caret lines are not errors.
    assert all("note:" not in e.message for e in errors)


def test_failed_target_and_edge_count_of_a_failed_build() -> None:
    log = read("build-posted-rfc-v2-10.log")
    targets = failed_targets(log)
    assert len(targets) == 1 and targets[0].endswith("virtio-net.c.o")
    assert edges_run(log) >= 1
    assert not disk_full(log)


def test_errors_are_deduplicated_and_capped() -> None:
    log = read("build-posted-rfc-v2-10.log")
    doubled = log + "\n" + log
    assert parse_compiler_errors(doubled) == parse_compiler_errors(log)
    assert len(parse_compiler_errors(doubled, limit=1)) == 1


def test_source_paths_are_made_relative_to_the_tree() -> None:
    assert source_relative("../src/hw/net/virtio-net.c") == "hw/net/virtio-net.c"
    assert source_relative("/c/build/k/src/net/vhost-vdpa.c", "/c/build/k/src") == (
        "net/vhost-vdpa.c"
    )
    assert source_relative("include/qemu/osdep.h") == "include/qemu/osdep.h"


def test_linker_errors_carry_file_and_line() -> None:
    # Real GNU ld output (Debian 12 binutils), from linking a call to a missing symbol.
    errors = parse_compiler_errors(read("ld-undefined-reference.log"), source_dir="/tmp/ldt")
    assert len(errors) == 1
    assert (errors[0].file, errors[0].line) == ("virtio-net.c", 4)
    assert errors[0].message == "undefined reference to `vhost_vdpa_net_load_setup'"


def test_ninja_progress_lines() -> None:
    assert ninja_progress("[12/1590] Compiling C object x.o\n") == (12, 1590)
    assert ninja_progress("FAILED: x.o") is None
    assert edges_run("ninja: no work to do.\n") == 0


def test_disk_full_is_recognised() -> None:
    assert disk_full(
        "../src/x.c:1: fatal error: error writing to /tmp/ccX: No space left on device"
    )


def test_configure_failure_names_the_debian_package() -> None:
    error = cfg.missing_dependency(read("configure-missing-glib.log"))
    assert isinstance(error, InfraError)
    assert "glib-2.0" in str(error) and "libglib2.0-dev" in str(error)
    # Optional programs reported "found: NO" (iasl) are not blamed.
    assert "iasl" not in str(error)


def test_successful_configure_output_blames_nothing() -> None:
    assert cfg.missing_dependency("Program iasl found: NO\nBuild targets in project: 600\n") is None


def test_firmware_dirs_checks_the_files_a_boot_needs(tmp_path: Path) -> None:
    bios = tmp_path / "seabios"
    bios.mkdir()
    (bios / "bios-256k.bin").write_bytes(b"")
    try:
        firmware_dirs(((bios, "seabios"), (tmp_path / "absent", "ipxe-qemu")))
    except InfraError as exc:
        assert "efi-virtio.rom" in str(exc) and "ipxe-qemu" in str(exc)
    else:
        raise AssertionError("missing firmware must be an InfraError")
