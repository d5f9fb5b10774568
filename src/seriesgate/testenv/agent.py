"""Drive the L2 guest through a line protocol on its second serial port.

The L2 initramfs (``l2init.sh``) runs an agent loop on ``/dev/ttyS1``; QEMU connects that
port to a unix socket (``l2_qemu_args``); ``GuestAgent`` talks to it. The console is
``ttyS0`` and goes to a log file, so kernel messages never mix with the protocol.

Protocol (one ASCII line per message, ``\\n``-terminated; anything else is noise and ignored,
e.g. bytes echoed before the guest set its tty to raw mode, or replies to stale requests):

    host → guest   SGPING <nonce>
                   SGRUN <nonce> <base64 of the shell command>
    guest → host   SGREADY            (unsolicited, when the agent loop starts)
                   SGPONG <nonce>
                   SGBEGIN <nonce>
                   <base64 of the command's stdout+stderr, any number of lines>
                   SGEND <nonce> <exit status>

Every request carries a fresh random nonce and only replies with that nonce count, so a
reply to a request that timed out can never be taken for the answer to a later one. The
output travels base64-encoded so it can never forge a marker, whatever it contains.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from seriesgate.errors import InfraError
from seriesgate.testenv.model import GuestImage

READY = "SGREADY"
PING = "SGPING"
PONG = "SGPONG"
RUN = "SGRUN"
BEGIN = "SGBEGIN"
END = "SGEND"

AGENT_PORT = "ttyS1"  # the guest's second 16550 UART; the console is ttyS0
# Pings queue up in the serial port while the guest boots and each gets an answer later:
# ping rarely, and at once when the agent announces itself with SGREADY.
_PING_INTERVAL = 3.0


class AgentError(InfraError):
    """The agent could not be reached or answered something unreadable."""


class AgentTimeout(AgentError):
    """No (complete) answer within the timeout; ``partial`` holds what arrived."""

    def __init__(self, message: str, *, partial: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.partial = partial


@dataclass(frozen=True)
class AgentResult:
    """What one command in the guest did."""

    exit_status: int
    output: str  # stdout and stderr, interleaved as the guest wrote them


@dataclass(frozen=True)
class Pong:
    nonce: str


@dataclass(frozen=True)
class Ready:
    """The agent loop (re)started: a good moment to ping."""


@dataclass(frozen=True)
class Result:
    nonce: str
    exit_status: int
    output: bytes


Event = Ready | Pong | Result


def new_nonce() -> str:
    return secrets.token_hex(8)


def encode_ping(nonce: str) -> bytes:
    return f"{PING} {nonce}\n".encode()


def encode_run(nonce: str, command: str) -> bytes:
    payload = base64.b64encode(command.encode()).decode()
    return f"{RUN} {nonce} {payload}\n".encode()


class FrameParser:
    """Incremental parser of the guest → host byte stream into ``Pong``/``Result`` events.

    Feed it arbitrary chunks; it returns the events completed by each chunk.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._open: str | None = None  # nonce of the SGBEGIN block being read
        self._body: list[bytes] = []

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        events: list[Event] = []
        while b"\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n", 1)
            event = self._line(raw.strip(b"\r\x00 \t"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: bytes) -> Event | None:
        words = line.split()
        if self._open is None and line.endswith(READY.encode()):
            # Also after the echo of a ping that came before the agent made its tty raw:
            # "SGPING SGREADY", "SGPSGREADY" (27% of 467 L2 boots; each missed SGREADY
            # cost up to a ping interval, 3 s). No base64 line or other frame ends so.
            return Ready()
        if len(words) == 2 and words[0] == PONG.encode():
            return Pong(words[1].decode("ascii", "replace"))
        if len(words) == 2 and words[0] == BEGIN.encode():
            self._open = words[1].decode("ascii", "replace")
            self._body = []
            return None
        if len(words) == 3 and words[0] == END.encode() and self._open is not None:
            nonce = words[1].decode("ascii", "replace")
            if nonce != self._open:
                self._open = None
                return None
            self._open = None
            try:
                status = int(words[2])
                output = base64.b64decode(b"".join(self._body), validate=True)
            except (ValueError, binascii.Error):
                return None  # a damaged frame: the caller times out and says so
            return Result(nonce, status, output)
        if self._open is not None:
            self._body.append(line)
        return None


# qboot (Debian's qemu-system-data) loads -kernel/-initrd without SeaBIOS's device probing:
# every port access is an exit through KVM-in-TCG. Measured in the test VM with KVM, QEMU
# launch to agent ready: SeaBIOS 24.2-27.5 s, qboot 20.6-20.9 s, qboot + pci=noearly 14.9 s.
L2_FIRMWARE = Path("/usr/share/qemu/qboot.rom")


def l2_qemu_args(image: GuestImage, *, agent_socket: Path, console_log: Path | None) -> list[str]:
    """QEMU arguments that boot ``image`` with its agent on ``agent_socket``.

    Gives firmware (qboot when installed), kernel, initrd, command line,
    ``-nodefaults -no-reboot -display none`` and the two serial ports (console →
    ``console_log`` or nowhere, agent → a listening unix socket).
    The caller adds -machine/-accel/-cpu/-m and the network (-netdev/-device).
    """
    firmware = ["-bios", str(L2_FIRMWARE)] if L2_FIRMWARE.exists() else []
    console = (
        ["-chardev", f"file,id=sgcon,path={console_log}", "-serial", "chardev:sgcon"]
        if console_log is not None
        else ["-serial", "null"]
    )
    return [
        *firmware,
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        image.append,
        *console,
        "-chardev",
        f"socket,id=sgagent,path={agent_socket},server=on,wait=off",
        "-serial",
        "chardev:sgagent",
    ]


class GuestAgent:
    """Client of the L2 agent on the unix socket QEMU listens on.

    ``log`` (optional) receives a transcript: ``> line`` sent, ``< line`` received.
    ``alive`` (optional, e.g. ``lambda: qemu.poll() is None``) lets waits end at once with
    AgentError when the guest's QEMU has died instead of running into the timeout.
    The socket must live on a local file system (QEMU cannot bind one on 9p).
    """

    def __init__(
        self,
        socket_path: Path,
        log: Path | None = None,
        *,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.log = log
        self._alive = alive
        self._sock: socket.socket | None = None
        self._parser = FrameParser()
        self._received = b""  # undecoded tail for the transcript
        self._log_file = open(log, "a", encoding="utf-8", errors="replace") if log else None  # noqa: SIM115

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> GuestAgent:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._log_file is not None:
            self._flush_transcript(final=True)
            self._log_file.close()
            self._log_file = None

    def _connect(self, deadline: float) -> socket.socket:
        if self._sock is not None:
            return self._sock
        last: OSError | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(os.fspath(self.socket_path))
            except OSError as exc:  # QEMU not listening yet
                sock.close()
                last = exc
                time.sleep(0.05)
                continue
            self._sock = sock
            return sock
        raise AgentTimeout(
            f"cannot connect to the guest agent socket {self.socket_path}: {last}",
            hint="did the L2 QEMU start with l2_qemu_args()?",
        )

    def _check_alive(self) -> None:
        if self._alive is not None and not self._alive():
            raise AgentError(
                f"the guest's QEMU exited (agent socket {self.socket_path})",
                hint="see its log and the L2 console log",
            )

    # -- transcript -------------------------------------------------------------------------

    def _note_sent(self, data: bytes) -> None:
        if self._log_file is not None:
            self._log_file.write("> " + data.decode("ascii", "replace").rstrip("\n") + "\n")
            self._log_file.flush()

    def _note_received(self, data: bytes) -> None:
        if self._log_file is None:
            return
        self._received += data
        self._flush_transcript(final=False)

    def _flush_transcript(self, *, final: bool) -> None:
        assert self._log_file is not None
        lines = self._received.split(b"\n")
        self._received = b"" if final else lines.pop()
        for line in lines if not final else [ln for ln in lines if ln]:
            self._log_file.write("< " + line.decode("utf-8", "replace") + "\n")
        self._log_file.flush()

    # -- I/O --------------------------------------------------------------------------------

    def _send(self, sock: socket.socket, data: bytes) -> None:
        self._note_sent(data)
        try:
            sock.sendall(data)
        except OSError as exc:
            raise AgentError(f"guest agent connection lost while sending: {exc}") from None

    def _receive(self, sock: socket.socket, until: float) -> list[Event]:
        """Wait for data until ``until`` (monotonic); return the events it completed."""
        wait = max(0.0, until - time.monotonic())
        ready, _, _ = select.select([sock], [], [], min(wait, 1.0))
        if not ready:
            self._check_alive()
            return []
        try:
            data = sock.recv(65536)
        except OSError as exc:
            raise AgentError(f"guest agent connection lost: {exc}") from None
        if not data:
            raise AgentError(f"guest agent socket {self.socket_path} closed: did the L2 QEMU exit?")
        self._note_received(data)
        return self._parser.feed(data)

    def wait_ready(self, timeout: float) -> None:
        """Return once the agent answers a ping; AgentTimeout after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        sock = self._connect(deadline)
        sent: set[str] = set()
        next_ping = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise AgentTimeout(
                    f"guest agent not ready after {timeout:.0f} s",
                    hint="see the L2 console log",
                )
            if now >= next_ping:
                nonce = new_nonce()
                sent.add(nonce)
                self._send(sock, encode_ping(nonce))
                next_ping = now + _PING_INTERVAL
            for event in self._receive(sock, min(deadline, next_ping)):
                if isinstance(event, Pong) and event.nonce in sent:
                    return
                if isinstance(event, Ready):
                    next_ping = 0.0

    def run(self, command: str, timeout: float = 30.0) -> AgentResult:
        """Run ``command`` with the guest's ``sh``; its exit status and combined output."""
        deadline = time.monotonic() + timeout
        sock = self._connect(deadline)
        nonce = new_nonce()
        self._send(sock, encode_run(nonce, command))
        while time.monotonic() < deadline:
            for event in self._receive(sock, deadline):
                if isinstance(event, Result) and event.nonce == nonce:
                    return AgentResult(event.exit_status, event.output.decode("utf-8", "replace"))
        raise AgentTimeout(
            f"guest command did not finish within {timeout:.0f} s: {command[:80]!r}",
            hint="the agent stays busy until it ends; see the L2 console log",
        )
