"""``mhst-tracker db``: migrate the store, print its roles' grants, purge old rejections.

``db upgrade`` runs the migrations shipped in the package (as the database owner);
``db grants ROLE`` prints the SQL that lets an existing role read and write rows without
DDL rights, ``db grants ROLE --reader`` the SQL of a role that only reads (dashboards);
``db purge-rejected --older-than 30d`` deletes the dead-letter rows older than that (as the
owner). See docs/store.md.
"""

import re
from datetime import UTC, datetime, timedelta

import click
from sqlalchemy.engine import make_url

from mhst_tracker import bootstrap
from mhst_tracker.adapters.store.database import (
    create_engine,
    current_revision,
    reachable,
    reader_grants,
    upgrade,
    writer_grants,
)
from mhst_tracker.commands import running
from mhst_tracker.config import Settings

_DAYS = re.compile(r"([0-9]+)d")


@click.group("db")
def db_command() -> None:
    """Manage the store's schema (PostgreSQL or SQLite)."""


@db_command.command("upgrade")
@click.option("--url", help="Database URL (default MHST_DATABASE_URL).")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade_command(url: str | None, revision: str) -> None:
    """Migrate the store to the newest schema (run as the database owner)."""
    url = url or Settings.from_env().database_url
    before, after = running.run(_upgrade(url, revision))
    click.echo(f"store at revision {after} (was {before or 'empty'})", err=True)


async def _upgrade(url: str, revision: str) -> tuple[str | None, str | None]:
    engine = create_engine(url)
    try:
        async with reachable(url):
            before = await current_revision(engine)
            await upgrade(engine, revision)
            return before, await current_revision(engine)
    finally:
        await engine.dispose()


@db_command.command("grants")
@click.argument("role")
@click.option("--url", help="Database URL, for the database name (default MHST_DATABASE_URL).")
@click.option("--reader", is_flag=True, help="A role that only reads (dashboards).")
def grants_command(role: str, url: str | None, reader: bool) -> None:
    """Print the SQL granting ROLE row access without DDL (PostgreSQL)."""
    parsed = make_url(url or Settings.from_env().database_url)
    if parsed.get_backend_name() != "postgresql":
        raise click.UsageError("roles and grants are PostgreSQL's; SQLite has none")
    database = parsed.database
    if not database:
        raise click.UsageError("the database URL names no database")
    try:
        statements = (reader_grants if reader else writer_grants)(role, database)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    for statement in statements:
        click.echo(f"{statement};")


def _age(_context: click.Context, _parameter: click.Parameter, value: str) -> timedelta:
    match = _DAYS.fullmatch(value)
    if match is None:
        raise click.BadParameter("a number of days, such as 30d")
    return timedelta(days=int(match.group(1)))


@db_command.command("purge-rejected")
@click.option(
    "--older-than",
    "age",
    required=True,
    callback=_age,
    help="Delete the rejections made more than this long ago, in days (30d).",
)
@click.option("--url", help="Database URL (default MHST_DATABASE_URL).")
def purge_rejected_command(age: timedelta, url: str | None) -> None:
    """Delete old rows of the dead-letter table (run as the database owner)."""
    settings = Settings.from_env()
    before = datetime.now(UTC) - age
    purged = running.run(_purge(settings, url, before))
    click.echo(f"{purged} rejections made before {before.isoformat()} deleted", err=True)


async def _purge(settings: Settings, url: str | None, before: datetime) -> int:
    store = await bootstrap.open_store(bootstrap.wire(settings), url)
    try:
        return await store.purge_rejected(before)
    finally:
        await store.close()
