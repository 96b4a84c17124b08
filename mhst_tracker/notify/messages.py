"""What a recipient reads: an alert, a correction, a digest, an operations alert.

Each message is a :class:`Notice`: a subject and a plain-text body with an HTML alternative
(for email) and a JSON body (for webhooks). About a referral it says the team, the school
URN, the stage, the due date, the days waited and the pseudonymous referral id, and nothing
else about the child. A webhook's body is the alert's own message body plus the recipient
and a link to the service manager's dashboard for the team.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final
from urllib.parse import quote

from mhst_tracker.domain.alerts import Alert, AlertKind
from mhst_tracker.notify.config import Recipient

NO_SCHOOL: Final = "none recorded"
_KIND_TITLE: Final = {
    AlertKind.BREACH: "Breach",
    AlertKind.AT_RISK: "At risk",
    AlertKind.BREACH_WITHDRAWN: "Correction: breach withdrawn",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One message to one recipient, ready for any channel."""

    message_id: str
    """The delivery's id (``webhook-id``; the local part of the email's ``Message-ID``)."""
    subject: str
    text: str
    html: str
    body: dict[str, Any]
    refers_to: str | None = None
    """The id of the earlier message a correction corrects."""


def dashboard_link(dashboard_url: str | None, team: str | None) -> str | None:
    """The service manager's dashboard, filtered to ``team`` when there is one."""
    if dashboard_url is None:
        return None
    if team is None:
        return dashboard_url
    separator = "&" if "?" in dashboard_url else "?"
    return f"{dashboard_url}{separator}var-team={quote(team, safe='')}"


def _facts(alert: Alert) -> list[tuple[str, str]]:
    return [
        ("Team", alert.team_id or "none recorded"),
        ("School URN", alert.school_id or NO_SCHOOL),
        ("Stage", alert.stage),
        ("Due date", alert.due_on.isoformat()),
        ("Days waited", str(alert.days_waited)),
        ("Referral (pseudonymous id)", alert.referral_id),
    ]


def alert_notice(
    alert: Alert,
    recipient: Recipient,
    message_id: str,
    dashboard_url: str | None,
    refers_to: str | None = None,
) -> Notice:
    """The message of one alert to one recipient; a withdrawal is a correction of the
    earlier message ``refers_to``."""
    title = _KIND_TITLE[alert.kind]
    subject = f"{title}: team {alert.team_id or '-'}, {alert.stage} stage, due {alert.due_on}"
    link = dashboard_link(dashboard_url, alert.team_id)
    lead = {
        AlertKind.BREACH: f"A referral passed the {alert.stage} due date without it.",
        AlertKind.AT_RISK: f"A waiting referral reached the warning day of the {alert.stage}"
        " stage.",
        AlertKind.BREACH_WITHDRAWN: f"The {alert.stage} breach we sent earlier did not happen:"
        " late data shows the stage was completed in time or no longer applies.",
    }[alert.kind]
    facts = _facts(alert)
    text_lines = [lead, "", *(f"{name}: {value}" for name, value in facts)]
    if link:
        text_lines += ["", f"Dashboard: {link}"]
    body = {**alert.to_dict(), "recipient": recipient.name, "dashboard_url": link}
    if refers_to is not None:
        body["corrects"] = {"message_id": refers_to}
    return Notice(
        message_id=message_id,
        subject=subject,
        text="\n".join(text_lines) + "\n",
        html=_html(subject, [lead], [("", facts)], link),
        body=body,
        refers_to=refers_to,
    )


