"""Render a report page in headless Chromium: a PNG screenshot or the DOM after its scripts ran.

Used by the report's tests and by ``docs/make_report_screenshot.py``; nothing in ``eval``
needs a browser. Chromium runs with a throw-away profile, no network services and no GPU.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import InputError

#: Where Chromium is looked for, in order (then ``chromium`` / ``chromium-browser`` on PATH).
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def find_chromium() -> str | None:
    """The Chromium executable, or None when it is not installed."""
    for p in CHROMIUM_PATHS:
        if Path(p).is_file():
            return p
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(page: str | Path, width: int, height: int, extra: list[str], timeout: float) -> str:
    """Run headless Chromium on a local page (``page`` may end in ``#fragment``); its stdout."""
    exe = find_chromium()
    if exe is None:
        raise InputError("chromium not found", hint="apt-get install -y chromium")
    path, _, frag = str(page).partition("#")
    uri = Path(path).resolve().as_uri() + (f"#{frag}" if frag else "")
    with tempfile.TemporaryDirectory(prefix="flambient-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               f"--window-size={width},{height}", *extra, uri]
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, text=True)
    return done.stdout


def screenshot(page: str | Path, out: str | Path, width: int = 1400, height: int = 1000,
               timeout: float = 120.0) -> Path:
    """Save a ``width`` x ``height`` PNG of ``page`` (the top of the page) to ``out``."""
    out = Path(out).resolve()
    _run(page, width, height, [f"--screenshot={out}", "--hide-scrollbars"], timeout)
    if not out.is_file():
        raise InputError("chromium wrote no screenshot", Path(page))
    return out


def dump_dom(page: str | Path, width: int = 1400, height: int = 1000, timeout: float = 120.0) -> str:
    """The page's DOM as HTML after its inline scripts ran, in a ``width`` x ``height`` window."""
    return _run(page, width, height, ["--dump-dom"], timeout)
