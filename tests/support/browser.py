"""Open a page in real headless Chromium (Debian's ``chromium``) and report what a person would get.

Talks the DevTools protocol over ``--remote-debugging-pipe`` (NUL-separated JSON on file descriptors
3 and 4), so the browser can run in a network namespace of its own (``unshare --net``, as root):
the page opens with the network off.  Collects console messages, uncaught exceptions, log entries
(failed loads) and every request the page made, evaluates an expression, and takes a full-page
PNG screenshot.  Every wait is bounded; the browser is killed at the end whatever happened.
Used by tests/report/test_html.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_S = 30.0


@dataclass
class PageVisit:
    console: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    exceptions: list[str] = field(default_factory=list)
    log_entries: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    requests: list[str] = field(default_factory=list)
    evaluated: Any = None
    screenshot: bytes = b""
    network_off: bool = False

    @property
    def errors(self) -> list[str]:
        return ([f"console.{level}: {text}" for level, text in self.console if level in ("error", "assert")]
                + [f"exception: {text}" for text in self.exceptions]
                + [f"log {level}: {text}" for level, text in self.log_entries if level == "error"])


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def visit(url: str, expression: str = "null", width: int = 1280) -> PageVisit:
    binary = chromium()
    assert binary, "Debian's chromium is needed (make test installs it as root: apt-get install chromium)"
    result = PageVisit(network_off=os.geteuid() == 0 and shutil.which("unshare") is not None)
    prefix = ["unshare", "--net"] if result.network_off else []
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def wire_pipes() -> None:
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        process = subprocess.Popen(
            [*prefix, binary, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", f"--window-size={width},1000",
             "--proxy-server=127.0.0.1:9", "about:blank"],  # never a request to anywhere
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes, pass_fds=(3, 4),  # kept open after wire_pipes
            start_new_session=True)  # its own process group: the renderer and helpers go with it
        os.close(to_browser_r)
        os.close(from_browser_w)
        try:
            _Session(to_browser_w, from_browser_r, result).run(url, expression, width)
        finally:
            _kill_group(process)
            os.close(to_browser_w)
            os.close(from_browser_r)
    return result


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the browser and every process of its group, and wait until none is left: a renderer still
    writing into the profile directory made its removal fail ("Directory not empty")."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


class _Session:
    def __init__(self, write_fd: int, read_fd: int, result: PageVisit) -> None:
        self.write_fd, self.read_fd, self.result = write_fd, read_fd, result
        self.buffer, self.next_id, self.events = b"", 0, []  # type: ignore[var-annotated]
        self.session: str | None = None

    def run(self, url: str, expression: str, width: int) -> None:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")
        height = self.call("Runtime.evaluate", expression="document.documentElement.scrollHeight",
                           returnByValue=True)["result"]["value"]
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=int(height), deviceScaleFactor=1,
                  mobile=False)
        self.result.evaluated = self.call("Runtime.evaluate", expression=expression,
                                          returnByValue=True)["result"].get("value")
        self.result.screenshot = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        self.drain(0.3)  # late console messages

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self.receive(deadline)
            if reply.get("id") == self.next_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return dict(reply.get("result") or {})
            self.record(reply)

    def wait_event(self, name: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            message = self.receive(deadline)
            self.record(message)
            if message.get("method") == name:
                return

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.record(self.receive(deadline, fail=False))
            except TimeoutError:
                return

    def receive(self, deadline: float, fail: bool = True) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.read_fd], [], [], max(0.0, remaining))
            if not ready:
                if fail:
                    raise AssertionError("Chromium did not answer within the timeout")
                raise TimeoutError
            chunk = os.read(self.read_fd, 1 << 16)
            assert chunk, "Chromium closed the DevTools pipe"
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return dict(json.loads(raw))

    def record(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params") or {}
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.result.console.append((params.get("type", ""), text))
        elif method == "Runtime.exceptionThrown":
            self.result.exceptions.append(json.dumps(params.get("exceptionDetails", {}))[:300])
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.result.log_entries.append((entry.get("level", ""), f"{entry.get('text')} {entry.get('url', '')}"))
        elif method == "Network.requestWillBeSent":
            self.result.requests.append(params.get("request", {}).get("url", ""))
