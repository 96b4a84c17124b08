"""The commissioners' monthly figures, per team and per school, from the engine's measures.

For a period (a calendar month in the profile's time zone), every referral's state is taken
as of the period's last instant, and :func:`mhst_tracker.domain.measures.summarise` is called
on three groups of states:

* **received**: referrals whose receipt date falls in the period -> ``received``;
* **completed**: referrals seen (intervention started) with the date they left the list in
  the period -> ``completed``, ``seen_within_standard``, ``seen_within_standard_pct``,
  ``median_days_waited``, ``p90_days_waited``;
* **active**: referrals received in the period, or waiting at its end, or that left the list
  in it -> ``breaches_<stage>`` (stages breached as of the period end), ``waiting``,
  ``waiting_past_standard`` and ``waiting_<band>`` (those waiting at the period end).

Small-number suppression (on by default, as NHS England publishes): a count of 1 to 4 is
shown as ``*``, any other count is rounded to the nearest 5; percentages are computed from
the unrounded counts and shown as ``*`` when their denominator is 1 to 4; the median and
90th percentile are shown as ``*`` when the number of completed pathways is 1 to 4.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from mhst_tracker.adapters.store.records import left_list_on
from mhst_tracker.domain.clock import SEEN_STATUSES, ReferralState
from mhst_tracker.domain.measures import WAIT_BANDS, GroupMeasures, Summary, summarise
from mhst_tracker.domain.profile import Profile

SUPPRESSED = "*"
Cell = int | float | str | None
_PERIOD = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar month of local dates."""

    first_day: date
    last_day: date

    @classmethod
    def parse(cls, text: str) -> Period:
        """``YYYY-MM``; ``ValueError`` otherwise."""
        match = _PERIOD.fullmatch(text)
        if match is None:
            raise ValueError(f"period must be YYYY-MM, not {text!r}")
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12:
            raise ValueError(f"period must be YYYY-MM, not {text!r}")
        first = date(year, month, 1)
        following = date(year + month // 12, month % 12 + 1, 1)
        return cls(first, following - timedelta(days=1))

    @property
    def label(self) -> str:
        """``YYYY-MM``."""
        return self.first_day.strftime("%Y-%m")

    def end(self, profile: Profile) -> datetime:
        """The last instant of the period, in UTC."""
        following = datetime.combine(
            self.last_day + timedelta(days=1), time(), tzinfo=profile.timezone
        )
        return following.astimezone(UTC) - timedelta(microseconds=1)


def columns(profile: Profile) -> list[str]:
    """The report's columns, in order."""
    return [
        "period",
        "group",
        "id",
        "received",
        "completed",
        "seen_within_standard",
        "seen_within_standard_pct",
        "median_days_waited",
        "p90_days_waited",
        *(f"breaches_{stage.name}" for stage in profile.stages),
        "waiting",
        "waiting_past_standard",
        *(f"waiting_{band}" for band, _ in WAIT_BANDS),
    ]


def period_report(
    states: Iterable[ReferralState], profile: Profile, period: Period, suppress: bool = True
) -> list[dict[str, Cell]]:
    """One row overall, then one per team, then one per school (ids sorted)."""
    received: list[ReferralState] = []
    completed: list[ReferralState] = []
    active: list[ReferralState] = []
    for state in states:
        if state.received_on is None:
            continue
        is_received = period.first_day <= state.received_on <= period.last_day
        left_on = left_list_on(state)
        has_left = left_on is not None and period.first_day <= left_on <= period.last_day
        if is_received:
            received.append(state)
        if has_left and state.status in SEEN_STATUSES:
            completed.append(state)
        if is_received or has_left or state.is_waiting:
            active.append(state)
    summaries = (
        summarise(received, profile),
        summarise(completed, profile),
        summarise(active, profile),
    )
    empty = summarise([], profile).overall
    overall = (summaries[0].overall, summaries[1].overall, summaries[2].overall)
    rows = [_row(period, "overall", "", profile, overall, suppress)]
    for group, pick in (("team", _by_team), ("school", _by_school)):
        ids = sorted(set().union(*(pick(summary) for summary in summaries)))
        for group_id in ids:
            measures = (
                pick(summaries[0]).get(group_id, empty),
                pick(summaries[1]).get(group_id, empty),
                pick(summaries[2]).get(group_id, empty),
            )
            rows.append(_row(period, group, group_id, profile, measures, suppress))
    return rows


def _by_team(summary: Summary) -> Mapping[str, GroupMeasures]:
    return summary.by_team


def _by_school(summary: Summary) -> Mapping[str, GroupMeasures]:
    return summary.by_school


def _row(
    period: Period,
    group: str,
    group_id: str,
    profile: Profile,
    measures: tuple[GroupMeasures, GroupMeasures, GroupMeasures],
    suppress: bool,
) -> dict[str, Cell]:
    """``measures``: of the received, the completed and the active referrals."""
    received, completed, active = measures
    count = _suppressed_count if suppress else _plain
    small = suppress and 1 <= completed.completed <= 4
    share = completed.seen_within_standard_share
    row: dict[str, Cell] = {
        "period": period.label,
        "group": group,
        "id": group_id,
        "received": count(received.referrals),
        "completed": count(completed.completed),
        "seen_within_standard": count(completed.seen_within_standard),
        "seen_within_standard_pct": SUPPRESSED
        if small
        else (None if share is None else round(share * 100, 1)),
        "median_days_waited": SUPPRESSED if small else completed.median_days_waited,
        "p90_days_waited": SUPPRESSED if small else completed.p90_days_waited,
    }
    for stage in profile.stages:
        row[f"breaches_{stage.name}"] = count(active.breaches.get(stage.name, 0))
    row["waiting"] = count(active.waiting)
    row["waiting_past_standard"] = count(active.waiting_past_standard)
    for band, _ in WAIT_BANDS:
        row[f"waiting_{band}"] = count(active.waiting_by_band.get(band, 0))
    return row


def _plain(value: int) -> Cell:
    return value


def _suppressed_count(value: int) -> Cell:
    """1-4 -> ``*``; otherwise the nearest multiple of 5 (halves round up)."""
    if 1 <= value <= 4:
        return SUPPRESSED
    return (value + 2) // 5 * 5


def report_json(rows: list[dict[str, Cell]], profile: Profile, suppressed: bool) -> dict[str, Any]:
    """The JSON document of ``mhst-tracker report --format json``."""
    return {
        "period": rows[0]["period"] if rows else None,
        "profile": profile.name,
        "suppressed": suppressed,
        "rows": rows,
    }
