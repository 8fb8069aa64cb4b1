"""A small harness around Debian's headless Chromium: load a local page, get its DOM after load, its
console output, the network requests it made, and a screenshot.

``--dump-dom`` returns once the page has loaded (its scripts have run), so nothing here waits or
polls. Console messages reach stderr with ``--enable-logging=stderr --v=0`` as ``INFO:CONSOLE`` lines
(Chromium prints every level the same way, so any console line counts). The requests come from a
``--log-net-log`` capture: the page's own requests are the URL requests whose network isolation key
is the ``file://`` page (Chromium's own background traffic to Google services has none, and is turned
off as far as flags allow).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
_FLAGS = ("--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-sync",
          "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
          "--disable-extensions", "--hide-scrollbars", "--mute-audio")
_CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)$")
TIMEOUT_S = 120  # a hung browser fails the test instead of hanging it


@dataclass
class PageLoad:
    """What one page load showed."""

    dom: str                  # document.documentElement.outerHTML after load
    console: list[str]        # console messages (any level), page errors included
    requests: list[str]       # URLs the page requested over the network
    stderr: str


def chromium() -> str:
    """The browser's path; a clear failure (not a skip) when it is not installed."""
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if path is None:
        raise AssertionError("Chromium is required for the report's browser test: "
                             "apt-get install -y chromium")
    return path


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium(), *_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False)


def page_requests(net_log: Path) -> list[str]:
    """URLs of the network requests made on behalf of a ``file://`` page, from a net log."""
    log = json.loads(net_log.read_text(encoding="utf-8"))
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log.get("events", []):
        params = event.get("params") or {}
        if event.get("type") == start and "file://" in str(params.get("network_isolation_key", "")):
            urls.append(str(params.get("url")))
    return urls


def load(page: Path, workdir: Path) -> PageLoad:
    """Open ``page`` once: DOM after load, console lines, page-initiated network requests."""
    net_log = workdir / "net-log.json"
    done = _run(["--enable-logging=stderr", "--v=0", f"--log-net-log={net_log}", "--dump-dom",
                 page.resolve().as_uri()], workdir / "profile-dom")
    if done.returncode != 0:
        raise AssertionError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    console = [m.group(1) for line in done.stderr.splitlines() if (m := _CONSOLE.search(line))]
    return PageLoad(done.stdout, console, page_requests(net_log), done.stderr)


def screenshot(page: Path, out: Path, workdir: Path, size: tuple[int, int] = (1400, 3600)) -> Path:
    """A PNG of ``page`` at ``size`` (width, height) written to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _run([f"--window-size={size[0]},{size[1]}", f"--screenshot={out.resolve()}",
                 page.resolve().as_uri()], workdir / "profile-shot")
    if done.returncode != 0 or not out.exists():
        raise AssertionError(f"chromium did not write {out}: {done.stderr[-2000:]}")
    return out
