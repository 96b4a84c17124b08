"""``mhst-tracker report --period YYYY-MM``: the commissioners' monthly report.

Per team, school and referral source, from the engine's measures over the stored events
(see :mod:`mhst_tracker.adapters.store.report` for each figure's definition), with the
trend of the twelve months to the period, as a document (``html``, ``xlsx``), a terminal
table, CSV or JSON. Small-number suppression follows NHS England's sub-national MHSDS rule
unless configured otherwise (``--small-counts``, ``--round-to``) or turned off for internal
use (``--no-suppression``); every format names the suppression applied.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import click
import orjson

from mhst_tracker import bootstrap
from mhst_tracker.adapters.store.report import (
    NHS_ENGLAND,
    NO_SUPPRESSION,
    TREND_MONTHS,
    MonthlyReport,
    Period,
    Suppression,
    columns,
    period_report,
    referral_sources,
    trend_rows,
)
from mhst_tracker.commands import running
from mhst_tracker.config import Settings

FORMATS = ("table", "html", "xlsx", "csv", "json")


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
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file (required for xlsx); default standard output.",
)
@click.option(
    "--suppression/--no-suppression",
    default=True,
    show_default=True,
    help="Small-number suppression for published figures.",
)
@click.option(
    "--small-counts",
    type=click.IntRange(min=0),
    default=NHS_ENGLAND.small_max,
    show_default=True,
    help="Counts from 1 to this are shown as *.",
)
@click.option(
    "--round-to",
    type=click.IntRange(min=1),
    default=NHS_ENGLAND.round_to,
    show_default=True,
    help="Other counts are rounded to the nearest multiple of this.",
)
def report_command(
    period: Period,
    fmt: str,
    out: Path | None,
    suppression: bool,
    small_counts: int,
    round_to: int,
) -> None:
    """Write the monthly report of PERIOD per team, school and referral source."""
    if fmt == "xlsx" and out is None:
        raise click.UsageError("--format xlsx needs --out FILE")
    rule = Suppression(small_counts, round_to) if suppression else NO_SUPPRESSION
    settings = Settings.from_env()
    report = running.run(build_report(settings, period, rule))
    content = render(report, fmt)
    if out is not None:
        try:
            if isinstance(content, bytes):
                out.write_bytes(content)
            else:
                out.write_text(content, encoding="utf-8")
        except OSError as error:
            raise click.ClickException(f"cannot write {out}: {error.strerror}") from None
        click.echo(f"{fmt} report of {period.label} written to {out}", err=True)
    elif isinstance(content, bytes):
        sys.stdout.buffer.write(content)
    else:
        click.echo(content, nl=False)


async def build_report(
    settings: Settings, period: Period, suppression: Suppression
) -> MonthlyReport:
    """The report of ``period`` and the trend of the months to it, from the store."""
    store = await bootstrap.open_store(bootstrap.wire(settings))
    try:
        profile = store.profile
        now = store.time_source.now()
        monthly = []
        rows = []
        for month in period.trailing(TREND_MONTHS):
            as_of = min(month.end(profile), now)
            states = await store.states_in_period(month.first_day, month.last_day, as_of)
            if month == period:
                sources = await referral_sources(store.engine, (s.referral_id for s in states))
                rows = period_report(states, profile, month, suppression, sources)
            else:
                monthly.append(period_report(states, profile, month, suppression))
    finally:
        await store.close()
    return MonthlyReport(
        period=period,
        profile=profile,
        as_of=min(period.end(profile), now),
        suppression=suppression,
        rows=rows,
        trend=trend_rows([*monthly, rows]),
    )


def render(report: MonthlyReport, fmt: str) -> str | bytes:
    """The report in one of :data:`FORMATS`."""
    if fmt == "json":
        return orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        names = [*columns(report.profile), "suppression"]
        writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            {
                **{name: "" if value is None else value for name, value in row.items()},
                "suppression": report.suppression.label,
            }
            for row in report.rows
        )
        return buffer.getvalue()
    if fmt == "html":
        from mhst_tracker.render.html import report_html

        return report_html(report)
    if fmt == "xlsx":
        from mhst_tracker.render.xlsx import report_xlsx

        return report_xlsx(report)
    from mhst_tracker.render.text import report_text

    return report_text(report)
