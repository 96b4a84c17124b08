"""``mhst-tracker tokens``: the ingestion API's tokens, one per source system.

``tokens create --source NAME --teams T1,T2`` makes a token, prints it once on standard
output and stores only its SHA-256; ``tokens list`` shows each token's id, source, teams and
dates (never a token); ``tokens revoke ID`` revokes one, refused by the API within seconds.
"""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import click

from mhst_tracker import bootstrap
from mhst_tracker.adapters.store.records import ApiToken
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.api.tokens import TokenError, new_token
from mhst_tracker.commands import running
from mhst_tracker.config import Settings
from mhst_tracker.failures import USAGE

_T = TypeVar("_T")


class BadName(click.ClickException):
    """A source or team name a token cannot have: one line, the exit code of a usage
    error."""

    exit_code = USAGE


@click.group("tokens")
def tokens_command() -> None:
    """Manage the ingestion API's tokens."""


@tokens_command.command("create")
@click.option("--source", required=True, help="The source system's name (logs, metrics).")
@click.option("--teams", required=True, help="The teams it may send events for: T1,T2.")
def create_command(source: str, teams: str) -> None:
    """Make a token for a source system and print it (once: only its hash is kept)."""
    try:
        record, token = new_token(source, teams.split(","), datetime.now(UTC))
    except TokenError as error:
        raise BadName(str(error)) from None
    _with_store(lambda store: store.add_token(record))
    click.echo(
        f"token {record.token_id} for {record.source} (teams {', '.join(record.teams)}); "
        "shown once, keep it secret:",
        err=True,
    )
    click.echo(token)


@tokens_command.command("list")
@click.option("--all", "everything", is_flag=True, help="Include revoked tokens.")
def list_command(everything: bool) -> None:
    """List the tokens: id, source, teams, created and revoked (never the tokens)."""
    for token in _with_store(lambda store: store.tokens(include_revoked=everything)):
        click.echo(_line(token))


@tokens_command.command("revoke")
@click.argument("token_id")
def revoke_command(token_id: str) -> None:
    """Revoke the token TOKEN_ID (the id ``tokens list`` shows)."""
    if not _with_store(lambda store: store.revoke_token(token_id, datetime.now(UTC))):
        raise click.ClickException(f"no live token {token_id}")
    click.echo(f"token {token_id} revoked", err=True)


def _line(token: ApiToken) -> str:
    revoked = token.revoked_at.isoformat(timespec="seconds") if token.revoked_at else "-"
    created = token.created_at.isoformat(timespec="seconds")
    return f"{token.token_id}  {token.source:<24} {','.join(token.teams):<30} {created}  {revoked}"


def _with_store(action: Callable[[Store], Awaitable[_T]]) -> _T:
    async def run() -> _T:
        store = await bootstrap.open_store(bootstrap.wire(Settings.from_env()))
        try:
            return await action(store)
        finally:
            await store.close()

    return running.run(run())
