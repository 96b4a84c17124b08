"""``mhst-tracker db``: migrate the store and print the grants of its writer role.

``db upgrade`` runs the migrations shipped in the package (as the database owner);
``db grants ROLE`` prints the SQL that lets an existing role read and write rows without
DDL rights (see docs/store.md).
"""

import click
from sqlalchemy.engine import make_url

from mhst_tracker.adapters.store.database import (
    create_engine,
    current_revision,
    upgrade,
    writer_grants,
)
from mhst_tracker.commands import running
from mhst_tracker.config import Settings


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
        before = await current_revision(engine)
        await upgrade(engine, revision)
        return before, await current_revision(engine)
    finally:
        await engine.dispose()


@db_command.command("grants")
@click.argument("role")
@click.option("--url", help="Database URL, for the database name (default MHST_DATABASE_URL).")
def grants_command(role: str, url: str | None) -> None:
    """Print the SQL granting ROLE row access without DDL (PostgreSQL)."""
    parsed = make_url(url or Settings.from_env().database_url)
    if parsed.get_backend_name() != "postgresql":
        raise click.UsageError("roles and grants are PostgreSQL's; SQLite has none")
    database = parsed.database
    if not database:
        raise click.UsageError("the database URL names no database")
    try:
        statements = writer_grants(role, database)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    for statement in statements:
        click.echo(f"{statement};")
