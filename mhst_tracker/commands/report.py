"""``mhst-tracker report --period YYYY-MM``: the commissioners' monthly figures.

Per team and per school, from the engine's measures over the stored events (see
:mod:`mhst_tracker.adapters.store.report` for each column's definition), with NHS England's
small-number suppression unless ``--no-suppression`` (for internal use).
"""

import csv
import io

import click
import orjson

from mhst_tracker.adapters.store.database import StoreNotMigrated
from mhst_tracker.adapters.store.report import (
    Cell,
    Period,
    columns,
    period_report,
    report_json,
)
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.commands import running
from mhst_tracker.config import Settings


class PeriodType(click.ParamType):
    """A calendar month, ``YYYY-MM``."""

    name = "period"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Period:
        if isinstance(value, Period):
            return value
        try:
            return Period.parse(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


@click.command("report")
@click.option("--period", type=PeriodType(), required=True, help="The month, YYYY-MM.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--suppression/--no-suppression",
    default=True,
    show_default=True,
    help="Small-number suppression for published figures.",
)
def report_command(period: Period, fmt: str, suppression: bool) -> None:
    """Print the figures of PERIOD per team and per school."""
    settings = Settings.from_env()
    try:
        text = running.run(build_report(settings, period, fmt, suppression))
    except StoreNotMigrated as error:
        raise click.ClickException(str(error)) from None
    click.echo(text, nl=False)


async def build_report(settings: Settings, period: Period, fmt: str, suppression: bool) -> str:
    """The report as CSV or JSON text."""
    store = await Store.open(settings)
    try:
        profile = store.profile
        states = await store.states_in_period(
            period.first_day, period.last_day, period.end(profile)
        )
    finally:
        await store.close()
    rows = period_report(states, profile, period, suppress=suppression)
    if fmt == "json":
        document = report_json(rows, profile, suppression)
        return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns(profile), lineterminator="\n")
    writer.writeheader()
    writer.writerows(_csv_row(row) for row in rows)
    return buffer.getvalue()


def _csv_row(row: dict[str, Cell]) -> dict[str, Cell]:
    return {name: "" if value is None else value for name, value in row.items()}
