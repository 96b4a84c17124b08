"""Session fixtures for the real services: a Kafka broker, a PostgreSQL server, a Prometheus.

Each service starts on free loopback ports the first time a test asks for it and stops at
the end of the session. With ``MHST_USE_RUNNING_STACK=1`` the tests use the stack that
``python -m deploy.local up`` started instead (see README). A service that cannot start
makes every test that needs it fail with the cause: nothing is skipped for a missing service.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TypeVar

import pytest

from deploy.local import KafkaBroker, PostgresServer, PrometheusServer
from deploy.local.process import LocalServer
from deploy.local.stack import DATABASE_VAR, KAFKA_VAR, PROMETHEUS_VAR, read_env_file
from tests.adapters.store.conftest import create_database, drop_database

_PR_SET_PDEATHSIG = 1


ServerT = TypeVar("ServerT", bound=LocalServer)
T = TypeVar("T")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """Let SIGTERM stop the run like Ctrl-C, so session fixtures stop their services.

    The run also receives SIGTERM if whatever started it dies; services started by the run
    are killed by the kernel if the run itself is killed (see deploy.local.process).
    """
    signal.signal(signal.SIGTERM, _raise_interrupt)
    ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _running_stack() -> dict[str, str]:
    if os.environ.get("MHST_USE_RUNNING_STACK") != "1":
        return {}
    env = read_env_file()
    if not env:
        raise RuntimeError("MHST_USE_RUNNING_STACK=1 but no stack is up: run `make stack`")
    return env


@contextlib.contextmanager
def _started(server: ServerT) -> Iterator[ServerT]:
    """A local server started and answering, stopped afterwards."""
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _service(
    make: Callable[[], ServerT],
    of_server: Callable[[ServerT], T],
    of_stack: Callable[[dict[str, str]], T],
) -> Iterator[T]:
    """What a session fixture yields: from the running stack if there is one
    (``MHST_USE_RUNNING_STACK``), else from a server of the session's own."""
    running = _running_stack()
    if running:
        yield of_stack(running)
        return
    with _started(make()) as server:
        yield of_server(server)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of a real Kafka broker."""
    yield from _service(KafkaBroker, lambda broker: broker.bootstrap, lambda env: env[KAFKA_VAR])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL (asyncpg driver) of a real PostgreSQL database."""
    yield from _service(PostgresServer, lambda server: server.url, lambda env: env[DATABASE_VAR])


@pytest.fixture(scope="session")
def prometheus() -> Iterator[PrometheusServer]:
    """A real Prometheus server; ``set_targets`` points it at the workers under test."""
    yield from _service(
        PrometheusServer,
        lambda server: server,
        lambda env: PrometheusServer.attach(
            env[PROMETHEUS_VAR], Path(env["MHST_PROMETHEUS_CONFIG"])
        ),
    )


_skipped: list[str] = []


@pytest.fixture
def owner_url(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database, connected to as its owner."""
    url = asyncio.run(create_database(postgres_url))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


@pytest.fixture
def own_broker() -> Iterator[KafkaBroker]:
    """A broker of the test's own, to stop, kill or start again (the session's serves
    others)."""
    with _started(KafkaBroker()) as broker:
        yield broker


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember skipped tests, so CI can refuse a run that skipped any.

    An expected failure (``xfail``, a known defect whose test still runs in full) is
    reported by pytest as skipped too; it is not a test that did not run.
    """
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: every test must run against the real services."""
    if os.environ.get("CI") == "true" and _skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nCI: {len(_skipped)} test(s) were skipped, which CI does not allow:")
        for nodeid in _skipped:
            print(f"  {nodeid}")
