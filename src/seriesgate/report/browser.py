"""report.html in a real browser: headless Chromium, driven over the DevTools protocol.

:func:`check_page` opens a page from disk in headless Chromium (Debian's ``chromium``,
installed by ``ci/setup-host.sh``) and reports what a reader would meet: every console error,
uncaught exception, failed resource load and browser log error, the headline text
(``#headline``), the number of crash blocks (``p.crash``), every image with its decoded size,
and a screenshot of the page.

The DevTools protocol runs over ``--remote-debugging-pipe`` (Chromium reads commands on fd 3
and writes replies and events on fd 4, NUL-separated JSON): no port, no websocket library,
nothing listening on the machine. The browser gets a fresh ``--user-data-dir`` and no
network-facing background services.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seriesgate.errors import InfraError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
    "--window-size=1280,900",
)
_PAGE_FACTS = """JSON.stringify({
  headline: (document.querySelector('#headline') || {}).textContent || null,
  crashes: Array.from(document.querySelectorAll('p.crash')).map(p => p.textContent),
  images: Array.from(document.images).map(i => ({alt: i.alt, width: i.naturalWidth,
                                                 height: i.naturalHeight, complete: i.complete})),
  title: document.title,
  height: document.documentElement.scrollHeight,
})"""


def find_chromium() -> str | None:
    """The Chromium binary on PATH, if any."""
    return next((p for name in CHROMIUM_NAMES if (p := shutil.which(name))), None)


@dataclass
class PageCheck:
    """What headless Chromium saw on one page."""

    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    headline: str | None = None
    crashes: list[str] = field(default_factory=list)  # text of each p.crash block
    images: list[dict[str, Any]] = field(default_factory=list)  # alt, width, height, complete
    title: str = ""
    screenshot: Path | None = None

    def broken_images(self) -> list[str]:
        return [i["alt"] or "(no alt)" for i in self.images if not i["complete"] or not i["width"]]


class _Pipe:
    """The DevTools protocol over Chromium's fds 3 (commands in) and 4 (messages out)."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int):
        self.proc = proc
        self.out = to_browser
        self.inp = from_browser
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.out, json.dumps(msg).encode() + b"\0")
        want = self.next_id
        deadline = time.monotonic() + timeout
        while True:
            for reply in self._read(deadline):
                if reply.get("id") == want:
                    if "error" in reply:
                        raise InfraError(f"chromium: {method}: {reply['error']}")
                    result: dict[str, Any] = reply.get("result", {})
                    return result
                self.events.append(reply)

    def wait_event(self, name: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == name:
                    return self.events.pop(i)
            try:
                self.events += self._read(deadline)
            except InfraError:
                return None

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds`` (late console errors)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.events += self._read(deadline)
            except InfraError:
                return

    def _read(self, deadline: float) -> list[dict[str, Any]]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise InfraError("chromium: no answer in time")
            ready, _, _ = select.select([self.inp], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.inp, 1 << 20)
            if not chunk:
                raise InfraError(f"chromium exited (status {self.proc.poll()})")
            self.buffer += chunk
        *messages, self.buffer = self.buffer.split(b"\0")
        return [json.loads(m) for m in messages if m]


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(
                str(a.get("value", a.get("description", ""))) for a in p.get("args", [])
            )
            out.append(f"console.{p['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = (d.get("exception") or {}).get("description") or d.get("text", "")
            out.append(f"uncaught exception: {text}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            out.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            out.append(f"failed to load: {p.get('errorText')} ({p.get('type', '?')})")
    return out


def _high(fd: int) -> int:
    """``fd`` moved to 10 or above: the shell's ``3<&N 4>&M`` must not overwrite one end of
    the pipe with the other (a pipe end that is fd 3 or 4 would)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def check_page(page: Path, *, screenshot: Path | None = None, timeout: float = 60.0) -> PageCheck:
    """Open ``page`` in headless Chromium; what it saw (see the module docstring)."""
    chromium = find_chromium()
    if chromium is None:
        raise InfraError("no chromium on PATH", hint="bash ci/setup-host.sh installs it")
    url = Path(page).resolve().as_uri()
    to_r, to_w = (_high(fd) for fd in os.pipe())
    from_r, from_w = (_high(fd) for fd in os.pipe())
    with tempfile.TemporaryDirectory(prefix="sg-chromium-") as profile:
        # Chromium wants the pipe on fds 3 and 4: a shell puts it there, then becomes it.
        argv = [
            # bash: dash takes single-digit fds only in redirections
            shutil.which("bash") or "/bin/bash", "-c", 'exec "$@" 3<&"$SG_IN" 4>&"$SG_OUT"', "sh",
            chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank",
        ]  # fmt: skip
        env = {**os.environ, "SG_IN": str(to_r), "SG_OUT": str(from_w)}
        log = Path(profile) / "chromium.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(  # noqa: S603 - argv list
                argv,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                pass_fds=(to_r, from_w),
                env=env,
            )
        os.close(to_r)
        os.close(from_w)
        cdp = _Pipe(proc, to_w, from_r)
        try:
            return _check(cdp, url, screenshot, timeout)
        except InfraError as exc:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise InfraError(f"{exc}; chromium said: {' | '.join(tail) or '(nothing)'}") from None
        finally:
            try:
                cdp.send("Browser.close", timeout=5)
            except (InfraError, OSError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(to_w)
            os.close(from_r)


def _check(cdp: _Pipe, url: str, screenshot: Path | None, timeout: float) -> PageCheck:
    target = cdp.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)
    session = cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})[
        "sessionId"
    ]
    for domain in ("Runtime", "Log", "Page", "Network"):
        cdp.send(f"{domain}.enable", session=session)
    cdp.events.clear()  # what about:blank said is not the page's
    cdp.send("Page.navigate", {"url": url}, session=session, timeout=timeout)
    if cdp.wait_event("Page.loadEventFired", timeout) is None:
        raise InfraError(f"chromium: {url} did not finish loading in {timeout:.0f} s")
    cdp.drain(0.5)
    facts = json.loads(
        cdp.send(
            "Runtime.evaluate", {"expression": _PAGE_FACTS, "returnByValue": True}, session=session
        )["result"]["value"]
    )
    result = PageCheck(
        errors=_errors(cdp.events),
        headline=facts["headline"],
        crashes=list(facts["crashes"]),
        images=list(facts["images"]),
        title=str(facts["title"]),
    )
    if screenshot is not None:
        height = min(int(facts["height"]), 16000)
        shot = cdp.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1},
            },
            session=session,
            timeout=timeout,
        )
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        result.screenshot = screenshot
    return result
