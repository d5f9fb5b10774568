"""A warm Avocado: fork ``avocado run`` and its per-test runners from a process that imported them.

Why: Avocado's process spawner starts ``avocado-runner-avocado-instrumented task-run ...`` as a
new Python process for every test (and once per job for its ``capabilities``), and every job
is a new ``avocado`` process. Inside the L1 test VM (TCG) each of those imports Avocado
(``pkg_resources``, jsonschema, plugins) and our test support again: 8-11 s per process,
against 0.3 s natively. Measured in L1: 16 s from job start to the first test and 8-10 s
between tests with fresh processes; 3 s and 1.2 s from this server.

:func:`running` starts a server (``python -m seriesgate.functional.zygote serve SOCKET``) that
imports Avocado, its plugins, the runner and the test support once, and writes two small
clients, ``avocado`` and ``avocado-runner-avocado-instrumented``: Avocado finds the runner by
that name in ``$PATH``. Per request the server forks; the child runs Avocado's own ``main()``
(of ``avocado`` or of the runner) with the client's argv, cwd, environment and stdio (passed as
file descriptors): the same code as the real console scripts, without the imports. The client
relays SIGTERM/SIGINT/SIGHUP to the child (Avocado's timeouts), exits with the child's status,
and when the client dies the child's process group is killed, so nothing outlives the task.
No server (not started or gone): the client runs the real console script itself.

Example (what :mod:`seriesgate.functional.jobs` does)::

    with zygote.running(workdir) as warm:
        subprocess.run([str(warm.avocado), "run", ...], env=warm.env)
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNNER_NAME = "avocado-runner-avocado-instrumented"
# The console scripts the server stands in for, and the module whose main() each runs.
ENTRIES = {
    "avocado": "avocado.core.main",
    RUNNER_NAME: "avocado.plugins.runners.avocado_instrumented",
}
# Imported once in the server (with every Avocado plugin): what the entries and tests import.
PRELOAD = (
    *ENTRIES.values(),
    "avocado.core.test",
    "qemu.qmp",
    "qemu.qmp.legacy",
    "seriesgate.functional.test",
    "seriesgate.functional.migration",
    "seriesgate.functional.kprobe",
)
_HEADER = struct.Struct("!I")
_STDIO = 3  # stdin, stdout, stderr travel with the request
# How long a client waits for the server's socket before running the real runner itself.
CONNECT_WAIT_S = 60.0


class ZygoteError(Exception):
    """A request the server cannot serve (it answers by closing the connection)."""


# -- client ------------------------------------------------------------------------------------

# The client is a script of its own, run by Avocado's spawner under the runner's name. It must
# start fast under TCG: standard library only, ``python -I -S``.
CLIENT_SOURCE = r"""
import json, os, signal, socket, struct, sys, time
SOCKET = {socket_path!r}
SERVER_PID = {server_pid!r}
ENTRY = {entry!r}
REAL = {real!r}
WAIT = {wait!r}

def real_runner():
    os.execv(REAL[0], REAL + sys.argv[1:])

def server_alive():
    try:
        with open("/proc/%d/stat" % SERVER_PID) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False

def connect():
    # The server binds before its imports: wait for the socket while the server lives. A
    # socket that refuses means the server is gone.
    deadline = time.monotonic() + WAIT
    while not os.path.exists(SOCKET):
        if not SERVER_PID or not server_alive() or time.monotonic() > deadline:
            return None
        time.sleep(0.1)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(SOCKET)
    except OSError:
        s.close()
        return None
    return s

