"""Hypothesis strategies: events of a few referrals around the spring clock change."""

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

from mhst_tracker.domain.events import Event, EventType

WINDOW_START = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW_DAYS = 70
"""From 1 March 2026 over the start of British Summer Time (29 March) to early May."""

OFFSETS = [
    UTC,
    timezone(timedelta(hours=1)),
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=5, minutes=45)),
]

moments = st.builds(
    lambda seconds, offset: (WINDOW_START + timedelta(seconds=seconds)).astimezone(offset),
    st.integers(min_value=0, max_value=WINDOW_DAYS * 86400),
    st.sampled_from(OFFSETS),
)
"""Aware instants in the window, written with assorted offsets."""


@st.composite
def referral_events(draw: st.DrawFn, referral_id: str = "R1", max_size: int = 12) -> list[Event]:
    """Distinct events (unique ids) of one referral; usually with at least one receipt."""
    size = draw(st.integers(min_value=0, max_value=max_size))
    events = []
    for index in range(size):
        kind = draw(st.sampled_from(list(EventType)))
        if index == 0 and draw(st.integers(0, 9)) > 0:
            kind = EventType.REFERRAL_RECEIVED
        events.append(
            Event(
                event_id=f"{referral_id}-e{index}",
                type=kind,
                referral_id=referral_id,
                occurred_at=draw(moments),
                team_id=draw(st.sampled_from(["T1", "T2"])),
                school_id=draw(st.sampled_from([None, "100001", "100002"])),
            )
        )
    return events


@st.composite
def many_referrals_events(draw: st.DrawFn) -> list[Event]:
    """The events of up to six referrals, interleaved."""
    count = draw(st.integers(min_value=0, max_value=6))
    events = [item for n in range(count) for item in draw(referral_events(f"R{n}", max_size=8))]
    return draw(st.permutations(events))
