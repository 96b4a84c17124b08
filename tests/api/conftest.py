"""Fixtures of the API tests: ``mhst-tracker api`` processes on the real broker, with a
real store holding their tokens.

Each API gets its own topic prefix (its topics created), an SQLite store migrated in the
test's directory, tokens made through the store as ``tokens create`` makes them, and its
own ports; it is stopped after the test.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from deploy.local.process import ManagedProcess, free_port
from mhst_tracker.adapters.kafka import create_topics
from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.api.intake import JSON
from mhst_tracker.api.tokens import new_token
from mhst_tracker.config import Settings
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.timesource import WallClock
from tests.streams.harness import Record, TopicReader

MHST_TRACKER = Path(sys.executable).parent / "mhst-tracker"
PARTITIONS = 3
PSEUDONYM_KEY = "a pseudonym key for the tests only, 40 chars"
_numbers = itertools.count()


@dataclass
class Api:
    """A running ``mhst-tracker api`` and what it was started with."""

    process: ManagedProcess
    settings: Settings
    url: str
    metrics_url: str
    database_url: str
    tokens: dict[str, str] = field(default_factory=dict)
    """Token by source name."""

    def post(
        self,
        body: bytes | Iterator[bytes] | list[Any] | dict[str, Any],
        *,
        source: str | None = "emis",
        content_type: str = JSON,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """``POST /v1/events`` with the source's token (none for ``source=None``)."""
        content = body if isinstance(body, bytes | Iterator) else orjson.dumps(body)
        sent = {"Content-Type": content_type, **(headers or {})}
        if source is not None:
            sent["Authorization"] = f"Bearer {self.tokens[source]}"
        return httpx.post(f"{self.url}/v1/events", content=content, headers=sent, timeout=30)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30)

    def metrics(self) -> str:
        return httpx.get(f"{self.metrics_url}/metrics", timeout=10).text

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    async def topic(self, name: str | None = None) -> list[Record]:
        """Every record on one of the API's topics (the events topic by default)."""
        reader = TopicReader(
            self.settings.kafka_bootstrap, name or self.settings.topics.events, PARTITIONS
        )
        try:
            records = await reader.poll()
            for _ in range(5):  # until nothing more arrives
                before = len(records)
                await asyncio.sleep(0.2)
                if len(await reader.poll()) == before:
                    break
            return list(reader.records)
        finally:
            await reader.close()


async def migrated_store(url: str) -> Store:
    engine = create_engine(url)
    await upgrade(engine)
    return Store(engine, TRAILBLAZER_4WW, WallClock())


async def add_token(database_url: str, source: str, teams: list[str]) -> str:
    """A new live token of ``source`` for ``teams`` in the store; the token."""
    store = await migrated_store(database_url)
    try:
        record, token = new_token(source, teams, datetime.now(UTC))
        await store.add_token(record)
        return token
    finally:
        await store.close()


class ApiFactory:
    """Starts APIs on the session's broker; stops them all at the end of the test."""

    def __init__(self, kafka_bootstrap: str, base_dir: Path) -> None:
        self.kafka_bootstrap = kafka_bootstrap
        self.base_dir = base_dir
        self.started: list[ManagedProcess] = []

    async def start(
        self,
        env: Mapping[str, str] | None = None,
        tokens: Mapping[str, list[str]] | None = None,
        database_url: str | None = None,
        settings: Settings | None = None,
    ) -> Api:
        """An API with ``tokens`` (source -> teams; default ``emis`` for T1 and T2), ready.

        ``env`` adds ``MHST_*`` variables; ``settings`` gives the broker, topics and clock
        of a deployment whose topics exist (default: new topics of its own)."""
        number = next(_numbers)
        if settings is None:
            settings = Settings(
                kafka_bootstrap=self.kafka_bootstrap,
                topic_prefix=f"api{os.getpid()}-{number}.",
                partitions=PARTITIONS,
            )
            await create_topics(settings)
        database_url = database_url or f"sqlite+aiosqlite:///{self.base_dir / f'api{number}.db'}"
        api_port, metrics_port = free_port(), free_port()
        process = ManagedProcess(
            f"api-{number}",
            [str(MHST_TRACKER), "api"],
            self.base_dir / f"api-{number}.log",
            env={
                **os.environ,
                "MHST_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                "MHST_TOPIC_PREFIX": settings.topic_prefix,
                "MHST_PARTITIONS": str(settings.partitions),
                "MHST_CLOCK": settings.clock,
                "MHST_DATABASE_URL": database_url,
                "MHST_API_PORT": str(api_port),
                "MHST_API_METRICS_PORT": str(metrics_port),
                **(env or {}),
            },
        )
        api = Api(
            process,
            settings,
            f"http://127.0.0.1:{api_port}",
            f"http://127.0.0.1:{metrics_port}",
            database_url,
        )
        for source, teams in (tokens or {"emis": ["T1", "T2"]}).items():
            api.tokens[source] = await add_token(database_url, source, teams)
        process.start()
        self.started.append(process)
        await wait_ready(api)
        return api

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


async def wait_ready(api: Api, within: float = 60.0) -> None:
    """Until ``/readyz`` answers 200; fails with the API's log if it does not."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while True:
            code = api.process.exit_code()
            if code is not None:
                raise AssertionError(f"the API exited with {code}:\n{api.process.log_tail(40)}")
            try:
                if (await client.get(f"{api.url}/readyz", timeout=5)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the API was not ready:\n{api.process.log_tail(40)}")
            await asyncio.sleep(0.2)


@pytest.fixture
async def apis(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[ApiFactory]:
    factory = ApiFactory(kafka_bootstrap, tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
async def api(apis: ApiFactory) -> Api:
    """An API with the default settings and an ``emis`` token for T1 and T2."""
    return await apis.start()


def ndjson(*bodies: dict[str, Any] | str) -> bytes:
    """An NDJSON body of event bodies (strings as they are), with a trailing newline."""
    return b"".join(
        (body.encode() if isinstance(body, str) else orjson.dumps(body)) + b"\n" for body in bodies
    )


def iter_log_lines(text: str) -> Iterator[dict[str, Any]]:
    """Each line of a JSON-lines log, decoded (a line that is not JSON fails the test)."""
    for line in text.splitlines():
        if line.strip():
            yield orjson.loads(line)
