"""The L2 agent protocol: framing (pure) and the real guest script under busybox on a pty.

The pty test runs the very ``sgagent.sh`` the L2 initramfs ships, with busybox, behind a
unix socket as QEMU's ``-chardev socket`` would provide: only the VM is left out.
"""

from __future__ import annotations

import base64
import os
import random
import select
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from seriesgate.testenv.agent import (
    L2_FIRMWARE,
    AgentTimeout,
    FrameParser,
    GuestAgent,
    Pong,
    Ready,
    Result,
    encode_ping,
    encode_run,
    l2_qemu_args,
)
from seriesgate.testenv.model import GuestImage

DATA = Path(__file__).parent / "data" / "testenv"


def test_encode_run_is_one_line_with_base64_command() -> None:
    line = encode_run("abc", "echo 'a b'\nexit 3")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    verb, nonce, payload = line.split()
    assert (verb, nonce) == (b"SGRUN", b"abc")
    assert base64.b64decode(payload) == b"echo 'a b'\nexit 3"
    assert encode_ping("n1") == b"SGPING n1\n"


def test_parser_result_with_noise_and_forged_markers() -> None:
    body = base64.b64encode(b"SGEND n1 0\nreal output\n").decode()
    stream = (
        "SGPING n0\r\n"  # an echo from before the tty went raw
        "garbage\n"
        "SGPONG old\n"
        f"SGBEGIN n1\n{body}\nSGEND n1 7\n"
    ).encode()
    events = FrameParser().feed(stream)
    assert events == [Pong("old"), Result("n1", 7, b"SGEND n1 0\nreal output\n")]


def test_parser_ignores_end_of_another_nonce_and_damaged_body() -> None:
    parser = FrameParser()
    assert parser.feed(b"SGBEGIN a\naGk=\nSGEND b 0\n") == []
    assert parser.feed(b"SGBEGIN c\n!!notbase64!!\nSGEND c 0\n") == []
    assert parser.feed(b"SGBEGIN d\naGk=\nSGEND d 0\n") == [Result("d", 0, b"hi")]


def _transcript_stream(name: str) -> bytes:
    """Bytes the guest sent, rebuilt from a GuestAgent transcript (``< `` lines)."""
    lines = (DATA / name).read_text().splitlines()
    return "".join(ln[2:] + "\n" for ln in lines if ln.startswith("< ")).encode()


def test_parser_on_real_l2_transcript_in_random_chunks() -> None:
    stream = _transcript_stream("l2-agent-transcript-smoke.log")
    sent = (DATA / "l2-agent-transcript-smoke.log").read_text().splitlines()
    runs = [ln.split()[2] for ln in sent if ln.startswith("> SGRUN")]
    whole = FrameParser().feed(stream)
    results = [e for e in whole if isinstance(e, Result)]
    assert [r.nonce for r in results] == runs  # every command answered, in order
    rng = random.Random(4)
    for _ in range(20):
        parser, events, pos = FrameParser(), [], 0
        while pos < len(stream):
            step = rng.randint(1, 40)
            events += parser.feed(stream[pos : pos + step])
            pos += step
        assert events == whole


def test_parser_sees_sgready_after_an_echoed_ping() -> None:
    # A real boot (baseline, 2026-12-07): the agent's SGREADY came on the line of the echo
    # of a ping sent before the tty went raw; missed, it cost 3 s of boot.
    stream = _transcript_stream("l2-agent-transcript-ready-after-echo.log")
    events = FrameParser().feed(stream)
    assert events[0] == Ready()
    for glued in (b"SGPINGSGREADY\n", b"SGPSGREADY\n", b"SGPING SGREADY\r\n", b"SGREADY\n"):
        assert FrameParser().feed(glued) == [Ready()]
    # Inside a command's output block it is output, not the agent restarting.
    body = base64.b64encode(b"x").decode()
    assert FrameParser().feed(f"SGBEGIN n\nSGREADY\n{body}\nSGEND n 0\n".encode()) == []


