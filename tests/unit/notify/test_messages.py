"""What a recipient reads: the alert's facts and nothing else about the child."""

from __future__ import annotations

from datetime import date, time

from mhst_tracker.domain.alerts import AlertKind
from mhst_tracker.notify.config import Mode
from mhst_tracker.notify.messages import alert_notice, digest_notice, operations_notice
from tests.unit.notify.builders import alert, recipient

DASHBOARD = "https://grafana.example.org/d/mhst-service-manager"
FIELDS = {
    "alert_id", "referral_id", "team_id", "school_id", "stage", "kind", "due_on",
    "days_waited", "detected_at", "recipient", "dashboard_url",
}  # fmt: skip


def test_an_alert_says_team_school_stage_due_date_days_waited_and_referral() -> None:
    breach = alert()
    notice = alert_notice(breach, recipient(), "id-1", DASHBOARD)
    assert notice.subject == "Breach: team MHST001, allocation stage, due 2026-09-14"
    for fact in ("MHST001", "123456", "allocation", "2026-09-14", "8", "R0000001"):
        assert fact in notice.text
        assert fact in notice.html
    assert f"{DASHBOARD}?var-team=MHST001" in notice.text
    assert set(notice.body) == FIELDS
    assert notice.body["recipient"] == "manager"
    assert {key: notice.body[key] for key in breach.to_dict()} == breach.to_dict()
    assert notice.refers_to is None


def test_a_correction_names_the_earlier_message() -> None:
    withdrawal = alert(kind=AlertKind.BREACH_WITHDRAWN)
    notice = alert_notice(withdrawal, recipient(), "id-2", None, refers_to="id-1")
    assert notice.subject.startswith("Correction: breach withdrawn: team MHST001")
    assert notice.refers_to == "id-1"
    assert notice.body["corrects"] == {"message_id": "id-1"}
    assert notice.body["dashboard_url"] is None
    assert set(notice.body) == FIELDS | {"corrects"}


def test_html_is_escaped() -> None:
    notice = alert_notice(alert(team="<b>T&1</b>"), recipient(), "id", None)
    assert "<b>T&1</b>" not in notice.html
    assert "&lt;b&gt;T&amp;1&lt;/b&gt;" in notice.html


def test_a_digest_groups_by_team_and_stage_with_counts() -> None:
    digest = recipient("icb", teams=None, mode=Mode.DIGEST, digest_at=time(8))
    alerts = [
        alert("R1", stage="intervention"),
        alert("R2", stage="intervention"),
        alert("R3", stage="allocation", team="MHST002"),
        alert("R4", kind=AlertKind.BREACH_WITHDRAWN, stage="intervention"),
    ]
    notice = digest_notice(digest, date(2026, 9, 16), alerts, "digest-1", DASHBOARD)
    assert notice is not None
    assert notice.subject == "Daily digest 2026-09-16: 3 breaches, 1 withdrawal"
    assert "Team MHST001\n  intervention, breaches: 2\n  intervention, withdrawal: 1" in notice.text
    assert "Team MHST002\n  allocation, breach: 1" in notice.text
    for referral in ("R1", "R2", "R3", "R4"):
        assert f"referral {referral}" in notice.text
    assert notice.body["counts"] == [
        {"team_id": "MHST001", "stage": "intervention", "kind": "breach", "count": 2},
        {"team_id": "MHST001", "stage": "intervention", "kind": "breach_withdrawn", "count": 1},
        {"team_id": "MHST002", "stage": "allocation", "kind": "breach", "count": 1},
    ]
    assert len(notice.body["alerts"]) == 4


def test_an_empty_day_sends_nothing_or_the_line_asked_for() -> None:
    quiet = recipient("icb", mode=Mode.DIGEST, digest_at=time(8))
    assert digest_notice(quiet, date(2026, 9, 16), [], "d", None) is None
    chatty = recipient("icb", mode=Mode.DIGEST, digest_at=time(8), empty_digest=True)
    notice = digest_notice(chatty, date(2026, 9, 16), [], "d", None)
    assert notice is not None
    assert notice.subject == "Daily digest 2026-09-16: no new breaches"
    assert notice.text.startswith("No new breaches.")


def test_an_operations_alert_lists_names_and_summaries() -> None:
    payload = {
        "status": "firing",
        "groupKey": '{}:{alertname="MhstSinkLagging"}',
        "alerts": [
            {
                "labels": {"alertname": "MhstSinkLagging", "severity": "warning"},
                "annotations": {"summary": "The database sink is 5000 messages behind"},
            }
        ],
    }
    notice = operations_notice(payload, "ops-1")
    assert notice.subject == "[FIRING] mhst-tracker: MhstSinkLagging"
    assert "MhstSinkLagging (warning): The database sink is 5000 messages behind" in notice.text
