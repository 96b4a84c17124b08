"""The commissioners' monthly figures, per team, school and referral source, from the engine.

For a period (a calendar month in the profile's time zone), every referral's state is taken
as of the period's last instant (or now, for the month in progress), and
:func:`mhst_tracker.domain.measures.summarise` is called on three groups of states:

* **received**: referrals whose receipt date falls in the period -> ``received``;
* **completed**: referrals seen (intervention started) with the date they left the list in
  the period -> ``completed``, ``seen_within_standard``, ``seen_within_standard_pct``,
  ``median_days_waited``, ``p90_days_waited``;
* **active**: referrals received in the period, or waiting at its end, or that left the list
  in it -> ``breaches_<stage>`` (stages breached as of the period end), ``waiting``,
  ``waiting_past_standard`` and ``waiting_<band>`` (those waiting at the period end).

Rows: overall, then per team, per school, and per referral source (the contract's
``source`` of the receipt that started the clock; ``not recorded`` when it had none).

**Suppression** (:class:`Suppression`, by default :data:`NHS_ENGLAND`, the rule of NHS
England's sub-national MHSDS statistics): a count from 1 to ``small_max`` is published as
``*``, any other count rounded to the nearest ``round_to``. Percentages, the red/amber/green
status, the median and the 90th percentile are computed from the unrounded counts and
published as ``*`` when their denominator (the completed pathways) would be.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from mhst_tracker.adapters.store.models import EventRow, ReferralRow
from mhst_tracker.adapters.store.records import left_list_on
from mhst_tracker.domain.clock import SEEN_STATUSES, ReferralState
from mhst_tracker.domain.measures import WAIT_BANDS, GroupMeasures, summarise
from mhst_tracker.domain.profile import Profile
from mhst_tracker.rag import TARGET_SHARE, rag

SUPPRESSED: Final = "*"
NOT_RECORDED: Final = "not recorded"
"""The source of a referral whose receipt carried no ``source``."""
TREND_MONTHS: Final = 12
EN_DASH: Final = "\u2013"
Cell = int | float | str | None
_PERIOD = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, slots=True)
class Suppression:
    """Small-number suppression of published figures.

    ``small_max``: counts from 1 to this are shown as ``*`` (0 turns that off);
    ``round_to``: every other count is rounded to the nearest multiple (1: unrounded;
    a half rounds up).
    """

    small_max: int
    round_to: int

    def __post_init__(self) -> None:
        if self.small_max < 0 or self.round_to < 1:
            raise ValueError("suppression needs small_max >= 0 and round_to >= 1")

    @property
    def applied(self) -> bool:
        """Whether any figure can differ from the unrounded one."""
        return self.small_max > 0 or self.round_to > 1

    def count(self, value: int) -> Cell:
        """A count as published."""
        if self.hides(value):
            return SUPPRESSED
        return (value + self.round_to // 2) // self.round_to * self.round_to

    def hides(self, count: int) -> bool:
        """Whether ``count`` (or a figure whose denominator it is) is published as ``*``."""
        return 1 <= count <= self.small_max

    @property
    def label(self) -> str:
        """A short name of the rule: ``1-7 as *, nearest 5`` or ``none``."""
        if not self.applied:
            return "none"
        parts = [f"1-{self.small_max} as {SUPPRESSED}"] if self.small_max else []
        if self.round_to > 1:
            parts.append(f"nearest {self.round_to}")
        return ", ".join(parts)

    def describe(self) -> str:
        """One sentence naming the rule, for every output format."""
        if not self.applied:
            return "No small-number suppression: every figure is exact (not for publication)."
        parts = []
        if self.small_max:
            parts.append(f"counts from 1 to {self.small_max} are shown as {SUPPRESSED}")
        if self.round_to > 1:
            parts.append(f"other counts are rounded to the nearest {self.round_to}")
        rule = "; ".join(parts)
        origin = (
            " (NHS England's rule for sub-national MHSDS statistics)" if self == NHS_ENGLAND else ""
        )
        return (
            f"Small-number suppression{origin}: {rule}; percentages, medians and 90th "
            f"percentiles are computed from unrounded counts and shown as {SUPPRESSED} when "
            "their denominator (pathways seen) is suppressed."
        )

    def to_dict(self) -> dict[str, Any]:
        """The rule as data, for JSON."""
        return {
            "applied": self.applied,
            "label": self.label,
            "small_max": self.small_max,
            "round_to": self.round_to,
            "description": self.describe(),
        }


NHS_ENGLAND: Final = Suppression(small_max=7, round_to=5)
"""NHS England's sub-national MHSDS rule: 1 to 7 shown as ``*``, the rest to the nearest 5."""
NO_SUPPRESSION: Final = Suppression(small_max=0, round_to=1)


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
        return cls.of_month(year, month)

    @classmethod
    def of_month(cls, year: int, month: int) -> Period:
        """The month ``month`` of ``year``."""
        first = date(year, month, 1)
        following = date(year + month // 12, month % 12 + 1, 1)
        return cls(first, following - timedelta(days=1))

    @property
    def label(self) -> str:
        """``YYYY-MM``."""
        return self.first_day.strftime("%Y-%m")

    @property
    def title(self) -> str:
        """``September 2026``."""
        return self.first_day.strftime("%B %Y")

    def previous(self) -> Period:
        """The month before."""
        before = self.first_day - timedelta(days=1)
        return Period.of_month(before.year, before.month)

    def trailing(self, months: int) -> list[Period]:
        """The ``months`` months ending with this one, oldest first."""
        periods = [self]
        while len(periods) < months:
            periods.append(periods[-1].previous())
        return periods[::-1]

    def end(self, profile: Profile) -> datetime:
        """The last instant of the period, in UTC."""
        following = datetime.combine(
            self.last_day + timedelta(days=1), time(), tzinfo=profile.timezone
        )
        return following.astimezone(UTC) - timedelta(microseconds=1)


SHARE_COLUMNS: Final = (
    "completed",
    "seen_within_standard",
    "seen_within_standard_pct",
    "seen_within_standard_rag",
    "median_days_waited",
    "p90_days_waited",
)
"""The columns of the share seen within the standard and the waits of completed pathways."""


def columns(profile: Profile) -> list[str]:
    """The report's machine columns (CSV and JSON), in order."""
    return [
        "period",
        "group",
        "id",
        "received",
        *SHARE_COLUMNS,
        *(f"breaches_{stage.name}" for stage in profile.stages),
        "waiting",
        "waiting_past_standard",
        *(f"waiting_{band}" for band, _ in WAIT_BANDS),
    ]


def standard_wording(profile: Profile) -> str:
    """The final stage's target as a person says it: ``4 weeks`` (or ``27 days``)."""
    days = profile.stages[-1].target_days
    return f"{days // 7} weeks" if days % 7 == 0 and days else f"{days} days"


def headers(profile: Profile) -> dict[str, str]:
    """The column headers a person reads, by machine column."""
    standard = standard_wording(profile)
    names = {
        "period": "Month",
        "group": "Breakdown",
        "id": "Name",
        "received": "Referrals received",
        "completed": "Seen (intervention started)",
        "seen_within_standard": f"Seen within {standard}",
        "seen_within_standard_pct": f"% seen within {standard}",
        "seen_within_standard_rag": "Against target",
        "median_days_waited": "Median days waited",
        "p90_days_waited": "90th percentile days waited",
        "waiting": "Waiting at month end",
        "waiting_past_standard": f"Waiting over {standard}",
    }
    for stage in profile.stages:
        names[f"breaches_{stage.name}"] = f"{stage.name.capitalize()} breaches"
    for band, _ in WAIT_BANDS:
        names[f"waiting_{band}"] = "Waiting " + band.replace("-", EN_DASH) + " days"
    return names


Groups = tuple[GroupMeasures, GroupMeasures, GroupMeasures]
"""The measures of one group's received, completed and active referrals."""


def period_report(
    states: Iterable[ReferralState],
    profile: Profile,
    period: Period,
    suppression: Suppression = NHS_ENGLAND,
    sources: Mapping[str, str] | None = None,
) -> list[dict[str, Cell]]:
    """One row overall, then per team, per school and per source (ids sorted).

    ``sources`` maps referral ids to their referral source; without it, no source rows.
    """
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
    lists = (received, completed, active)
    summaries = tuple(summarise(states, profile) for states in lists)
    empty = summarise([], profile).overall
    rows = [
        publish(period, "overall", "", profile, (*(s.overall for s in summaries),), suppression)
    ]
    for group, pick in (("team", "by_team"), ("school", "by_school")):
        by_id = [getattr(summary, pick) for summary in summaries]
        for group_id in sorted(set().union(*by_id)):
            measures = (*(groups.get(group_id, empty) for groups in by_id),)
            rows.append(publish(period, group, group_id, profile, measures, suppression))
    if sources is not None:
        for source in sorted({sources.get(state.referral_id, NOT_RECORDED) for state in active}):
            measures = (
                *(
                    summarise(
                        (s for s in states if sources.get(s.referral_id, NOT_RECORDED) == source),
                        profile,
                    ).overall
                    for states in lists
                ),
            )
            rows.append(publish(period, "source", source, profile, measures, suppression))
    return rows


def publish(
    period: Period,
    group: str,
    group_id: str,
    profile: Profile,
    measures: tuple[GroupMeasures, ...],
    suppression: Suppression,
) -> dict[str, Cell]:
    """One row, as published under ``suppression``; ``measures``: of the received, the
    completed and the active referrals."""
    received, completed, active = measures
    count = suppression.count
    hidden = suppression.hides(completed.completed)
    share = completed.seen_within_standard / completed.completed if completed.completed else None
    row: dict[str, Cell] = {
        "period": period.label,
        "group": group,
        "id": group_id,
        "received": count(received.referrals),
        "completed": count(completed.completed),
        "seen_within_standard": count(completed.seen_within_standard),
        "seen_within_standard_pct": SUPPRESSED
        if hidden
        else (None if share is None else round(share * 100, 1)),
        "seen_within_standard_rag": SUPPRESSED if hidden else rag(share),
        "median_days_waited": SUPPRESSED if hidden else completed.median_days_waited,
        "p90_days_waited": SUPPRESSED if hidden else completed.p90_days_waited,
    }
    for stage in profile.stages:
        row[f"breaches_{stage.name}"] = count(active.breaches.get(stage.name, 0))
    row["waiting"] = count(active.waiting)
    row["waiting_past_standard"] = count(active.waiting_past_standard)
    for band, _ in WAIT_BANDS:
        row[f"waiting_{band}"] = count(active.waiting_by_band.get(band, 0))
    return row


async def referral_sources(engine: AsyncEngine, referral_ids: Iterable[str]) -> dict[str, str]:
    """The referral source of each referral, from the receipt that started its clock (the
    earliest ``referral_received``); referrals whose receipt had none are left out."""
    wanted = set(referral_ids)
    sources: dict[str, str] = {}
    seen: set[str] = set()
    query = (
        select(EventRow.referral_id, EventRow.payload)
        .where(EventRow.type == "referral_received")
        .order_by(EventRow.occurred_at, EventRow.event_id)
    )
    async with engine.connect() as connection:
        result = await connection.stream(query)
        async for referral_id, payload in result:
            if referral_id in seen or referral_id not in wanted:
                continue
            seen.add(referral_id)
            source = payload.get("source")
            if isinstance(source, str) and source:
                sources[referral_id] = source
    return sources


@dataclass(frozen=True)
class MonthlyReport:
    """The report of one month: its rows, a trend of the months before, and its method."""

    period: Period
    profile: Profile
    as_of: datetime
    suppression: Suppression
    rows: list[dict[str, Cell]]
    trend: list[dict[str, Cell]] = field(default_factory=list)
    """Overall and per-team rows of the last :data:`TREND_MONTHS` months, oldest first."""
    target: float = TARGET_SHARE

    def rows_of(self, group: str) -> list[dict[str, Cell]]:
        """The rows of one breakdown (``overall``, ``team``, ``school`` or ``source``)."""
        return [row for row in self.rows if row["group"] == group]

    def methods(self) -> list[str]:
        """The methods note: the rule, the period, the as-of moment, the suppression."""
        standard = standard_wording(self.profile)
        final = self.profile.stages[-1]
        local = self.as_of.astimezone(self.profile.timezone)
        return [
            f"Standard: profile {self.profile.name}. A pathway is seen within {standard} when "
            f"its intervention started at most {final.target_days} days after the referral was "
            "received (receipt day is day 0; calendar days, no pauses). A referral closed "
            "before an intervention is not a pathway seen.",
            f"Period: {self.period.title} ({self.period.first_day.isoformat()} to "
            f"{self.period.last_day.isoformat()}, local dates in {self.profile.timezone.key}).",
            f"As of: {local.strftime('%d %B %Y %H:%M %Z')}: every referral's state is the "
            "engine's answer from the events recorded up to that moment.",
            f"Pathways seen are those whose intervention started in the month; waiting and "
            f"wait bands are at the month end; breaches count the referrals active in the "
            f"month whose stage was breached. Target: {self.target:.0%} seen within "
            f"{standard}; green at or above it, amber within 10 points, red below.",
            self.suppression.describe(),
        ]

    def to_json(self) -> dict[str, Any]:
        """The JSON document of ``mhst-tracker report --format json``."""
        return {
            "period": self.period.label,
            "profile": self.profile.name,
            "as_of": self.as_of.isoformat(),
            "target_share": self.target,
            "suppression": self.suppression.to_dict(),
            "methods": self.methods(),
            "rows": self.rows,
            "trend": self.trend,
        }


def trend_rows(reports: Sequence[list[dict[str, Cell]]]) -> list[dict[str, Cell]]:
    """The overall and team rows of each month's report, for the trend."""
    return [
        {
            name: row[name]
            for name in (
                "period",
                "group",
                "id",
                "completed",
                "seen_within_standard",
                "seen_within_standard_pct",
                "seen_within_standard_rag",
            )
        }
        for rows in reports
        for row in rows
        if row["group"] in ("overall", "team")
    ]


async def known_teams_and_schools(engine: AsyncEngine) -> tuple[list[str], list[str]]:
    """Every team and every school the store has a referral of, sorted."""
    async with engine.connect() as connection:
        teams = await connection.scalars(
            select(ReferralRow.team_id).where(ReferralRow.team_id.is_not(None)).distinct()
        )
        team_ids = sorted(str(team) for team in teams)
        schools = await connection.scalars(
            select(ReferralRow.school_id).where(ReferralRow.school_id.is_not(None)).distinct()
        )
        return team_ids, sorted(str(school) for school in schools)
