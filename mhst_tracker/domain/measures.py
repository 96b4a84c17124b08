"""The measures of the domain page, per team, per school and overall, from referral states.

Definitions (all as of the states' moment T; ``no_receipt`` referrals count in no measure):

* ``referrals``: referrals with a receipt. Every one of them is exactly one of waiting,
  completed or closed before intervention, so ``waiting + completed +
  closed_before_intervention == referrals``.
* ``waiting``: open, final stage (intervention) not started: statuses ``waiting_*``.
  ``waiting_by_band`` splits them by days waited into ``0-6``, ``7-13``, ``14-27``,
  ``28-84`` and ``85+``.
* ``waiting_past_standard``: waiting with the final stage's due date passed
  (``waiting_breached``).
* ``at_risk``: waiting referrals with at least one ``pending`` stage whose warning day
  (``at_risk_day``, in days waited) has been reached. A pending stage is not yet breached,
  so an at-risk referral is never also counted past the standard.
* ``completed``: completed pathways, i.e. referrals whose intervention started
  (``seen_within_standard`` or ``seen_late``). **A referral closed before intervention is
  not a completed pathway**: as in NHS England's measure, it leaves the waiting list and
  is counted only in ``closed_before_intervention``.
* ``seen_within_standard``: completed pathways with the intervention stage met;
  ``seen_within_standard_share`` = that / ``completed``, rounded to 4 decimal places, or
  ``None`` when nothing is completed (the headline "seen within four weeks").
* ``median_days_waited`` and ``p90_days_waited``: days waited of completed pathways, by the
  **nearest-rank** method (the value at rank ``ceil(p/100 * n)`` of the sorted list, so
  always a real waiting time; the median of an even count is the lower middle value);
  ``None`` when nothing is completed.
* ``breaches``: per stage, referrals whose stage is ``breached`` (waiting, seen or closed);
  the same as the breach alerts a worker has raised and not withdrawn.
* Overall only: ``no_receipt`` (referrals with events but no receipt) and
  ``rejected_events`` (invalid events, supplied by the caller).

``by_school`` lists only referrals that carry a ``school_id``; ``by_team`` covers all.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from mhst_tracker.domain.clock import ReferralState, ReferralStatus, StageStatus
from mhst_tracker.domain.profile import Profile

WAIT_BANDS: Final = (("0-6", 6), ("7-13", 13), ("14-27", 27), ("28-84", 84), ("85+", None))
"""Wait bands by name and the highest days waited they hold (``None``: no upper bound)."""


def wait_band(days_waited: int) -> str:
    """The name of the wait band that ``days_waited`` falls in."""
    for name, upper in WAIT_BANDS:
        if upper is None or days_waited <= upper:
            return name
    raise AssertionError("the last band is unbounded")


def nearest_rank(sorted_values: list[int], percent: int) -> int | None:
    """The ``percent``-th percentile of ascending ``sorted_values`` by nearest rank."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * percent // 100))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class GroupMeasures:
    """The measures of one group of referrals (a team, a school, or all)."""

    referrals: int
    waiting: int
    waiting_by_band: Mapping[str, int]
    waiting_past_standard: int
    at_risk: int
    completed: int
    seen_within_standard: int
    seen_within_standard_share: float | None
    closed_before_intervention: int
    median_days_waited: int | None
    p90_days_waited: int | None
    breaches: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible, keys in the order of the definitions."""
        return {
            "referrals": self.referrals,
            "waiting": self.waiting,
            "waiting_by_band": dict(self.waiting_by_band),
            "waiting_past_standard": self.waiting_past_standard,
            "at_risk": self.at_risk,
            "completed": self.completed,
            "seen_within_standard": self.seen_within_standard,
            "seen_within_standard_share": self.seen_within_standard_share,
            "closed_before_intervention": self.closed_before_intervention,
            "median_days_waited": self.median_days_waited,
            "p90_days_waited": self.p90_days_waited,
            "breaches": dict(self.breaches),
        }


@dataclass(frozen=True, slots=True)
class Summary:
    """Measures overall, by team and by school, plus overall data-quality counts."""

    overall: GroupMeasures
    by_team: Mapping[str, GroupMeasures]
    by_school: Mapping[str, GroupMeasures]
    no_receipt: int
    rejected_events: int

    def to_dict(self) -> dict[str, Any]:
        """The ``summary`` object of the replay output; teams and schools sorted by id."""
        overall = self.overall.to_dict()
        overall["no_receipt"] = self.no_receipt
        overall["rejected_events"] = self.rejected_events
        return {
            "overall": overall,
            "by_team": {team: self.by_team[team].to_dict() for team in sorted(self.by_team)},
            "by_school": {
                school: self.by_school[school].to_dict() for school in sorted(self.by_school)
            },
        }


@dataclass(slots=True)
class _Tally:
    stage_names: tuple[str, ...]
    referrals: int = 0
    waiting: int = 0
    bands: dict[str, int] = field(default_factory=lambda: {name: 0 for name, _ in WAIT_BANDS})
    waiting_past_standard: int = 0
    at_risk: int = 0
    seen_within_standard: int = 0
    closed_before_intervention: int = 0
    completed_days: list[int] = field(default_factory=list)
    breaches: dict[str, int] = field(default_factory=dict)

    def add(self, state: ReferralState, days_waited: int) -> None:
        self.referrals += 1
        status = state.status
        if state.is_waiting:
            self.waiting += 1
            self.bands[wait_band(days_waited)] += 1
            if status is ReferralStatus.WAITING_BREACHED:
                self.waiting_past_standard += 1
            if state.at_risk_stages:
                self.at_risk += 1
        elif status is ReferralStatus.CLOSED_BEFORE_INTERVENTION:
            self.closed_before_intervention += 1
        else:
            self.completed_days.append(days_waited)
            if status is ReferralStatus.SEEN_WITHIN_STANDARD:
                self.seen_within_standard += 1
        for name, stage in state.stages.items():
            if stage is not None and stage.state is StageStatus.BREACHED:
                self.breaches[name] = self.breaches.get(name, 0) + 1

    def measures(self) -> GroupMeasures:
        completed = len(self.completed_days)
        days = sorted(self.completed_days)
        return GroupMeasures(
            referrals=self.referrals,
            waiting=self.waiting,
            waiting_by_band=dict(self.bands),
            waiting_past_standard=self.waiting_past_standard,
            at_risk=self.at_risk,
            completed=completed,
            seen_within_standard=self.seen_within_standard,
            seen_within_standard_share=(
                round(self.seen_within_standard / completed, 4) if completed else None
            ),
            closed_before_intervention=self.closed_before_intervention,
            median_days_waited=nearest_rank(days, 50),
            p90_days_waited=nearest_rank(days, 90),
            breaches={name: self.breaches.get(name, 0) for name in self.stage_names},
        )


def summarise(
    states: Iterable[ReferralState], profile: Profile, rejected_events: int = 0
) -> Summary:
    """The measures of ``states`` (all as of one moment, under ``profile``)."""
    stage_names = tuple(stage.name for stage in profile.stages)
    overall = _Tally(stage_names)
    teams: dict[str, _Tally] = {}
    schools: dict[str, _Tally] = {}
    no_receipt = 0
    for state in states:
        days_waited = state.days_waited
        if days_waited is None:
            no_receipt += 1
            continue
        overall.add(state, days_waited)
        if state.team_id is not None:
            team = teams.get(state.team_id)
            if team is None:
                team = teams[state.team_id] = _Tally(stage_names)
            team.add(state, days_waited)
        if state.school_id is not None:
            school = schools.get(state.school_id)
            if school is None:
                school = schools[state.school_id] = _Tally(stage_names)
            school.add(state, days_waited)
    return Summary(
        overall=overall.measures(),
        by_team={team_id: tally.measures() for team_id, tally in teams.items()},
        by_school={school_id: tally.measures() for school_id, tally in schools.items()},
        no_receipt=no_receipt,
        rejected_events=rejected_events,
    )
