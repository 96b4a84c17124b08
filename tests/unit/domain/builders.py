"""Small builders for events and clocks, so each test states only what matters to it."""

from collections.abc import Iterable
from datetime import datetime
from itertools import count
from typing import Any

from mhst_tracker.domain.clock import ReferralClock, ReferralState
from mhst_tracker.domain.events import Event, parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW, Profile

_ids = count(1)


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