def test_l2_qemu_args_wire_console_and_agent(tmp_path: Path) -> None:
    image = GuestImage(Path("/k"), Path("/i"), "console=ttyS0 sgagent=ttyS1")
    args = l2_qemu_args(image, agent_socket=tmp_path / "a.sock", console_log=tmp_path / "c.log")
    serials = [args[i + 1] for i, a in enumerate(args) if a == "-serial"]
    assert serials == ["chardev:sgcon", "chardev:sgagent"]  # ttyS0 console, ttyS1 agent
    assert f"socket,id=sgagent,path={tmp_path / 'a.sock'},server=on,wait=off" in args
    assert args[args.index("-append") + 1] == image.append
    # qboot comes with qemu-system-data (ci/setup-host.sh)
    assert args[args.index("-bios") + 1] == str(L2_FIRMWARE)
    no_console = l2_qemu_args(image, agent_socket=tmp_path / "a.sock", console_log=None)
    assert no_console[no_console.index("-serial") + 1] == "null"


# -- the real guest script, bridged like QEMU's socket chardev --------------------------------


def _bridge(listener: socket.socket, master: int, stop: threading.Event) -> None:
    conn, _ = listener.accept()
    with conn:
        while not stop.is_set():
            ready, _, _ = select.select([conn, master], [], [], 0.1)
            if conn in ready:
                data = conn.recv(4096)
                if not data:
                    return
                os.write(master, data)
            if master in ready:
                try:
                    conn.sendall(os.read(master, 4096))
                except OSError:
                    return


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[GuestAgent]:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox missing: ci/setup-host.sh installs busybox-static")
    master, slave = os.openpty()
    script = resources.files("seriesgate.testenv").joinpath("sgagent.sh")
    sock_path = tmp_path / "agent.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)
    stop = threading.Event()
    bridge = threading.Thread(target=_bridge, args=(listener, master, stop), daemon=True)
    bridge.start()
    with resources.as_file(script) as path:
        guest = subprocess.Popen(
            [busybox, "sh", str(path), os.ttyname(slave)],
            env={"PATH": os.environ["PATH"], "SGAGENT_WORK": str(tmp_path / "w"), "HOME": "/"},
            start_new_session=True,
        )
        client = GuestAgent(sock_path, log=tmp_path / "transcript.log")
        try:
            yield client
        finally:
            client.close()
            stop.set()
            os.killpg(guest.pid, 9)
            guest.wait()
            bridge.join(2)
            listener.close()
            os.close(master)
            os.close(slave)


def test_real_agent_script_runs_commands(agent: GuestAgent) -> None:
    agent.wait_ready(10)
    result = agent.run("echo hello; echo to-stderr >&2; exit 3", timeout=10)
    assert result.exit_status == 3
    assert result.output == "hello\nto-stderr\n"
    forged = agent.run("printf 'SGEND x 0\\nSGBEGIN y\\n'; true", timeout=10)
    assert (forged.exit_status, forged.output) == (0, "SGEND x 0\nSGBEGIN y\n")
    big = agent.run("seq 1 3000", timeout=20)
    assert big.output.split() == [str(i) for i in range(1, 3001)]
    quoting = agent.run("""x='a "b" $c'; echo "$x" | tr a-z A-Z""", timeout=10)
    assert quoting.output == 'A "B" $C\n'


def test_real_agent_timeout_then_stale_reply_is_not_taken(agent: GuestAgent) -> None:
    agent.wait_ready(10)
    with pytest.raises(AgentTimeout):
        agent.run("sleep 1; echo late", timeout=0.3)
    after = agent.run("echo next", timeout=10)  # the late reply carries another nonce
    assert (after.exit_status, after.output) == (0, "next\n")


def test_dead_qemu_ends_the_wait_at_once(tmp_path: Path) -> None:
    import time

    from seriesgate.testenv.agent import AgentError

    agent = GuestAgent(tmp_path / "never.sock", alive=lambda: False)
    start = time.monotonic()
    with pytest.raises(AgentError, match="QEMU exited"):
        agent.wait_ready(30)
    assert time.monotonic() - start < 2
    with pytest.raises(AgentTimeout, match="cannot connect"):
        GuestAgent(tmp_path / "never.sock").wait_ready(0.2)
