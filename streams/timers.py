"""The worker's Faust timers: deadlines every :data:`TICK_INTERVAL`, the date every
:data:`DATE_CHECK_INTERVAL`.

* ``fire-deadlines`` (on every worker, for the partitions it actively owns) raises the
  alerts whose deadline has come, in bulk, and prepares the next
  (:meth:`ReferralTracker.fire_deadlines
  <mhst_tracker.tracking.tracker.ReferralTracker.fire_deadlines>`).
* ``refresh-metrics`` restates the owned partitions' metrics once the local date changes
  (:meth:`ReferralTracker.refresh_metrics
  <mhst_tracker.tracking.tracker.ReferralTracker.refresh_metrics>`).
"""

from __future__ import annotations

from typing import Final

import faust

from mhst_tracker.tracking.tracker import ReferralTracker

TICK_INTERVAL: Final = 0.1
"""Seconds of wall time between two looks at the deadline index."""
DATE_CHECK_INTERVAL: Final = 0.1
"""Seconds of wall time between two looks at the local date (a comparison, nothing more).

Short, so the wait bands move on promptly after midnight also on a simulated clock that
runs a day a second (the demo)."""


def deadline_timers(app: faust.App, tracker: ReferralTracker) -> None:
    """Register the two timers on ``app``."""
    app.timer(TICK_INTERVAL, name="fire-deadlines")(tracker.fire_deadlines)
    app.timer(DATE_CHECK_INTERVAL, name="refresh-metrics")(tracker.refresh_metrics)
