"""Alert decisions: which alerts a referral is due, and when it next needs looking at.

:func:`decide_alerts` compares a referral's state as of ``now`` with the alerts already
raised for it (a collection of ``(stage, kind)`` pairs the caller keeps) and returns the new
ones. Calling it again with those added to ``raised`` returns nothing: it is idempotent.
:func:`next_deadline` gives the first instant after ``now`` at which the answer can change
without a new event, for the workers' deadline timers. Neither reads the wall clock.

Rules, per stage of the profile in pathway order:

* ``breach``: the stage is ``breached`` and no breach was raised for it. Also raised when a
  late event reveals a breach after the fact (a stage completed late, a closure after the
  due date).
* ``at_risk``: the referral is waiting, the stage is ``pending``, the days waited have
  reached the stage's ``at_risk_day``, and no at-risk alert was raised for it. A stage that
  goes straight to breached (a late upload, a replay) gets only the breach.
* ``breach_withdrawn``: a breach was raised, the stage is now ``met`` or
  ``not_applicable``, and no withdrawal was raised for it.

Each kind is raised **at most once per referral and stage**, as the domain page requires for
breaches. If a withdrawn breach comes back (a referral closed within target and then, much
later, allocated late), no second breach is raised: recipients keep the withdrawal and the
referral's state shows the breach. This keeps "exactly one breach per referral and stage"
true, and the case needs two contradictory corrections to the record.
"""

import hashlib
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo

from mhst_tracker.domain.clock import ReferralClock, ReferralState, StageState, StageStatus
from mhst_tracker.domain.errors import AlertError
from mhst_tracker.domain.profile import Profile

_ALERT_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mhst-tracker:alert").bytes


class AlertKind(StrEnum):
    """What an alert says about a stage."""

    BREACH = "breach"
    AT_RISK = "at_risk"
    BREACH_WITHDRAWN = "breach_withdrawn"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert about one stage of one referral.

    ``days_waited`` is the stage's: to its completion date if completed, otherwise the
    referral's days waited as of ``detected_at`` (to the close date if closed).
    """

    alert_id: str
    referral_id: str
    team_id: str | None
    school_id: str | None
    stage: str
    kind: AlertKind
    due_on: date
    days_waited: int
    detected_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The JSON-compatible message body of ``mhst.breach-alerts``."""
        return {
            "alert_id": self.alert_id,
            "referral_id": self.referral_id,
            "team_id": self.team_id,
            "school_id": self.school_id,
            "stage": self.stage,
            "kind": self.kind.value,
            "due_on": self.due_on.isoformat(),
            "days_waited": self.days_waited,
            "detected_at": self.detected_at.isoformat(),
        }


def alert_id(referral_id: str, stage: str, kind: AlertKind | str) -> str:
    """Deterministic id of the alert of ``kind`` for ``stage`` of ``referral_id`` (a UUID 5).

    A re-sent alert has the same id, so consumers can recognise and drop it.
    """
    name = f"{referral_id}\x1f{stage}\x1f{kind}".encode()
    digest = bytearray(hashlib.sha1(_ALERT_NAMESPACE + name, usedforsecurity=False).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x50  # version 5, as uuid.uuid5 sets it
    digest[8] = digest[8] & 0x3F | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def decide_alerts(
    source: ReferralClock | ReferralState,
    profile: Profile,
    now: datetime,
    raised: Collection[tuple[str, str]] = (),
) -> list[Alert]:
    """The alerts due as of ``now`` that are not in ``raised``, in pathway order (at most
    one per stage).

    ``source`` is a clock (evaluated as of ``now``) or a state computed as of ``now``.
    ``raised`` holds ``(stage, kind)`` pairs already raised for this referral.
    """
    state = _state_as_of(source, profile, now)
    received_on, days_waited = state.received_on, state.days_waited
    if received_on is None or days_waited is None:
        return []
    alerts: list[Alert] = []
    for stage in profile.stages:
        stage_state = state.stages[stage.name]
        assert stage_state is not None
        kind = _due_kind(stage.name, stage_state.state, state, raised)
        if kind is None:
            continue
        alerts.append(
            Alert(
                alert_id=alert_id(state.referral_id, stage.name, kind),
                referral_id=state.referral_id,
                team_id=state.team_id,
                school_id=state.school_id,
                stage=stage.name,
                kind=kind,
                due_on=stage_state.due_on,
                days_waited=_stage_days_waited(received_on, days_waited, stage_state),
                detected_at=now,
            )
        )
    return alerts


def _due_kind(
    stage: str, stage_status: StageStatus, state: ReferralState, raised: Collection[tuple[str, str]]
) -> AlertKind | None:
    """The one alert a stage can be due: its states exclude each other."""
    breach_raised = (stage, AlertKind.BREACH) in raised
    if stage_status is StageStatus.BREACHED:
        return None if breach_raised else AlertKind.BREACH
    if stage_status in (StageStatus.MET, StageStatus.NOT_APPLICABLE):
        withdrawn = (stage, AlertKind.BREACH_WITHDRAWN) in raised
        return AlertKind.BREACH_WITHDRAWN if breach_raised and not withdrawn else None
    if stage in state.at_risk_stages and (stage, AlertKind.AT_RISK) not in raised:
        return AlertKind.AT_RISK
    return None


def _stage_days_waited(received_on: date, referral_days: int, stage_state: StageState) -> int:
    if stage_state.done_on is not None:
        return max(0, (stage_state.done_on - received_on).days)
    return referral_days


def next_deadline(
    source: ReferralClock | ReferralState, profile: Profile, now: datetime | None = None
) -> datetime | None:
    """The first instant after ``now`` at which :func:`decide_alerts` can change its answer
    with no new event, in UTC; ``None`` if no time-driven change is left.

    That is the earliest, over the pending stages of a waiting referral, of the start
    (00:00 local) of its at-risk day if not yet reached and of its breach moment (00:00
    local on the day after its due date). A state's own ``as_of`` is the default ``now``;
    a clock needs ``now``.
    """
    if now is None:
        if isinstance(source, ReferralClock):
            raise AlertError("next_deadline needs now for a clock")
        now = source.as_of
    state = _state_as_of(source, profile, now)
    if not state.is_waiting or state.received_on is None or state.days_waited is None:
        return None
    received = state.received_on.toordinal()
    today = received + state.days_waited
    candidates: list[int] = []
    for stage in profile.stages:
        stage_state = state.stages[stage.name]
        if stage_state is None or stage_state.state is not StageStatus.PENDING:
            continue
        candidates.append(stage_state.due_on.toordinal() + 1)
        if stage.at_risk_day is not None:
            candidates.append(received + stage.at_risk_day)
    day = min((candidate for candidate in candidates if candidate > today), default=None)
    return None if day is None else _local_midnight(date.fromordinal(day), profile.timezone)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which ``day`` begins in ``zone``."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _state_as_of(
    source: ReferralClock | ReferralState, profile: Profile, now: datetime
) -> ReferralState:
    if isinstance(source, ReferralClock):
        return source.state(now, profile)
    if source.as_of != now:
        raise AlertError("the state must be computed as of now")
    return source
