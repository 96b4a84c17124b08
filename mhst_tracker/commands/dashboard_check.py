"""``mhst-tracker dashboard-check``: what each dashboard panel shows right now, as text or
as a static HTML page (``--html FILE``) with every panel drawn.

Grafana cannot run here, so this prints every panel of the dashboards with the values its
PromQL returns from the Prometheus at ``MHST_PROMETHEUS_URL``, template variables filled in
as Grafana would (All unless ``--team``/``--school`` are given). PostgreSQL panels are
listed with the store tables they read. A query that fails makes the command exit 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from mhst_tracker.commands import running
from mhst_tracker.config import Settings
from mhst_tracker.dashboards import (
    DASHBOARD_DIR,
    Dashboard,
    DashboardError,
    Panel,
    Sample,
    format_value,
    load_dashboards,
    query_prometheus,
    substitute_promql,
)
from mhst_tracker.dashboards import (
    run_sql as sql_rows,
)

MAX_ROWS = 25


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
@click.option(
    "--html",
    "page",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Instead, draw every panel into this static HTML page (charts, units, thresholds).",
)
def dashboard_check_command(
    uids: tuple[str, ...],
    team: tuple[str, ...],
    school: tuple[str, ...],
    directory: Path,
    page: Path | None,
) -> None:
    """Print every dashboard panel with the value it shows now.

    The values come from the Prometheus at MHST_PROMETHEUS_URL; the PostgreSQL panels of
    --html read the store at MHST_DATABASE_URL when it is PostgreSQL."""
    settings = Settings.from_env()
    selection: dict[str, Sequence[str]] = {"team": team, "school": school}
    try:
        boards = [board for board in load_dashboards(directory) if not uids or board.uid in uids]
    except DashboardError as error:
        raise click.ClickException(str(error)) from None
    if page is not None:
        _write_page(settings, boards, selection, page)
        return
    failures = 0
    for board in boards:
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


def _write_page(
    settings: Settings, boards: list[Dashboard], selection: dict[str, Sequence[str]], page: Path
) -> None:
    from mhst_tracker.render.dashboard_page import PageBuilder

    run_sql = None
    if settings.database_url.startswith("postgresql"):
        url = settings.database_url

        def run_sql(sql: str) -> list[dict[str, Any]]:
            return running.run(sql_rows(url, sql))

    builder = PageBuilder(settings.prometheus_url, selection, run_sql)
    html = builder.page(boards)
    try:
        page.write_text(html, encoding="utf-8")
    except OSError as error:
        raise click.ClickException(f"cannot write {page}: {error.strerror}") from None
    click.echo(f"dashboards drawn to {page}")
    if builder.failures:
        raise click.ClickException(f"{builder.failures} panels failed (shown in the page)")
