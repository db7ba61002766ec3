"""Debian's chromium, headless, on a local HTML file: the DOM it built and a screenshot of what it painted.

No network: the page is a file, the browser runs with QUIC, background networking, component updates and sync
off, in a fresh profile directory (``--user-data-dir``, one per call); the report's Content-Security-Policy
forbids fetching anything anyway.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--disable-extensions", "--disable-default-apps", "--mute-audio"]


def chromium():
    """The chromium binary, or None when it is not installed."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium")


def _run(page, profile, extra, timeout):
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed (make setup installs Debian's chromium)")
    command = [binary] + FLAGS + ["--user-data-dir=%s" % profile] + extra + [Path(page).resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError("chromium failed (exit %d): %s" % (done.returncode, done.stderr[-2000:]))
    return done.stdout


def dump_dom(page, workdir, timeout=120):
    """The DOM chromium built from ``page``, serialized."""
    return _run(page, Path(workdir) / "profile-dom", ["--dump-dom"], timeout)


def screenshot(page, png, workdir, width=1400, height=1800, timeout=120):
    """A PNG of ``page`` as chromium paints it at ``width`` x ``height``."""
    _run(page, Path(workdir) / "profile-shot", ["--window-size=%d,%d" % (width, height), "--screenshot=%s" % png],
         timeout)
    return Path(png)
