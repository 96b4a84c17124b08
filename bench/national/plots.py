"""The national benchmark's plots: each measure against the number of teams, with its
least-squares line carried to the whole of England."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
from matplotlib.figure import Figure

Slice = dict[str, Any]
MEASURES: Final[tuple[tuple[str, str, Callable[[Slice], float]], ...]] = (
    ("events_a_year", "events in the year", lambda s: s["history"]["events"]),
    (
        "waiting_at_midnight",
        "referrals waiting at a midnight",
        lambda s: s["history"]["waiting_at_midnight"],
    ),
    ("rebuild_s", "rebuild, s", lambda s: s["rebuild"]["wall_s"]),
    (
        "first_run_alerts",
        "alerts of the first run after the rebuild",
        lambda s: s["first_run_after_rebuild"]["alerts"],
    ),
    ("restore_s", "restore to deadline index, s", lambda s: s["restore"]["to_deadline_index_s"]),
    (
        "worker_peak_rss_mib",
        "worker peak RSS (restore, first run, midnight), MiB",
        lambda s: max(
            s["restore"]["worker_peak_rss_mib"],
            s["first_run_after_rebuild"]["worker_peak_rss_mib"],
            s["midnight_timers"]["worker_peak_rss_mib"],
        ),
    ),
    (
        "midnight_p99_s",
        "midnight alerts, p99 lateness, s",
        lambda s: s["midnight_timers"]["lateness_appended_s"]["p99"],
    ),
    (
        "takeover_s",
        "take-over after SIGKILL, s",
        lambda s: s["takeover_standby_1"]["takeover_after_sigkill_s"],
    ),
    ("database_mib", "PostgreSQL database, MiB", lambda s: s["store_postgresql"]["database_mib"]),
    ("import_s", "import into PostgreSQL, s", lambda s: s["store_postgresql"]["import"]["wall_s"]),
)


def draw(slices: list[Slice], england_teams: int, path: Path) -> dict[str, dict[str, float]]:
    """Plot every measure of ``slices`` into ``path`` (PNG); each line's slope per 100
    teams, its value with no team (the fixed part) and at ``england_teams`` teams."""
    teams = np.array([s["history"]["teams"] for s in slices], dtype=float)
    columns = 3
    rows = -(-len(MEASURES) // columns)
    figure = Figure(figsize=(5 * columns, 3.6 * rows))
    axes = figure.subplots(rows, columns)
    fitted: dict[str, dict[str, float]] = {}
    line_x = np.linspace(0, england_teams, 50)
    for axis, (key, title, measure) in zip(axes.flat, MEASURES, strict=False):
        values = np.array([measure(s) for s in slices], dtype=float)
        slope, intercept = np.polyfit(teams, values, 1)
        england = float(slope * england_teams + intercept)
        fitted[key] = {
            "per_100_teams": round(float(slope) * 100, 3),
            "fixed": round(float(intercept), 3),
            f"at_{england_teams}_teams": round(england, 3),
        }
        axis.plot(teams, values, "o", color="#005eb8", label="measured")
        axis.plot(line_x, slope * line_x + intercept, "--", color="#768692", label="fitted line")
        if england_teams not in teams:
            axis.plot([england_teams], [england], "s", color="#da291c", label="England, fitted")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("teams")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(MEASURES) :]:
        axis.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    figure.suptitle(
        "mhst-tracker at national scale: measured slices, least-squares line to 600 teams"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    return fitted
