"""Headless Debian ``chromium`` driven over the DevTools protocol (websocket-client only).

``Browser`` starts chromium on a free debugging port with a profile in a temporary folder,
attaches to its first tab and offers what the page tests need: navigate, evaluate (awaiting
promises), wait for a condition, type, press keys, resize, screenshot. Every JavaScript
exception and console error the page raises is kept in ``problems``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import websocket

CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    """The chromium executable on PATH, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(AssertionError):
    """The page did not do what the test waited for."""


class Browser:
    def __init__(self, executable: str, width: int = 1280, height: int = 900) -> None:
        self.executable = executable
        self.width, self.height = width, height
        self.problems: list[str] = []
        self._profile = tempfile.mkdtemp(prefix="wk-chromium-")
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: websocket.WebSocket | None = None
        self._ids = 0

    def __enter__(self) -> Browser:
        args = [
            self.executable,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--no-pings",
            # only loopback: any other host name fails to resolve, so no test reaches out
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={self._profile}",
            f"--window-size={self.width},{self.height}",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise BrowserError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split("\n")[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            targets = json.loads(reply.read())
        page = next(t for t in targets if t["type"] == "page")
        self._socket = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True
        )
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            self._process = None
        shutil.rmtree(self._profile, ignore_errors=True)

    # -- the protocol ---------------------------------------------------------------------

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a DevTools method and return its result (events meanwhile are noted)."""
        assert self._socket is not None
        self._ids += 1
        ident = self._ids
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._note(message)

    def _note(self, event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.problems.append(f"exception: {text}")
        elif method == "Log.entryAdded":
            entry = params["entry"]
            # a media URL that cannot load offline is the user's data, not a page problem
            if entry["level"] == "error" and entry.get("source") != "network":
                self.problems.append(f"{entry.get('source')}: {entry['text']}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.problems.append(f"console: {params.get('args')}")

    # -- what tests use ---------------------------------------------------------------------

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (a promise is awaited)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(
                f"{expression!r} raised {details.get('exception', {}).get('description')}"
            )
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 15.0) -> Any:
        """Poll ``expression`` until it is truthy; fail naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        probe = f"(v => v instanceof Node ? true : v)({expression})"  # a node is not JSON
        while True:
            value = self.evaluate(probe)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", f"{url} to load")

    def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    def type_text(self, text: str) -> None:
        """Type into the focused element, as a keyboard would."""
        self.send("Input.insertText", text=text)

    def press(self, key: str, code: str, key_code: int, text: str | None = None) -> None:
        """Press and release one key: ``("Tab", "Tab", 9)``, ``("Enter", "Enter", 13, "\\r")``."""
        down: dict[str, Any] = {"key": key, "code": code, "windowsVirtualKeyCode": key_code}
        if text is not None:
            down["text"] = text
        self.send("Input.dispatchKeyEvent", type="keyDown" if text else "rawKeyDown", **down)
        self.send(
            "Input.dispatchKeyEvent",
            type="keyUp",
            key=key,
            code=code,
            windowsVirtualKeyCode=key_code,
        )

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the whole page: the viewport grows to the content's height for it."""
        width, height = self.evaluate("[window.innerWidth, window.innerHeight]")
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        self.viewport(width, max(height, int(size["height"])), mobile=width < 700)
        self.wait_for("document.fonts.status === 'loaded'", "the fonts")
        result = self.send("Page.captureScreenshot", format="png")
        self.viewport(width, height, mobile=width < 700)
        path.write_bytes(base64.b64decode(result["data"]))
        return path
