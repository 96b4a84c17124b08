"""Alerts and recipients for the notifier's tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from mhst_tracker.domain.alerts import Alert, AlertKind, alert_id
from mhst_tracker.notify.config import Channel, Mode, Recipient

STAGES = frozenset({"assessment", "allocation", "intervention"})
DETECTED = datetime(2026, 9, 15, 0, 0, tzinfo=UTC)


def alert(
    referral: str = "R0000001",
    kind: AlertKind = AlertKind.BREACH,
    stage: str = "allocation",
    team: str | None = "MHST001",
    school: str | None = "123456",
    detected_at: datetime = DETECTED,
) -> Alert:
    """An alert of ``kind`` for ``stage`` of ``referral``."""
    return Alert(
        alert_id=alert_id(referral, stage, kind),
        referral_id=referral,
        team_id=team,
        school_id=school,
        stage=stage,
        kind=kind,
        due_on=date(2026, 9, 14),
        days_waited=8,
        detected_at=detected_at,
    )


def recipient(
    name: str = "manager",
    teams: frozenset[str] | None = frozenset({"MHST001"}),
    kinds: frozenset[AlertKind] = frozenset({AlertKind.BREACH}),
    stages: frozenset[str] = STAGES,
    channel: Channel = Channel.EMAIL,
    address: str = "manager@example.org",
    mode: Mode = Mode.IMMEDIATE,
    digest_at: time | None = None,
    empty_digest: bool = False,
    secret: str | None = None,
    zone: str = "Europe/London",
) -> Recipient:
    """A recipient (immediate email of breaches of MHST001 unless told otherwise)."""
    return Recipient(
        name=name,
        channel=channel,
        address=address,
        teams=teams,
        kinds=kinds,
        stages=stages,
        mode=mode,
        digest_at=digest_at,
        timezone=ZoneInfo(zone),
        empty_digest=empty_digest,
        secret=secret,
    )
