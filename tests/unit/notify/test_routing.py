"""Routing by team, kind and stage; withdrawals routed by the ledger; delivery ids."""

from __future__ import annotations

from datetime import date

from mhst_tracker.domain.alerts import AlertKind
from mhst_tracker.notify.routing import (
    delivery_id,
    digest_id,
    recipients_of,
    withdrawn_breach,
)
from tests.unit.notify.builders import alert, recipient

MANAGER = recipient("manager", kinds=frozenset({AlertKind.BREACH, AlertKind.AT_RISK}))
COMMISSIONER = recipient("icb", teams=None, stages=frozenset({"intervention"}))
OTHER_TEAM = recipient("other", teams=frozenset({"MHST002"}))
EVERYONE = (MANAGER, COMMISSIONER, OTHER_TEAM)


def names(*args: object, **kwargs: object) -> list[str]:
    return [r.name for r in recipients_of(alert(*args, **kwargs), EVERYONE)]  # type: ignore[arg-type]


def test_routing_by_team_kind_and_stage() -> None:
    assert names(stage="allocation") == ["manager"]
    assert names(stage="intervention") == ["manager", "icb"]
    assert names(kind=AlertKind.AT_RISK, stage="intervention") == ["manager"]
    assert names(team="MHST002", stage="intervention") == ["icb", "other"]
    assert names(team="MHST009", stage="allocation") == []
    assert names(team=None, stage="intervention") == ["icb"]


def test_a_withdrawal_is_routed_to_no_one_and_names_its_breach() -> None:
    withdrawal = alert(kind=AlertKind.BREACH_WITHDRAWN, stage="intervention")
    assert recipients_of(withdrawal, EVERYONE) == []
    assert withdrawn_breach(withdrawal) == alert(stage="intervention").alert_id


def test_delivery_ids_are_stable_and_distinct() -> None:
    breach = alert().alert_id
    assert delivery_id(breach, "manager") == delivery_id(breach, "manager")
    assert delivery_id(breach, "manager") != delivery_id(breach, "icb")
    assert delivery_id(breach, "manager") != delivery_id(alert(referral="R2").alert_id, "manager")
    assert digest_id("icb", date(2026, 9, 1)) != digest_id("icb", date(2026, 9, 2))
