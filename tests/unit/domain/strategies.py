"""Hypothesis strategies: events of a few referrals around the spring clock change."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

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


_MISSING = object()
_field_values = {
    "event_id": st.one_of(st.text(max_size=130), st.sampled_from(["e1", "", None, 7, "x" * 128])),
    "type": st.sampled_from([*(kind.value for kind in EventType), "x", "", None, 3, "Allocated"]),
    "referral_id": st.one_of(st.text(max_size=66), st.sampled_from(["R1", "", None, "r" * 64])),
    "occurred_at": st.one_of(
        st.sampled_from(
            [
                "2026-06-10T23:30:00Z",
                "2026-06-11T00:30:00+01:00",
                "2026-06-10T23:30:00",
                "2026-06-10t23:30:00z",
                "2026-06-10T23:30:00.5-05:00",
                "2026-02-30T10:00:00Z",
                "2026-06-10T23:30:00+0100",
                "2026-06-10T25:30:00+01:00",
                "2026-06-10X23:30:00+01:00",
                "",
                None,
                1781134200,
            ]
        ),
        st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=1))])).map(
            lambda moment: moment.isoformat()
        ),
    ),
    "team_id": st.sampled_from(["T1", "", None, 5]),
    "school_id": st.sampled_from(["100001", "", None, 100001]),
    "source": st.sampled_from(["school", "gp", "", None, "teacher", 2]),
    "reason": st.sampled_from(["signposted", "", None, "bored"]),
    "schema_version": st.sampled_from([1, 2, None, True, 1.0, "1"]),
    "extra": st.sampled_from([{"nested": [1, {"deep": None}]}, "x"]),
}


@st.composite
def event_documents(draw: st.DrawFn) -> dict[str, Any]:
    """An event document (a mapping): a valid event with up to three fields changed to
    valid and invalid values, or removed."""
    document: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=128)),
        "type": draw(st.sampled_from([kind.value for kind in EventType])),
        "referral_id": draw(st.text(min_size=1, max_size=64)),
        "occurred_at": draw(
            st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=1))]))
        ).isoformat(),
        "team_id": "T1",
    }
    changed = draw(st.lists(st.sampled_from(sorted(_field_values)), max_size=3, unique=True))
    for field in changed:
        value = draw(st.one_of(st.just(_MISSING), _field_values[field]))
        if value is _MISSING:
            document.pop(field, None)
        else:
            document[field] = value
    return document
