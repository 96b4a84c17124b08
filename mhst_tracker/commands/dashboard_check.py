"""``mhst-tracker dashboard-check``: what each dashboard panel shows right now, as text.

Grafana cannot run here, so this prints every panel of the dashboards with the values its
PromQL returns from the Prometheus at ``MHST_PROMETHEUS_URL``, template variables filled in
as Grafana would (All unless ``--team``/``--school`` are given). PostgreSQL panels are
listed with the store tables they read. A query that fails makes the command exit 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import click

from mhst_tracker.config import Settings
from mhst_tracker.dashboards import (
    DASHBOARD_DIR,
    Dashboard,
    DashboardError,
    Panel,
    Sample,
    load_dashboards,
    query_prometheus,
    substitute_promql,
)

MAX_ROWS = 25


def format_value(value: float, unit: str) -> str:
    """A value the way the panel's unit shows it."""
    if math.isnan(value):
        return "no value (NaN)"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        return f"{value:.3g} s"
    if unit == "d":
        return f"{value:.1f} days"
    if unit == "ops":
        return f"{value:.3g}/s"
    return f"{value:g}"


def format_sample(sample: Sample, unit: str) -> str:
    """One series: its labels (or ``value``) and its formatted value."""
    labels = ", ".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
    return f"{labels or 'value'}: {format_value(sample.value, unit)}"


def panel_lines(
    url: str, board: Dashboard, panel: Panel, selection: dict[str, Sequence[str]]
) -> tuple[list[str], int]:
    """The lines printed for one panel, and how many of its queries failed."""
    lines = [f"  [{panel.id}] {panel.title} ({panel.type})"]
    failures = 0
    for query in panel.queries:
        if query.sql is not None:
            tables = [
                name
                for name in ("referrals", "alerts", "rejected_events", "events")
                if f"FROM {name}" in query.sql
            ]
            lines.append(f"    {query.ref_id}: PostgreSQL store table {', '.join(tables)}")
            continue
        if query.expr is None:
            continue
        try:
            samples = query_prometheus(url, substitute_promql(query.expr, board, selection))
        except DashboardError as error:
            failures += 1
            lines.append(f"    {query.ref_id}: ERROR {error}")
            continue
        if not samples:
            lines.append(f"    {query.ref_id}: no data")
        for sample in samples[:MAX_ROWS]:
            lines.append(f"    {query.ref_id}: {format_sample(sample, panel.unit)}")
        if len(samples) > MAX_ROWS:
            lines.append(f"    {query.ref_id}: ... {len(samples) - MAX_ROWS} more series")
    return lines, failures


@click.command("dashboard-check")
@click.option("--dashboard", "uids", multiple=True, help="Only this dashboard uid (repeatable).")
@click.option("--team", multiple=True, help="Select this team (repeatable; default All).")
@click.option("--school", multiple=True, help="Select this school URN (repeatable).")
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=DASHBOARD_DIR,
    show_default=True,
    help="Folder of the dashboard JSON files.",
)
def dashboard_check_command(
    uids: tuple[str, ...], team: tuple[str, ...], school: tuple[str, ...], directory: Path
) -> None:
    """Print every dashboard panel with the value it shows now.

    The values come from the Prometheus at MHST_PROMETHEUS_URL."""
    settings = Settings.from_env()
    selection: dict[str, Sequence[str]] = {"team": team, "school": school}
    try:
        boards = load_dashboards(directory)
    except DashboardError as error:
        raise click.ClickException(str(error)) from None
    failures = 0
    for board in boards:
        if uids and board.uid not in uids:
            continue
        click.echo(f"{board.title} ({board.path.name})")
        for panel in board.panels:
            if panel.type == "row":
                click.echo(f"  -- {panel.title} --")
                continue
            lines, failed = panel_lines(settings.prometheus_url, board, panel, selection)
            failures += failed
            click.echo("\n".join(lines))
    if failures:
        raise click.ClickException(f"{failures} panel queries failed")
