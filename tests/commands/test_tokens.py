"""``mhst-tracker tokens create|list|revoke`` on a migrated store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.models import ApiTokenRow
from mhst_tracker.api.tokens import token_hash
from mhst_tracker.cli import main


def migrated(path: Path) -> str:
    url = f"sqlite+aiosqlite:///{path}"

    async def run() -> None:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(run())
    return url


def stored(url: str) -> list[tuple[str, ...]]:
    async def run() -> list[tuple[str, ...]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(select(ApiTokenRow))
                return [tuple(map(str, row)) for row in rows]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_a_token_is_printed_once_and_only_its_hash_is_kept(tmp_path: Path) -> None:
    env = {"MHST_DATABASE_URL": migrated(tmp_path / "store.db")}
    runner = CliRunner()
    made = runner.invoke(
        main, ["tokens", "create", "--source", "emis", "--teams", "T1,T2"], env=env
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert token.startswith("mhst_")
    assert "shown once" in made.stderr
    assert token not in made.stderr
    rows = stored(env["MHST_DATABASE_URL"])
    assert len(rows) == 1
    assert token_hash(token) in rows[0]
    assert not any(token in value for value in rows[0])

    listed = runner.invoke(main, ["tokens", "list"], env=env)
    assert listed.exit_code == 0
    (line,) = listed.stdout.splitlines()
    token_id, source, teams = line.split()[:3]
    assert (source, teams) == ("emis", "T1,T2")
    assert token not in listed.output

    revoked = runner.invoke(main, ["tokens", "revoke", token_id], env=env)
    assert revoked.exit_code == 0
    assert runner.invoke(main, ["tokens", "list"], env=env).stdout == ""
    assert token_id in runner.invoke(main, ["tokens", "list", "--all"], env=env).stdout
    again = runner.invoke(main, ["tokens", "revoke", token_id], env=env)
    assert again.exit_code == 1
    assert f"no live token {token_id}" in again.stderr


def test_bad_names_and_an_unmigrated_store_are_one_line(tmp_path: Path) -> None:
    env = {"MHST_DATABASE_URL": migrated(tmp_path / "store.db")}
    runner = CliRunner()
    bad = runner.invoke(main, ["tokens", "create", "--source", "a b", "--teams", "T1"], env=env)
    assert bad.exit_code == 2
    assert "source 'a b'" in bad.stderr
    empty = {"MHST_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"}
    unmigrated = runner.invoke(main, ["tokens", "list"], env=empty)
    assert unmigrated.exit_code == 1
    assert "db upgrade" in unmigrated.stderr
    assert "Traceback" not in unmigrated.output
