"""Every failure a new operator meets is one line on standard error, with its exit code.

Each command runs as a process, as an operator runs it: a setting it cannot use is exit
code 2, a server it cannot reach exit code 1, and neither prints a traceback (``--debug``
does). A long-running command (the worker, the sink) may have logged its start first, in
the tracker's JSON lines; its last line is still the one error.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from mhst_tracker.adapters.store.database import create_engine, upgrade

EVENT = (
    b'{"event_id":"e1","type":"referral_received","referral_id":"R1",'
    b'"occurred_at":"2026-02-20T10:00:00Z","team_id":"T1"}\n'
)
COMMAND = Path(sys.executable).with_name("mhst-tracker")
REFUSED = "127.0.0.1:1"
"""A loopback address where nothing listens: connecting is refused at once."""


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("MHST_")}
    return subprocess.run(
        [str(COMMAND), *args],
        env={
            **base,
            "MHST_METRICS_PORT": "0",
            "MHST_SINK_METRICS_PORT": "0",
            "MHST_API_METRICS_PORT": "0",
            **env,
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    lines = result.stderr.splitlines()
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert lines, "no error line"
    assert lines[-1].startswith("Error: ")
    assert says in lines[-1]
    for line in lines[:-1]:  # a long-running command's own log lines, before the failure
        assert isinstance(orjson.loads(line), dict), line


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """A folder with an event file, a migrated SQLite store and a file that is no database."""
    (tmp_path / "events.jsonl").write_bytes(EVENT)
    (tmp_path / "not-a-database.db").write_bytes(b"not a database at all")
    (tmp_path / "profile.toml").write_text('name = "bad"\nstages = []\n')
    return tmp_path


@pytest.fixture
async def migrated(place: Path) -> str:
    url = f"sqlite+aiosqlite:///{place / 'store.db'}"
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    return url


CONFIGURATION = [
    (
        "profile file missing",
        ["replay", "events.jsonl"],
        {"MHST_PROFILE": "no.toml"},
        "MHST_PROFILE",
    ),
    (
        "profile not a profile",
        ["replay", "events.jsonl"],
        {"MHST_PROFILE": "profile.toml"},
        "MHST_PROFILE",
    ),
    ("clock malformed", ["replay", "events.jsonl"], {"MHST_CLOCK": "simulated:soon"}, "MHST_CLOCK"),
    (
        "partitions malformed",
        ["topics", "create"],
        {"MHST_PARTITIONS": "twelve"},
        "MHST_PARTITIONS",
    ),
    ("partitions zero", ["worker"], {"MHST_PARTITIONS": "0"}, "MHST_PARTITIONS"),
    ("standbys negative", ["worker"], {"MHST_STANDBY_REPLICAS": "-1"}, "MHST_STANDBY_REPLICAS"),
    ("metrics port malformed", ["worker"], {"MHST_METRICS_PORT": "http"}, "MHST_METRICS_PORT"),
    (
        "sink metrics port malformed",
        ["sink"],
        {"MHST_SINK_METRICS_PORT": "-1"},
        "MHST_SINK_METRICS_PORT",
    ),
    (
        "school labels malformed",
        ["worker"],
        {"MHST_METRICS_SCHOOL_LABELS": "maybe"},
        "MHST_METRICS_SCHOOL_LABELS",
    ),
    (
        "event size malformed",
        ["replay", "events.jsonl"],
        {"MHST_MAX_EVENT_BYTES": "1MB"},
        "MHST_MAX_EVENT_BYTES",
    ),
    (
        "log format unknown",
        ["replay", "events.jsonl"],
        {"MHST_LOG_FORMAT": "xml"},
        "MHST_LOG_FORMAT",
    ),
    (
        "kafka address malformed",
        ["topics", "create"],
        {"MHST_KAFKA_BOOTSTRAP": "::::"},
        "MHST_KAFKA_BOOTSTRAP",
    ),
    (
        "database url garbage",
        ["db", "upgrade"],
        {"MHST_DATABASE_URL": "garbage"},
        "MHST_DATABASE_URL",
    ),
    (
        "postgresql without its driver",
        ["db", "upgrade"],
        {"MHST_DATABASE_URL": "postgresql://u@127.0.0.1/db"},
        "driver 'postgresql'",
    ),
    (
        "sqlite in a missing folder",
        ["db", "upgrade"],
        {"MHST_DATABASE_URL": "sqlite+aiosqlite:///no/such/folder/x.db"},
        "not a folder",
    ),
    ("api rate malformed", ["api"], {"MHST_API_RATE_LIMIT": "fast"}, "MHST_API_RATE_LIMIT"),
    (
        "api pseudonymising without a key",
        ["api"],
        {"MHST_API_NHS_NUMBER": "pseudonymise"},
        "MHST_API_PSEUDONYM_KEY",
    ),
    ("api nhs mode unknown", ["api"], {"MHST_API_NHS_NUMBER": "keep"}, "MHST_API_NHS_NUMBER"),
    (
        "token for a bad source name",
        ["tokens", "create", "--source", "a b", "--teams", "T1"],
        {},
        "source 'a b'",
    ),
]


UNREACHABLE = [
    (
        "database refused",
        ["db", "upgrade"],
        {"MHST_DATABASE_URL": f"postgresql+asyncpg://u@{REFUSED}/db"},
        "Connection refused",
    ),
    (
        "database host unknown",
        ["report", "--period", "2026-09"],
        {"MHST_DATABASE_URL": "postgresql+asyncpg://u@no-such-host.invalid/db"},
        "cannot use the database",
    ),
    (
        "database refused, waiting list",
        ["waiting-list", "--all-teams"],
        {"MHST_DATABASE_URL": f"postgresql+asyncpg://u@{REFUSED}/db"},
        "MHST_DATABASE_URL",
    ),
    (
        "sqlite file not a database",
        ["db", "upgrade"],
        {"MHST_DATABASE_URL": "sqlite+aiosqlite:///not-a-database.db"},
        "not a database",
    ),
    (
        "store not migrated",
        ["waiting-list", "--all-teams"],
        {"MHST_DATABASE_URL": "sqlite+aiosqlite:///empty.db"},
        "db upgrade",
    ),
    (
        "kafka absent, topics",
        ["topics", "create"],
        {"MHST_KAFKA_BOOTSTRAP": REFUSED},
        "cannot reach Kafka",
    ),
    ("kafka absent, worker", ["worker"], {"MHST_KAFKA_BOOTSTRAP": REFUSED}, "cannot reach Kafka"),
    ("kafka absent, rebuild", ["rebuild"], {"MHST_KAFKA_BOOTSTRAP": REFUSED}, "cannot reach Kafka"),
    (
        "kafka absent, notify skip",
        ["notify", "skip"],
        {"MHST_KAFKA_BOOTSTRAP": REFUSED},
        "cannot reach Kafka",
    ),
    (
        "store not migrated, rebuild --store",
        ["rebuild", "--store"],
        {"MHST_DATABASE_URL": "sqlite+aiosqlite:///empty.db", "MHST_KAFKA_BOOTSTRAP": REFUSED},
        "db upgrade",
    ),
    (
        "database refused, api",
        ["api"],
        {"MHST_DATABASE_URL": f"postgresql+asyncpg://u@{REFUSED}/db", "MHST_API_PORT": "0"},
        "MHST_DATABASE_URL",
    ),
    (
        "store not migrated, tokens",
        ["tokens", "list"],
        {"MHST_DATABASE_URL": "sqlite+aiosqlite:///empty.db"},
        "db upgrade",
    ),
    (
        "prometheus absent",
        ["dashboard-check"],
        {"MHST_PROMETHEUS_URL": f"http://{REFUSED}"},
        "cannot reach Prometheus",
    ),
]


@pytest.mark.parametrize(
    ("args", "env", "says", "code"),
    [
        pytest.param(args, env, says, code, id=name)
        for code, cases in ((2, CONFIGURATION), (1, UNREACHABLE))
        for name, args, env, says in cases
    ],
)
def test_a_setting_it_cannot_use_is_exit_2_and_a_server_out_of_reach_exit_1_in_one_line(
    place: Path, args: list[str], env: dict[str, str], says: str, code: int
) -> None:
    assert_one_error_line(run(args, env, place), code, says)


def test_the_sink_without_kafka_says_so_in_one_line(place: Path, migrated: str) -> None:
    env = {"MHST_DATABASE_URL": migrated, "MHST_KAFKA_BOOTSTRAP": REFUSED}
    assert_one_error_line(run(["sink"], env, place), 1, "cannot reach Kafka")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another process has bound."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_sink_metrics_port_in_use_is_one_line(
    place: Path, migrated: str, taken_port: int
) -> None:
    env = {"MHST_DATABASE_URL": migrated, "MHST_SINK_METRICS_PORT": str(taken_port)}
    assert_one_error_line(run(["sink"], env, place), 2, "MHST_SINK_METRICS_PORT")


def test_an_api_port_in_use_is_one_line(place: Path, migrated: str, taken_port: int) -> None:
    env = {"MHST_DATABASE_URL": migrated, "MHST_API_PORT": str(taken_port)}
    assert_one_error_line(run(["api"], env, place), 2, "MHST_API_PORT")


@pytest.mark.kafka
def test_a_worker_metrics_port_in_use_is_one_line(
    place: Path, kafka_bootstrap: str, taken_port: int
) -> None:
    env = {
        "MHST_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "MHST_TOPIC_PREFIX": f"failures-{taken_port}.",
        "MHST_WORKER_DATA_DIR": str(place / "worker"),
        "MHST_METRICS_PORT": str(taken_port),
    }
    assert_one_error_line(run(["worker"], env, place), 2, "MHST_METRICS_PORT")


def test_debug_shows_the_traceback(place: Path) -> None:
    result = run(["--debug", "db", "upgrade"], {"MHST_DATABASE_URL": "garbage"}, place)
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "ConfigError" in result.stderr


def test_a_bad_profile_given_on_the_command_line_is_a_usage_error(place: Path) -> None:
    result = run(["replay", "events.jsonl", "--profile", "profile.toml"], {}, place)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "stages must be a non-empty array" in result.stderr
