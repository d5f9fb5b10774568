"""The L2 guest's frame tools, as seen from the host: ``sgpkt`` commands and their output.

``sgpkt`` (shipped in the L2 initramfs) sends frames to the guest's own MAC; vdpa_sim_net
loops them back. Use through the agent::

    agent.run(send_command(200))            # "sent 200 received 200 lost 0", exit 0 if all back
    agent.run(stream_start_command())       # background stream of timestamps in STREAM_FILE
    ... migrate ...
    gap = largest_gap(parse_stream(agent.run(f"cat {STREAM_FILE}").output))
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STREAM_FILE = "/tmp/sg-stream.txt"
_SEND = re.compile(r"sent (\d+) received (\d+) lost (\d+)")


@dataclass(frozen=True)
class SendResult:
    sent: int
    received: int
    lost: int


@dataclass(frozen=True)
class StreamRecord:
    seq: int
    tx_ns: int  # guest CLOCK_REALTIME when sent
    rx_ns: int  # guest CLOCK_REALTIME when it came back


@dataclass(frozen=True)
class Gap:
    seconds: float  # largest pause between consecutive received frames
    after_seq: int  # last frame before the pause
    before_seq: int  # first frame after it


def send_command(count: int, iface: str = "eth0", timeout_ms: int = 3000) -> str:
    return f"sgpkt send {iface} {count} {timeout_ms}"


def parse_send(output: str) -> SendResult:
    """``sgpkt send`` output → counts; ValueError when it is not there (sgpkt failed)."""
    match = _SEND.search(output)
    if match is None:
        raise ValueError(f"no sgpkt result in {output.strip()[:200]!r}")
    return SendResult(*(int(g) for g in match.groups()))


def stream_start_command(
    iface: str = "eth0", interval_us: int = 1000, path: str = STREAM_FILE
) -> str:
    """Start a background stream (one frame every ``interval_us``); its pid in /tmp."""
    return (
        f"rm -f {path}; sgpkt stream {iface} {interval_us} {path} >/dev/null 2>&1 & "
        f"echo $! > {path}.pid"
    )


def stream_stop_command(path: str = STREAM_FILE) -> str:
    return f"kill $(cat {path}.pid) 2>/dev/null; sleep 0.1; cat {path}"


def parse_stream(text: str) -> list[StreamRecord]:
    """``SEQ TX_NS RX_NS`` lines → records (a torn last line is skipped)."""
    records = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            records.append(StreamRecord(int(parts[0]), int(parts[1]), int(parts[2])))
    return records


def largest_gap(records: list[StreamRecord]) -> Gap | None:
    """The longest time between two consecutive received frames (None with < 2 frames)."""
    best: Gap | None = None
    for prev, cur in zip(records, records[1:], strict=False):
        seconds = (cur.rx_ns - prev.rx_ns) / 1e9
        if best is None or seconds > best.seconds:
            best = Gap(seconds, prev.seq, cur.seq)
    return best


def lost_sequence_numbers(records: list[StreamRecord]) -> list[int]:
    """Sequence numbers sent but never received, between the first and last received."""
    if not records:
        return []
    seen = {r.seq for r in records}
    return [s for s in range(min(seen), max(seen) + 1) if s not in seen]
