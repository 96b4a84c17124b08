"""The seam between the workers and whatever watches them (the clinical metrics).

The worker calls an injected :class:`WorkerObserver` with each referral's new state, each
alert it publishes and each message it rejects. Observers must be quick and must not raise:
they run inside the stream.
"""

from __future__ import annotations

from typing import Protocol

from mhst_tracker.domain.alerts import Alert
from mhst_tracker.domain.clock import ReferralState


class WorkerObserver(Protocol):
    """Receives what the worker decides, as it decides it."""

    def on_state(self, state: ReferralState) -> None:
        """A referral's state as of now, after an event or a deadline changed it."""

    def on_alert(self, alert: Alert) -> None:
        """An alert the worker has just published."""

    def on_rejected(self, reason: str) -> None:
        """A message sent to the dead-letter topic, with the reason."""


class NoObserver:
    """Watches nothing."""

    def on_state(self, state: ReferralState) -> None:
        """Ignore the state."""

    def on_alert(self, alert: Alert) -> None:
        """Ignore the alert."""

    def on_rejected(self, reason: str) -> None:
        """Ignore the rejection."""
