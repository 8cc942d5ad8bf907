"""Open an HTML page in headless Chromium and say whether it is whole and self-contained.

    python -m harness.analysis.pagecheck results/quick/<run>/report.html --screenshot shot.png

Drives Chromium's DevTools protocol over `--remote-debugging-pipe` (JSON messages ended by a
NUL byte on file descriptors 3 and 4), so no Python package beyond the standard library is
needed; the browser is Debian's `chromium-headless-shell` (or `chromium`), which the set-up
script installs. Reports: the page's text length, its images and how many failed to load,
every console error or uncaught exception, every request for something outside the file
itself (anything but the page's own file: URL and data: URIs), and a full-page screenshot
with the spread of its pixel values (a blank page has none).
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium-headless-shell", "chromium", "/usr/lib/chromium/chromium-headless-shell",
            "/usr/lib/chromium/headless_shell", "chromium-browser", "google-chrome")
LOAD_TIMEOUT_S = 60.0
PROBE = ("JSON.stringify({text: document.body ? document.body.innerText.length : 0,"
         " images: document.images.length,"
         " broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length})")


def find_browser() -> str | None:
    """The first headless-capable Chromium on this machine, or None."""
    for name in BROWSERS:
        path = shutil.which(name) or (name if os.path.isfile(name) else None)
        if path:
            return path
    return None


class Pipe:
    """One Chromium process and its DevTools pipe: commands out, results and events in."""

    def __init__(self, browser: str, profile_dir: str):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():                      # in the child: the pipe's ends become fds 3 and 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3), os.dup2(b, 4)
        args = [browser, "--headless", "--remote-debugging-pipe", "--no-sandbox",
                "--disable-gpu", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                f"--user-data-dir={profile_dir}", "--window-size=1280,900", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=fds, pass_fds=(3, 4))
        os.close(to_chrome_r), os.close(from_chrome_w)
        self.buffer, self.next_id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and wait for its result (events seen meanwhile are kept)."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self.read(LOAD_TIMEOUT_S)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def read(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from the browser")
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed its DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def wait_event(self, method: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self.read(max(deadline - time.monotonic(), 0.1)))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.to_chrome, self.from_chrome):
            os.close(fd)


def check_page(page: Path, browser: str, screenshot: Path | None = None) -> dict:
    """Load `page` and report what it showed, loaded, asked for and complained about."""
    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="pagecheck-") as profile:
        pipe = Pipe(browser, profile)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target,
                                                          "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.events.clear()
            pipe.send("Page.navigate", {"url": url}, session)
            pipe.wait_event("Page.loadEventFired", LOAD_TIMEOUT_S)
            probe = json.loads(pipe.send("Runtime.evaluate", {"expression": PROBE,
                                                              "returnByValue": True},
                                         session)["result"]["value"])
            size = pipe.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            shot = base64.b64decode(pipe.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"],
                         "height": min(size["height"], 16000), "scale": 1}}, session)["data"])
        finally:
            pipe.close()
    requests = [e["params"]["request"]["url"] for e in pipe.events
                if e.get("method") == "Network.requestWillBeSent"]
    errors = [_error_text(e) for e in pipe.events if _is_error(e)]
    if screenshot is not None:
        Path(screenshot).write_bytes(shot)
    return {**probe, "outside_requests": [u for u in requests
                                          if u != url and not u.startswith("data:")],
            "errors": errors, "screenshot_spread": _spread(shot),
            "screenshot_px": [round(size["width"]), round(size["height"])]}


def _is_error(event: dict) -> bool:
    method, params = event.get("method"), event.get("params", {})
    return (method == "Runtime.exceptionThrown"
            or (method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"))
            or (method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error")
            or method == "Network.loadingFailed")


def _error_text(event: dict) -> str:
    params = event.get("params", {})
    detail = (params.get("entry", {}).get("text") or params.get("errorText")
              or params.get("exceptionDetails", {}).get("text")
              or " ".join(str(a.get("value")) for a in params.get("args", [])))
    return f"{event['method']}: {detail}"


def _spread(png: bytes) -> float:
    """Standard deviation of the screenshot's pixel values (0 for a blank page)."""
    import matplotlib.image as mpimg
    return float(mpimg.imread(io.BytesIO(png), format="png").std())


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m harness.analysis.pagecheck",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("--screenshot", type=Path, default=None)
    args = ap.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print("error: no Chromium found (the set-up script installs chromium-headless-shell)",
              file=sys.stderr)
        return 2
    if not args.page.is_file():
        print(f"error: {args.page}: no such file", file=sys.stderr)
        return 2
    result = check_page(args.page, browser, args.screenshot)
    print(json.dumps(result, indent=1))
    bad = result["broken"] or result["errors"] or result["outside_requests"] or not result["text"]
    return 1 if bad or result["screenshot_spread"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
