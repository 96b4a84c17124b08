"""The optimised replay gives the same bytes as the slow, obvious way of computing them.

The reference recomputes every state with :func:`reference_state` (the clock as it was
before it was optimised), the measures from those states, and renders through the
``to_dict`` methods and ``orjson.dumps``; the replay's own ``to_json`` must match it byte
for byte on a simulated stream, at several moments.
"""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mhst_tracker.domain.clock import ReferralClock
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import Event, parse_events
from mhst_tracker.domain.measures import summarise
from mhst_tracker.domain.profile import TRAILBLAZER_4WW, Profile
from mhst_tracker.replay import Replayer, ReplayResult
from mhst_tracker.simulate import simulate
from tests.unit.domain.reference_clock import reference_state
from tests.unit.domain.strategies import many_referrals_events, moments

LINES = [line.encode() for line in simulate(7, date(2025, 9, 1), referrals=3000)]
REPLAYER = Replayer()
REPLAYER.feed(LINES)


def _first_events() -> dict[str, datetime]:
    """Each referral's earliest valid event, read from the lines themselves."""
    first: dict[str, datetime] = {}
    for event in parse_events(LINES):
        if isinstance(event, InvalidEvent):
            continue
        moment = first.get(event.referral_id)
        if moment is None or event.occurred_at < moment:
            first[event.referral_id] = event.occurred_at
    return first


FIRST_EVENTS = _first_events()


def reference_json(replayer: Replayer, as_of: datetime, profile: Profile) -> bytes:
    """The replay output computed the slow way: reference states of the referrals one of
    whose events occurred by ``as_of``, ``to_dict``, orjson."""
    clocks = replayer.clocks
    states = tuple(
        reference_state(clocks[key], as_of, profile)
        for key in sorted(clocks)
        if FIRST_EVENTS[key] <= as_of
    )
    result = ReplayResult(
        as_of=as_of,
        profile=profile,
        referrals=states,
        rejected=tuple(replayer.rejected),
        duplicates=replayer.duplicates,
        summary=summarise(states, profile, rejected_events=len(replayer.rejected)),
    )
    return orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2)


@pytest.mark.parametrize(
    "as_of",
    [
        datetime(2025, 10, 26, 0, 30, tzinfo=UTC),  # an hour before the autumn clock change
        datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC),
        datetime(2026, 7, 1, 12, tzinfo=UTC).astimezone(ZoneInfo("Europe/London")),
        datetime(2027, 1, 1, tzinfo=UTC),
    ],
)
def test_replay_json_is_byte_identical_to_the_reference(as_of: datetime) -> None:
    result = REPLAYER.result(as_of, TRAILBLAZER_4WW)
    existing = sum(1 for first in FIRST_EVENTS.values() if first <= as_of)
    assert len(result.referrals) == existing > 300
    assert result.to_json() == reference_json(REPLAYER, as_of, TRAILBLAZER_4WW)


def test_replay_json_is_byte_identical_under_another_time_zone() -> None:
    profile = Profile(
        name="far-away", stages=TRAILBLAZER_4WW.stages, timezone=ZoneInfo("Pacific/Chatham")
    )
    as_of = datetime(2026, 4, 5, 14, 10, tzinfo=UTC)
    assert REPLAYER.result(as_of, profile).to_json() == reference_json(REPLAYER, as_of, profile)


ZONES = ["Europe/London", "America/St_Johns", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"]


@settings(max_examples=150)
@given(
    events=many_referrals_events(),
    as_of=moments,
    zone=st.sampled_from(ZONES),
    extra_days=st.integers(min_value=-3, max_value=60),
)
def test_states_equal_the_reference_in_any_zone(
    events: list[Event], as_of: datetime, zone: str, extra_days: int
) -> None:
    profile = Profile(name="p", stages=TRAILBLAZER_4WW.stages, timezone=ZoneInfo(zone))
    as_of += timedelta(days=extra_days)
    clocks: dict[str, ReferralClock] = {}
    for event in events:
        clocks.setdefault(event.referral_id, ReferralClock(event.referral_id)).apply(event)
    for clock in clocks.values():
        assert clock.state(as_of, profile) == reference_state(clock, as_of, profile)
