"""Headless Chromium (Debian's ``chromium``): a page's screenshot and its parsed document.

Used by the tests that look at the report and the dashboard page as a person would, and by
``python -m mhst_tracker.render.screenshots`` to regenerate the README's pictures. Each run
gets a fresh profile directory and no network beyond the file it opens.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

CHROMIUM: Final = "/usr/bin/chromium"
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
TIMEOUT_SECONDS: Final = 90


class ChromiumError(Exception):
    """Chromium is missing or failed."""


def _run(page: Path, *arguments: str) -> str:
    executable = shutil.which(CHROMIUM) or shutil.which("chromium")
    if executable is None:
        raise ChromiumError(
            f"{CHROMIUM} not found: run deploy/local/install-system-deps.sh (Debian chromium)"
        )
    with tempfile.TemporaryDirectory(prefix="mhst-chromium-") as profile:
        try:
            result = subprocess.run(
                [
                    executable,
                    *FLAGS,
                    f"--user-data-dir={profile}",
                    *arguments,
                    page.resolve().as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ChromiumError(f"chromium did not finish {page} in {TIMEOUT_SECONDS} s") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise ChromiumError(f"chromium failed on {page}: {last}")
    return result.stdout


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 1600) -> Path:
    """A PNG of the top ``width`` x ``height`` pixels of ``page``."""
    png.parent.mkdir(parents=True, exist_ok=True)
    _run(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")
    if not png.exists():
        raise ChromiumError(f"chromium wrote no screenshot of {page}")
    return png


def rendered_dom(page: Path) -> str:
    """The document as Chromium parsed and laid it out (``--dump-dom``)."""
    return _run(page, "--dump-dom")
