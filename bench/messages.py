"""The simulated event stream the stream benchmarks publish: (key, value) of each valid event."""

from __future__ import annotations

from datetime import date

from mhst_tracker.domain.events import Event, parse_events
from mhst_tracker.simulate import simulate

Messages = list[tuple[bytes, bytes]]

START = date(2025, 9, 1)


def valid_messages(events: int, seed: int) -> Messages:
    """(referral id, line) of the valid events of a simulated stream from :data:`START`."""
    lines = list(simulate(seed, START, events=events))
    return [
        (parsed.referral_id.encode(), line.encode())
        for line, parsed in zip(lines, parse_events(lines), strict=True)
        if isinstance(parsed, Event)
    ]