def digest_notice(
    recipient: Recipient,
    day: date,
    alerts: Sequence[Alert],
    message_id: str,
    dashboard_url: str | None,
) -> Notice | None:
    """The digest of ``day``: the new breaches and warnings and the withdrawals, grouped by
    team and stage with counts; ``None`` for an empty day unless the recipient asked for a
    "no new breaches" line."""
    if not alerts and not recipient.empty_digest:
        return None
    counts: Counter[tuple[str, str, AlertKind]] = Counter(
        (alert.team_id or "-", alert.stage, alert.kind) for alert in alerts
    )
    subject = f"Daily digest {day.isoformat()}: " + (
        ", ".join(
            f"{total} {_plural(kind, total)}"
            for kind, total in sorted(_totals(counts).items(), key=lambda item: item[0].value)
        )
        or "no new breaches"
    )
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for team in sorted({team for team, _, _ in counts}):
        rows = [
            (f"{stage}, {_plural(kind, count)}", str(count))
            for (row_team, stage, kind), count in sorted(counts.items())
            if row_team == team
        ]
        sections.append((f"Team {team}", rows))
    lead = "No new breaches." if not alerts else "New for your teams since the last digest."
    listing = [
        f"- {_KIND_TITLE[alert.kind]}: team {alert.team_id or '-'}, school "
        f"{alert.school_id or NO_SCHOOL}, {alert.stage}, due {alert.due_on}, "
        f"{alert.days_waited} days waited, referral {alert.referral_id}"
        for alert in sorted(alerts, key=_digest_order)
    ]
    text_lines = [lead]
    for title, rows in sections:
        text_lines += ["", title, *(f"  {name}: {value}" for name, value in rows)]
    if listing:
        text_lines += ["", *listing]
    link = dashboard_link(dashboard_url, None)
    if link:
        text_lines += ["", f"Dashboard: {link}"]
    body = {
        "type": "digest",
        "recipient": recipient.name,
        "date": day.isoformat(),
        "counts": [
            {"team_id": team, "stage": stage, "kind": kind.value, "count": count}
            for (team, stage, kind), count in sorted(counts.items())
        ],
        "alerts": [alert.to_dict() for alert in sorted(alerts, key=_digest_order)],
        "dashboard_url": link,
    }
    return Notice(
        message_id=message_id,
        subject=subject,
        text="\n".join(text_lines) + "\n",
        html=_html(subject, [lead, *listing], sections, link),
        body=body,
    )


def operations_notice(payload: Mapping[str, Any], message_id: str) -> Notice:
    """Alertmanager's webhook message about the tracker itself, as a notice: its status,
    and each alert's name, severity and summary (the rules' annotations carry no id)."""
    status = str(payload.get("status", "firing"))
    alerts = [alert for alert in payload.get("alerts", []) if isinstance(alert, Mapping)]
    names = sorted({str(alert.get("labels", {}).get("alertname", "alert")) for alert in alerts})
    subject = f"[{status.upper()}] mhst-tracker: {', '.join(names) or 'alert'}"
    rows: list[tuple[str, str]] = []
    for alert in alerts:
        labels = alert.get("labels", {})
        annotations = alert.get("annotations", {})
        name = f"{labels.get('alertname', 'alert')} ({labels.get('severity', 'unknown')})"
        rows.append((name, str(annotations.get("summary", ""))))
    lead = f"{len(alerts)} alert(s) {status}."
    text = "\n".join([lead, "", *(f"{name}: {summary}" for name, summary in rows)]) + "\n"
    return Notice(
        message_id=message_id,
        subject=subject,
        text=text,
        html=_html(subject, [lead], [("", rows)], None),
        body={"type": "operations", **payload},
    )


def _totals(counts: Counter[tuple[str, str, AlertKind]]) -> dict[AlertKind, int]:
    totals: Counter[AlertKind] = Counter()
    for (_, _, kind), count in counts.items():
        totals[kind] += count
    return dict(totals)


def _plural(kind: AlertKind, count: int) -> str:
    word = {
        AlertKind.BREACH: "breach",
        AlertKind.AT_RISK: "at-risk warning",
        AlertKind.BREACH_WITHDRAWN: "withdrawal",
    }[kind]
    if count == 1:
        return word
    return word + ("es" if word.endswith("ch") else "s")


def _digest_order(alert: Alert) -> tuple[str, str, str, str]:
    return (alert.team_id or "", alert.stage, alert.kind.value, alert.alert_id)


def _html(
    title: str,
    paragraphs: Iterable[str],
    sections: Iterable[tuple[str, list[tuple[str, str]]]],
    link: str | None,
) -> str:
    """The HTML alternative: the same words as the text, escaped."""
    parts = [f"<html><body><h2>{html.escape(title)}</h2>"]
    parts += [f"<p>{html.escape(paragraph)}</p>" for paragraph in paragraphs]
    for heading, rows in sections:
        if heading:
            parts.append(f"<h3>{html.escape(heading)}</h3>")
        parts.append("<table>")
        parts += [
            f"<tr><th align='left'>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
            for name, value in rows
        ]
        parts.append("</table>")
    if link:
        parts.append(f"<p><a href='{html.escape(link, quote=True)}'>Dashboard</a></p>")
    parts.append("</body></html>")
    return "\n".join(parts)
