"""``mhst-tracker waiting-list --team T``: the patient tracking list a service manager works from.

Open referrals of the team as of a moment (default now): breached first, then at risk, then
the rest, each by the due date of the next stage to do. Referral ids are the pseudonymous
ones of the event contract; nothing else identifies a child.
"""

import csv
import io
from datetime import UTC, date, datetime, time, timedelta

import click
import orjson

from mhst_tracker.adapters.store.database import StoreNotMigrated
from mhst_tracker.adapters.store.repository import Store, WaitingEntry
from mhst_tracker.commands import running
from mhst_tracker.commands.replay import Timestamp
from mhst_tracker.config import Settings
from mhst_tracker.domain.profile import Profile

COLUMNS = (
    "referral_id",
    "school_id",
    "status",
    "received_on",
    "days_waited",
    "next_stage",
    "next_due_on",
    "breached_stages",
    "at_risk_stages",
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


@click.command("waiting-list")
@click.option("--team", required=True, help="Team id (team_id of the receipts).")
@click.option("--as-of", type=MomentOrDate(), help="A date or an RFC 3339 moment (default now).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
def waiting_list_command(team: str, as_of: datetime | date | None, fmt: str) -> None:
    """Print TEAM's open referrals, breached first, then at risk, by next due date."""
    settings = Settings.from_env()
    try:
        moment, entries = running.run(_waiting_list(settings, team, as_of))
    except StoreNotMigrated as error:
        raise click.ClickException(str(error)) from None
    click.echo(render(entries, moment, team, fmt), nl=False)


async def _waiting_list(
    settings: Settings, team: str, as_of: datetime | date | None
) -> tuple[datetime, list[WaitingEntry]]:
    store = await Store.open(settings)
    try:
        moment = store.time_source.now() if as_of is None else end_of(as_of, store.profile)
        return moment, await store.waiting_list(team, moment)
    finally:
        await store.close()


def render(entries: list[WaitingEntry], as_of: datetime, team: str, fmt: str) -> str:
    """The list as ``table``, ``csv`` or ``json`` text."""
    if fmt == "json":
        document = {
            "team_id": team,
            "as_of": as_of.isoformat(),
            "referrals": [entry.to_dict() for entry in entries],
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
    rows = [[_cell(entry.to_dict()[column]) for column in COLUMNS] for entry in entries]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
        return buffer.getvalue()
    table = [list(COLUMNS), *rows]
    widths = [max(len(row[index]) for row in table) for index in range(len(COLUMNS))]
    lines = [f"waiting list of {team} as of {as_of.isoformat()}: {len(entries)} referrals"]
    lines.extend(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return str(value)
