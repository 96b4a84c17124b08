"""The commissioned target for the headline share and its red/amber/green bands.

One definition serves the monthly report, the generated Grafana dashboards and the static
dashboard page, so a share is coloured the same wherever a person reads it.
"""

from __future__ import annotations

from typing import Final, Literal

TARGET_SHARE: Final = 0.9
"""The share of completed pathways to be seen within the standard (the commissioned target)."""
AMBER_FROM: Final = 0.8
"""Below the target but at least this share is amber; below it, red."""

Rag = Literal["red", "amber", "green"]
COLOURS: Final[dict[str, str]] = {"red": "#c4314b", "amber": "#e0a100", "green": "#2e8540"}
"""The three colours (also Grafana's thresholds' colours on the dashboards)."""


def rag(share: float | None) -> Rag | None:
    """The band of ``share`` (a ratio, 0 to 1); ``None`` when there is no share to judge."""
    if share is None:
        return None
    if share >= TARGET_SHARE:
        return "green"
    return "amber" if share >= AMBER_FROM else "red"
