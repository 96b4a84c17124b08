"""Digest moments in local time across British Summer Time; retries back off with jitter."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from mhst_tracker.notify.config import Delivery
from mhst_tracker.notify.schedule import (
    backoff_seconds,
    digest_moment,
    due_digest_day,
    next_attempt,
    next_digest_moment,
)

LONDON = ZoneInfo("Europe/London")
EIGHT = time(8, 0)


def test_eight_oclock_is_seven_utc_in_summer_and_eight_in_winter() -> None:
    # British Summer Time 2026: from 29 March to 25 October.
    assert digest_moment(date(2026, 3, 28), EIGHT, LONDON) == datetime(2026, 3, 28, 8, tzinfo=UTC)
    assert digest_moment(date(2026, 3, 29), EIGHT, LONDON) == datetime(2026, 3, 29, 7, tzinfo=UTC)
    assert digest_moment(date(2026, 10, 24), EIGHT, LONDON) == datetime(2026, 10, 24, 7, tzinfo=UTC)
    assert digest_moment(date(2026, 10, 25), EIGHT, LONDON) == datetime(2026, 10, 25, 8, tzinfo=UTC)


def test_the_next_moment_across_the_changes_is_23_and_25_hours_away() -> None:
    before_spring = datetime(2026, 3, 28, 8, tzinfo=UTC)
    assert next_digest_moment(before_spring, EIGHT, LONDON) - before_spring == timedelta(hours=23)
    before_autumn = datetime(2026, 10, 24, 7, tzinfo=UTC)
    assert next_digest_moment(before_autumn, EIGHT, LONDON) - before_autumn == timedelta(hours=25)


def test_the_day_due_changes_at_the_moment() -> None:
    moment = digest_moment(date(2026, 6, 1), EIGHT, LONDON)
    assert due_digest_day(moment - timedelta(microseconds=1), EIGHT, LONDON) == date(2026, 5, 31)
    assert due_digest_day(moment, EIGHT, LONDON) == date(2026, 6, 1)


@given(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ),
    st.times(),
    st.sampled_from(["Europe/London", "America/New_York", "Australia/Lord_Howe", "UTC"]),
)
def test_due_and_next_moments_bracket_now(now: datetime, at: time, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    due = digest_moment(due_digest_day(now, at, zone), at, zone)
    upcoming = next_digest_moment(now, at, zone)
    assert due <= now < upcoming
    assert timedelta(hours=22) <= upcoming - due <= timedelta(hours=26)
    local = upcoming.astimezone(zone)
    assert local.date() == due.astimezone(zone).date() + timedelta(days=1)


def test_backoff_doubles_to_the_cap_with_jitter_in_the_upper_half() -> None:
    delivery = Delivery(backoff_seconds=30, max_backoff_seconds=600, max_attempts=5)
    assert backoff_seconds(1, delivery, 0.0) == 15
    assert backoff_seconds(1, delivery, 0.999) < 30
    assert backoff_seconds(2, delivery, 0.0) == 30
    assert backoff_seconds(3, delivery, 0.5) == 90
    assert backoff_seconds(10, delivery, 0.0) == 300
    assert backoff_seconds(10, delivery, 0.999) < 600


def test_attempts_run_out() -> None:
    delivery = Delivery(backoff_seconds=1, max_attempts=3)
    now = datetime(2026, 9, 1, tzinfo=UTC)
    assert next_attempt(1, delivery, now, 0.0) == now + timedelta(seconds=0.5)
    assert next_attempt(2, delivery, now, 0.0) == now + timedelta(seconds=1)
    assert next_attempt(3, delivery, now, 0.0) is None
