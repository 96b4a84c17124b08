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

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from mhst_tracker.domain.clock import WAITING_STATUSES, ReferralState, ReferralStatus, StageStatus
from mhst_tracker.domain.profile import Profile

WAIT_BANDS: Final = (("0-6", 6), ("7-13", 13), ("14-27", 27), ("28-84", 84), ("85+", None))
"""Wait bands by name and the highest days waited they hold (``None``: no upper bound)."""


def wait_band(days_waited: int) -> str:
    """The name of the wait band that ``days_waited`` falls in."""
    for name, upper in WAIT_BANDS:
        if upper is None or days_waited <= upper:
            return name
    raise AssertionError("the last band is unbounded")


def nearest_rank(counts: Mapping[int, int], percent: int) -> int | None:
    """The ``percent``-th percentile by nearest rank of values given as ``{value: count}``."""
    total = sum(counts.values())
    if not total:
        return None
    rank = max(1, -(-total * percent // 100))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return value
    raise AssertionError("the rank is within the total")


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


_Signature = tuple[ReferralStatus, int, bool, int]
"""What the measures need of one referral: status, days waited (0 when closed, as no
measure uses them), whether at risk, and a bit mask of its breached stages in pathway order.
Counting signatures instead of referrals keeps the summary of a large list cheap."""

_CLOSED: Final = ReferralStatus.CLOSED_BEFORE_INTERVENTION
_BREACHED: Final = StageStatus.BREACHED


def summarise(
    states: Iterable[ReferralState], profile: Profile, rejected_events: int = 0
) -> Summary:
    """The measures of ``states`` (all as of one moment, under ``profile``)."""
    overall: dict[_Signature, int] = {}
    teams: defaultdict[str, dict[_Signature, int]] = defaultdict(dict)
    schools: defaultdict[str, dict[_Signature, int]] = defaultdict(dict)
    no_receipt = 0
    overall_get = overall.get
    for state in states:
        days_waited = state.days_waited
        if days_waited is None:
            no_receipt += 1
            continue
        status = state.status
        breaches = 0
        bit = 1
        for stage in state.stages.values():
            if stage is not None and stage.state is _BREACHED:
                breaches |= bit
            bit <<= 1
        signature = (
            status,
            0 if status is _CLOSED else days_waited,
            state.at_risk_stages != (),
            breaches,
        )
        overall[signature] = overall_get(signature, 0) + 1
        # The group counts inline rather than in a helper: a call per referral and group
        # was a third of this loop's time.
        if state.team_id is not None:
            counts = teams[state.team_id]
            counts[signature] = counts.get(signature, 0) + 1
        if state.school_id is not None:
            counts = schools[state.school_id]
            counts[signature] = counts.get(signature, 0) + 1
    stage_names = tuple(stage.name for stage in profile.stages)
    return Summary(
        overall=_group_measures(overall, stage_names),
        by_team={team: _group_measures(counts, stage_names) for team, counts in teams.items()},
        by_school={
            school: _group_measures(counts, stage_names) for school, counts in schools.items()
        },
        no_receipt=no_receipt,
        rejected_events=rejected_events,
    )


def _group_measures(
    counts: Mapping[_Signature, int], stage_names: tuple[str, ...]
) -> GroupMeasures:
    bands = {name: 0 for name, _ in WAIT_BANDS}
    breaches = dict.fromkeys(stage_names, 0)
    completed_days: dict[int, int] = {}
    referrals = waiting = past_standard = at_risk = within = closed = 0
    for (status, days_waited, is_at_risk, breached), count in counts.items():
        referrals += count
        if status in WAITING_STATUSES:
            waiting += count
            bands[wait_band(days_waited)] += count
            if status is ReferralStatus.WAITING_BREACHED:
                past_standard += count
            if is_at_risk:
                at_risk += count
        elif status is _CLOSED:
            closed += count
        else:
            completed_days[days_waited] = completed_days.get(days_waited, 0) + count
            if status is ReferralStatus.SEEN_WITHIN_STANDARD:
                within += count
        for index, name in enumerate(stage_names):
            if breached >> index & 1:
                breaches[name] += count
    completed = sum(completed_days.values())
    return GroupMeasures(
        referrals=referrals,
        waiting=waiting,
        waiting_by_band=bands,
        waiting_past_standard=past_standard,
        at_risk=at_risk,
        completed=completed,
        seen_within_standard=within,
        seen_within_standard_share=round(within / completed, 4) if completed else None,
        closed_before_intervention=closed,
        median_days_waited=nearest_rank(completed_days, 50),
        p90_days_waited=nearest_rank(completed_days, 90),
        breaches=breaches,
    )
