"""``mhst-tracker waiting-list``: the patient tracking list a service manager works from.

Open referrals of a team (``--team``), of every team (``--all-teams``) or of a school
(``--school``, alone or with a team) as of a moment (default now): breached first, then at
risk, then the rest, each by the due date of the next stage to do. "Days until next breach"
counts the days until the next stage still within its target breaches (1: it breaches at
midnight tonight); it is empty when every stage still to do is already breached. The as-of
moment is shown in the service's time zone. An unknown team or school is an error naming
the known ones. Referral ids are the pseudonymous ones of the event contract; nothing else
identifies a child.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import click
import orjson

from mhst_tracker import bootstrap
from mhst_tracker.adapters.store.report import known_teams_and_schools
from mhst_tracker.adapters.store.repository import WaitingEntry
from mhst_tracker.commands import running
from mhst_tracker.commands.replay import Timestamp
from mhst_tracker.config import Settings
from mhst_tracker.domain.profile import Profile
from mhst_tracker.render.text import text_table

COLUMNS = (
    "referral_id",
    "team_id",
    "school_id",
    "status",
    "received_on",
    "days_waited",
    "next_stage",
    "next_due_on",
    "days_until_next_breach",
    "breached_stages",
    "at_risk_stages",
)
HEADERS = (
    "Referral",
    "Team",
    "School",
    "Status",
    "Received",
    "Days waited",
    "Next stage",
    "Due",
    "Days until next breach",
    "Breached",
    "At risk",
)


class MomentOrDate(click.ParamType):
    """An RFC 3339 date-time, or a date ``YYYY-MM-DD`` meaning the end of that local day."""

    name = "moment"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime | date:
        if isinstance(value, datetime | date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            moment: datetime = Timestamp().convert(value, param, ctx)
            return moment


def end_of(value: datetime | date, profile: Profile) -> datetime:
    """``value`` itself if a moment; the last instant of that local day if a date."""
    if isinstance(value, datetime):
        return value
    following = datetime.combine(value + timedelta(days=1), time(), tzinfo=profile.timezone)
    return following.astimezone(UTC) - timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Line:
    """One referral of the list, with its team and the days until its next breach."""

    team_id: str
    entry: WaitingEntry
    days_until_next_breach: int | None

    def to_dict(self) -> dict[str, object]:
        data = self.entry.to_dict()
        return {
            "referral_id": data.pop("referral_id"),
            "team_id": self.team_id,
            **data,
            "days_until_next_breach": self.days_until_next_breach,
        }


@dataclass(frozen=True, slots=True)
class WaitingList:
    """What the command prints: whose list, as of when, and its lines."""

    teams: tuple[str, ...]
    school: str | None
    as_of: datetime
    profile: Profile
    lines: list[Line]

    @property
    def local_as_of(self) -> datetime:
        return self.as_of.astimezone(self.profile.timezone)

    @property
    def subject(self) -> str:
        who = "all teams" if len(self.teams) != 1 else f"team {self.teams[0]}"
        return who if self.school is None else f"school {self.school} ({who})"


class UnknownGroup(click.ClickException):
    """A team or school the store has no referral of. A usage error: exit code 2."""

    exit_code = 2


def days_until_next_breach(entry: WaitingEntry, profile: Profile, today: date) -> int | None:
    """Days from ``today`` until the next stage still to do and not yet breached breaches
    (at midnight after its due date); ``None`` when there is none."""
    names = [stage.name for stage in profile.stages]
    if entry.next_stage is None:
        return None
    upcoming = [
        entry.received_on + timedelta(days=stage.target_days)
        for stage in profile.stages[names.index(entry.next_stage) :]
        if stage.name not in entry.breached_stages
    ]
    future = [due for due in upcoming if due >= today]
    return None if not future else (min(future) - today).days + 1


@click.command("waiting-list")
@click.option("--team", help="Team id (team_id of the receipts).")
@click.option("--all-teams", is_flag=True, help="Every team's open referrals in one list.")
@click.option("--school", help="Only this school (URN); with --team, that team's referrals.")
@click.option("--as-of", type=MomentOrDate(), help="A date or an RFC 3339 moment (default now).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
def waiting_list_command(
    team: str | None, all_teams: bool, school: str | None, as_of: datetime | date | None, fmt: str
) -> None:
    """Print the open referrals of a team, a school or all teams, most urgent first.

    Breached first, then at risk, then by the due date of the next stage."""
    if team is not None and all_teams:
        raise click.UsageError("give --team or --all-teams, not both")
    if team is None and not all_teams and school is None:
        raise click.UsageError("give --team T, --all-teams or --school URN")
    settings = Settings.from_env()
    waiting = running.run(_waiting_list(settings, team, school, as_of))
    click.echo(render(waiting, fmt), nl=False)


async def _waiting_list(
    settings: Settings, team: str | None, school: str | None, as_of: datetime | date | None
) -> WaitingList:
    store = await bootstrap.open_store(bootstrap.wire(settings))
    try:
        profile = store.profile
        teams, schools = await known_teams_and_schools(store.engine)
        if team is not None and team not in teams:
            raise UnknownGroup(f"unknown team {team!r}; known teams: {', '.join(teams) or 'none'}")
        if school is not None and school not in schools:
            raise UnknownGroup(
                f"unknown school {school!r}; known schools: {', '.join(schools) or 'none'}"
            )
        moment = store.time_source.now() if as_of is None else end_of(as_of, profile)
        today = moment.astimezone(profile.timezone).date()
        chosen = [team] if team is not None else teams
        lines = [
            Line(team_id, entry, days_until_next_breach(entry, profile, today))
            for team_id in chosen
            for entry in await store.waiting_list(team_id, moment)
            if school is None or entry.school_id == school
        ]
    finally:
        await store.close()
    lines.sort(
        key=lambda line: (
            line.entry.priority,
            line.entry.next_due_on or date.max,
            line.entry.referral_id,
        )
    )
    return WaitingList(tuple(chosen), school, moment, profile, lines)


def render(waiting: WaitingList, fmt: str) -> str:
    """The list as ``table``, ``csv`` or ``json`` text."""
    if fmt == "json":
        document = {
            "teams": list(waiting.teams),
            "school_id": waiting.school,
            "as_of": waiting.local_as_of.isoformat(),
            "time_zone": waiting.profile.timezone.key,
            "referrals": [line.to_dict() for line in waiting.lines],
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
    rows = [[_cell(line.to_dict()[column]) for column in COLUMNS] for line in waiting.lines]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
        return buffer.getvalue()
    when = waiting.local_as_of.strftime("%a %d %B %Y %H:%M %Z")
    title = f"Waiting list of {waiting.subject} as of {when}: {len(rows)} referrals"
    return f"{title}\n{text_table(HEADERS, rows, right=len(HEADERS))}\n"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return str(value)
