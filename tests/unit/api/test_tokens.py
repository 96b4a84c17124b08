"""Tokens: made with a hash, checked names, and the API's cache of the store's tokens."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from mhst_tracker.adapters.store.records import ApiToken
from mhst_tracker.api.tokens import (
    MISS_RELOAD_SECONDS,
    PREFIX,
    TokenCache,
    TokenError,
    TokensUnavailable,
    new_token,
    token_hash,
)

NOW = datetime(2026, 9, 1, tzinfo=UTC)


def test_a_new_token_is_random_and_only_its_hash_is_recorded() -> None:
    record, token = new_token("emis-web", ["T2", " T1", "T2", ""], NOW)
    other, second = new_token("emis-web", ["T1"], NOW)
    assert token.startswith(PREFIX)
    assert len(token) >= len(PREFIX) + 43
    assert token != second
    assert record.token_id != other.token_id
    assert record.token_hash == hashlib.sha256(token.encode()).hexdigest() == token_hash(token)
    assert token not in repr(record)
    assert record.teams == ("T1", "T2")
    assert (record.source, record.created_at, record.revoked_at) == ("emis-web", NOW, None)


@pytest.mark.parametrize(
    ("source", "teams"),
    [("", ["T1"]), ("has space", ["T1"]), ("x" * 65, ["T1"]), ("s", []), ("s", ["T 1"])],
)
def test_bad_names_are_refused(source: str, teams: list[str]) -> None:
    with pytest.raises(TokenError):
        new_token(source, teams, NOW)


class Store:
    """The store's live tokens, as ``Store.tokens`` gives them; counts the reads."""

    def __init__(self) -> None:
        self.live: list[ApiToken] = []
        self.reads = 0
        self.down = False

    async def tokens(self) -> Sequence[ApiToken]:
        self.reads += 1
        if self.down:
            raise ConnectionError("store down")
        return list(self.live)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_cache_finds_new_tokens_at_once_and_unknown_ones_cost_one_read_a_second() -> None:
    store, clock = Store(), Clock()
    cache = TokenCache(store.tokens, clock)
    assert not cache.loaded
    await cache.reload()
    assert cache.loaded
    record, token = new_token("emis", ["T1"], NOW)
    store.live.append(record)
    assert await cache.find(token) is None  # read less than a second ago
    clock.now += MISS_RELOAD_SECONDS
    assert await cache.find(token) == record
    reads = store.reads
    clock.now += MISS_RELOAD_SECONDS
    for _ in range(100):
        assert await cache.find("mhst_unknown") is None
    assert store.reads == reads + 1
    assert await cache.find(token) == record


async def test_a_revoked_token_goes_at_the_next_reload() -> None:
    store = Store()
    record, token = new_token("emis", ["T1"], NOW)
    store.live.append(record)
    cache = TokenCache(store.tokens, Clock())
    await cache.reload()
    assert await cache.find(token) == record
    store.live.clear()
    await cache.reload()
    assert await cache.find(token) is None


async def test_an_unknown_token_with_the_store_down_is_unavailable_not_unknown() -> None:
    store, clock = Store(), Clock()
    cache = TokenCache(store.tokens, clock)
    await cache.reload()
    store.down = True
    clock.now += MISS_RELOAD_SECONDS
    with pytest.raises(TokensUnavailable):
        await cache.find("mhst_unknown")