def main():
    conn = connect()
    if conn is None:
        real_runner()
    request = json.dumps(
        {{"entry": ENTRY, "argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}
    ).encode()
    socket.send_fds(conn, [struct.pack("!I", len(request)) + request], [0, 1, 2])
    child = [0]
    pending = []  # signals that came before the child's pid: delivered once it is known
    def relay(signum, frame):
        if child[0]:
            os.kill(child[0], signum)
        else:
            pending.append(signum)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, relay)
    reader = conn.makefile("r")
    for line in reader:
        word, _, value = line.partition(" ")
        if word == "pid":
            child[0] = int(value)
            for signum in pending:
                os.kill(child[0], signum)
        elif word == "exit":
            code = int(value)
            sys.exit(code if code >= 0 else 128 - code)
    print("seriesgate zygote: server went away before " + ENTRY + " finished", file=sys.stderr)
    sys.exit(125)

main()
"""


def write_clients(bindir: Path, socket_path: Path, server_pid: int = 0) -> dict[str, Path]:
    """Write a client per :data:`ENTRIES` name into ``bindir``; name -> path.

    ``server_pid`` 0: no server, the clients run the real console scripts.
    """
    bindir.mkdir(parents=True, exist_ok=True)
    written = {}
    for entry in ENTRIES:
        script = bindir / entry
        body = CLIENT_SOURCE.format(
            socket_path=str(socket_path),
            server_pid=server_pid,
            entry=entry,
            real=real_command(entry),
            wait=CONNECT_WAIT_S,
        )
        script.write_text(f"#!{sys.executable} -IS\n{body}")  # one shebang argument
        script.chmod(0o755)
        written[entry] = script
    return written


def real_command(entry: str) -> list[str]:
    """The real console script of ``entry`` in this environment, or ``python -m``."""
    script = Path(sys.executable).parent / entry
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", ENTRIES[entry]]


@dataclass(frozen=True)
class WarmAvocado:
    """A running server: the ``avocado`` client to run and the environment to run it in."""

    avocado: Path
    env: dict[str, str]


@contextlib.contextmanager
def running(
    workdir: Path, env: Mapping[str, str] | None = None, log_path: Path | None = None
) -> Iterator[WarmAvocado]:
    """Start the server under ``workdir`` (local, not 9p); yield how to use it.

    The server logs to ``log_path`` (default ``workdir/server.log``). It is terminated and
    reaped on the way out, whatever happened.
    """
    env = dict(os.environ if env is None else env)
    workdir.mkdir(parents=True, exist_ok=True)
    socket_path = workdir / "zygote.sock"
    bindir = workdir / "bin"
    log = (log_path or workdir / "server.log").open("ab")
    server = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", __name__, "serve", str(socket_path)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        clients = write_clients(bindir, socket_path, server.pid)
        path = f"{bindir}{os.pathsep}{env.get('PATH', os.defpath)}"
        yield WarmAvocado(avocado=clients["avocado"], env={**env, "PATH": path})
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        with contextlib.suppress(OSError):
            socket_path.unlink()


# -- server ------------------------------------------------------------------------------------


def _read_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request: a length-prefixed JSON document, the client's stdio fds with it."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, _STDIO)
    while len(data) < _HEADER.size:
        more = conn.recv(1 << 16)
        if not more:
            raise ZygoteError("client closed the connection mid-request")
        data += more
    (size,) = _HEADER.unpack_from(data)
    body = data[_HEADER.size :]
    while len(body) < size:
        more = conn.recv(size - len(body))
        if not more:
            raise ZygoteError("client closed the connection mid-request")
        body += more
    request = json.loads(body)
    problem = None
    if len(fds) != _STDIO:
        problem = f"request came with {len(fds)} file descriptors, not {_STDIO}"
    elif not isinstance(request, dict) or request.get("entry") not in ENTRIES:
        problem = "request names no known entry"
    if problem:
        for fd in fds:
            os.close(fd)
        raise ZygoteError(problem)
    return request, fds


def _kill_group_when_client_goes(conn: socket.socket) -> None:
    """In the child: the client's end closing means its task was killed; so are we."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while conn.recv(4096):
                pass
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="zygote-client-watch", daemon=True).start()


def _become_runner(request: Mapping[str, Any], fds: list[int], conn: socket.socket) -> None:
    """In the forked child: take the client's place and run Avocado's runner; never returns."""
    code = 1
    try:
        os.setsid()
        for target, fd in enumerate(fds):
            if fd != target:
                os.dup2(fd, target)
                os.close(fd)
        os.chdir(str(request["cwd"]))
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        conn.sendall(f"pid {os.getpid()}\n".encode())
        _kill_group_when_client_goes(conn)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        entry = str(request["entry"])
        sys.argv = [entry, *[str(a) for a in request["argv"]]]
        try:
            returned = sys.modules[ENTRIES[entry]].main()
            code = returned if isinstance(returned, int) else 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # noqa: BLE001 - the child must end in os._exit
        print(f"seriesgate zygote: runner failed: {exc!r}", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(socket_path: Path) -> None:
    """Bind, import :data:`PRELOAD`, then fork a runner per request until SIGTERM."""
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    listener.listen(16)  # clients queue here while the imports below run
    start = time.monotonic()
    for name in PRELOAD:
        importlib.import_module(name)
    for plugin in importlib.metadata.distribution("avocado-framework").entry_points:
        if plugin.group.startswith("avocado.plugins"):
            plugin.load()
    print(f"zygote: preloaded in {time.monotonic() - start:.1f} s", flush=True)
    stop = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    children: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    # Single-threaded on purpose: forking a process with other threads is unsafe.
    while not stop:
        for _key, _events in selector.select(timeout=0.1):
            conn, _ = listener.accept()
            try:
                request, fds = _read_request(conn)
            except (OSError, ValueError, ZygoteError) as exc:
                print(f"zygote: bad request: {exc}", flush=True)
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                for other in children.values():
                    other.close()
                _become_runner(request, fds, conn)
            for fd in fds:
                os.close(fd)
            children[pid] = conn
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            if pid in children:
                done = children.pop(pid)
                with contextlib.suppress(OSError):
                    done.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
                done.close()
    for pid in children:  # the job is over: nothing of it may outlive the server
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    listener.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "serve":
        print("usage: python -m seriesgate.functional.zygote serve SOCKET", file=sys.stderr)
        return 2
    serve(Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
