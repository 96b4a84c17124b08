"""The ingestion API's tokens in the store, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mhst_tracker.adapters.store.models import ApiTokenRow
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.api.tokens import new_token
from tests.adapters.store.conftest import NOW


async def test_tokens_are_stored_listed_and_revoked(store: Store) -> None:
    first, first_token = new_token("emis", ["T1", "T2"], NOW)
    second, _ = new_token("aaa-portal", ["T3"], NOW + timedelta(hours=1))
    await store.add_token(first)
    await store.add_token(second)
    assert await store.tokens() == [second, first]  # by source
    assert await store.revoke_token(first.token_id, NOW + timedelta(days=1))
    assert not await store.revoke_token(first.token_id, NOW + timedelta(days=2))
    assert not await store.revoke_token("no-such-token", NOW)
    assert await store.tokens() == [second]
    revoked = [token for token in await store.tokens(include_revoked=True) if token.revoked_at]
    assert [(token.token_id, token.revoked_at) for token in revoked] == [
        (first.token_id, NOW + timedelta(days=1))
    ]
    async with store.engine.connect() as connection:
        stored = " ".join(map(str, (await connection.execute(select(ApiTokenRow))).all()))
    assert first_token not in stored
    assert first.token_hash in stored


async def test_a_hash_is_stored_once(store: Store) -> None:
    record, _ = new_token("emis", ["T1"], NOW)
    await store.add_token(record)
    with pytest.raises(IntegrityError):
        await store.add_token(dataclasses.replace(record, token_id="other"))
