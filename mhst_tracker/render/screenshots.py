"""The README's pictures: ``python -m mhst_tracker.render.screenshots`` after ``make demo``.

Takes headless-Chromium screenshots of the pages the demo writes (``.cache/demo/report.html``
and ``.cache/demo/dashboards.html``) into ``docs/images/``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

from mhst_tracker.render.chromium import ChromiumError, screenshot

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
PAGES: Final = REPO_ROOT / ".cache" / "demo"
IMAGES: Final = REPO_ROOT / "docs" / "images"
SHOTS: Final = (("report.html", "report.png", 1700), ("dashboards.html", "dashboards.png", 1500))


def main() -> int:
    for page, image, height in SHOTS:
        source = PAGES / page
        if not source.exists():
            print(f"{source} not found: run `make demo` first", file=sys.stderr)
            return 1
        try:
            print(screenshot(source, IMAGES / image, width=1200, height=height))
        except ChromiumError as error:
            print(error, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
