"""Small builders for events and clocks, so each test states only what matters to it."""

from collections.abc import Iterable
from datetime import datetime
from itertools import count
from typing import Any

from mhst_tracker.domain.clock import ReferralClock, ReferralState
from mhst_tracker.domain.events import Event, parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW, Profile

_ids = count(1)

DOMAIN_EXAMPLE_STATE: dict[str, Any] = {
    "referral_id": "R1",
    "team_id": "T1",
    "school_id": None,
    "status": "waiting_within_standard",
    "received_on": "2026-02-20",
    "days_waited": 9,
    "dna_count": 0,
    "flags": [],
    "stages": {
        "assessment": {"due_on": "2026-02-20", "done_on": "2026-02-20", "state": "met"},
        "allocation": {"due_on": "2026-02-27", "done_on": None, "state": "breached"},
        "intervention": {"due_on": "2026-03-20", "done_on": None, "state": "pending"},
    },
}
"""The domain page's example: R1 received and assessed on 20 February, as of 1 March."""


def event(type_: str, occurred_at: str, referral_id: str = "R1", **fields: Any) -> Event:
    """A valid event through the real parser; a receipt gets team ``T1`` unless told."""
    data: dict[str, Any] = {
        "event_id": fields.pop("event_id", f"e{next(_ids)}"),
        "type": type_,
        "referral_id": referral_id,
        "occurred_at": occurred_at,
    }
    if type_ == "referral_received":
        data["team_id"] = "T1"
    data.update(fields)
    return parse_event(data)


def clock_of(events: Iterable[Event], referral_id: str = "R1") -> ReferralClock:
    """A clock with ``events`` applied in the given order."""
    clock = ReferralClock(referral_id)
    for item in events:
        clock.apply(item)
    return clock


def state_of(
    events: Iterable[Event], as_of: str, profile: Profile = TRAILBLAZER_4WW
) -> ReferralState:
    """The state of referral R1 as of ``as_of`` (RFC 3339)."""
    return clock_of(events).state(datetime.fromisoformat(as_of), profile)
