"""sgpkt, the L2 guest's frame sender, built and run for real on the host's loopback device
(lo delivers every transmitted frame back, as vdpa_sim_net does), and its output parsers."""

from __future__ import annotations

import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

import pytest

from seriesgate.testenv import traffic

DATA = Path(__file__).parent / "data" / "testenv"


@pytest.fixture(scope="module")
def sgpkt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc missing: ci/setup-host.sh installs build-essential")
    out = tmp_path_factory.mktemp("sgpkt") / "sgpkt"
    with resources.as_file(resources.files("seriesgate.testenv").joinpath("sgpkt.c")) as src:
        subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(out), str(src)], check=True)
    return out


def test_send_counts_looped_back_frames(sgpkt: Path) -> None:
    result = subprocess.run(
        [str(sgpkt), "send", "lo", "50", "2000"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert traffic.parse_send(result.stdout) == traffic.SendResult(50, 50, 0)


def test_send_on_a_missing_interface_fails_clearly(sgpkt: Path) -> None:
    result = subprocess.run([str(sgpkt), "send", "nosuch0", "5"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("sgpkt: SIOCGIFHWADDR")
    with pytest.raises(ValueError):
        traffic.parse_send(result.stdout)


def test_stream_writes_increasing_timestamps(sgpkt: Path, tmp_path: Path) -> None:
    out = tmp_path / "stream.txt"
    child = subprocess.Popen([str(sgpkt), "stream", "lo", "2000", str(out)])
    try:
        time.sleep(0.5)
    finally:
        child.kill()
        child.wait()
    records = traffic.parse_stream(out.read_text())
    assert len(records) > 50
    assert [r.seq for r in records] == sorted(r.seq for r in records)
    assert all(r.rx_ns >= r.tx_ns for r in records)
    gap = traffic.largest_gap(records)
    assert gap is not None and gap.seconds < 0.2  # nothing paused the loopback


def test_gap_and_losses_from_a_stream() -> None:
    text = "0 10 1000000000\n1 20 1001000000\n4 30 1501000000\n5 40 1502000000\n6 50"
    records = traffic.parse_stream(text)
    assert [r.seq for r in records] == [0, 1, 4, 5]  # the torn last line is skipped
    gap = traffic.largest_gap(records)
    assert gap == traffic.Gap(0.5, 1, 4)
    assert traffic.lost_sequence_numbers(records) == [2, 3]
    assert traffic.largest_gap(records[:1]) is None
