"""docker-compose.yml stays in step with the local stack and the application's settings.

The compose file cannot run here (no Docker engine), so these tests read it: the services it
promises, the MHST_* variables it sets (each one a variable the tracker reads, with values
the tracker accepts), the Kafka version and broker settings of the local stack, and the
database grants, which are run against a real PostgreSQL after the real migrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from sqlalchemy.engine import make_url

from deploy.local.kafka import KAFKA_VERSION, TEMPLATE
from deploy.local.process import REPO_ROOT
from mhst_tracker import config
from mhst_tracker.adapters.store.database import (
    create_engine,
    reader_grants,
    upgrade,
    writer_grants,
)
from mhst_tracker.config import Settings
from tests.adapters.store.conftest import create_database, drop_database

COMPOSE = REPO_ROOT / "docker-compose.yml"
GRANTS = REPO_ROOT / "deploy" / "postgres" / "grants.sql"
TRACKER_SERVICES = ("migrate", "topics", "worker", "sink", "api", "notifier")
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_]+)(?P<rule>[^}]*)\}")
ENV_EXAMPLE = REPO_ROOT / "deploy" / "docker" / "env.example"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment with each ``${VAR:?...}`` replaced by a made-up secret."""
    return {
        key: _VARIABLE.sub(lambda match: f"secret-{match['name'].lower()}", str(value))
        for key, value in service["environment"].items()
    }


def test_every_secret_is_required_and_listed_in_the_example_env_file() -> None:
    text = COMPOSE.read_text()
    found = list(_VARIABLE.finditer(text))
    assert found, "the compose file takes its passwords from the environment"
    example = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    for match in found:
        assert match["rule"].startswith(":?"), f"{match['name']} has a default or may be empty"
        assert match["name"] in example, f"{match['name']} is not in {ENV_EXAMPLE.name}"
    grafana = _compose()["services"]["grafana"]["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" in grafana


def test_compose_has_every_service_of_the_stack() -> None:
    services = _compose()["services"]
    expected = {"kafka", "postgres", "migrate", "grants", "prometheus", "alertmanager", "grafana"}
    assert expected | set(TRACKER_SERVICES) <= set(services)
    assert services["worker"]["command"] == ["worker"]
    assert services["sink"]["command"] == ["sink"]
    assert services["notifier"]["command"] == ["notify"]


@pytest.mark.parametrize("name", TRACKER_SERVICES)
def test_tracker_services_set_only_variables_the_tracker_reads(name: str) -> None:
    known = set(re.findall(r'"(MHST_[A-Z_]+)"', inspect.getsource(config)))
    env = _environment(_compose()["services"][name])
    mhst = {key for key in env if key.startswith("MHST_")}
    assert mhst, f"{name} sets no MHST_ variable"
    assert mhst <= known, f"{name} sets unknown variables {mhst - known}"
    settings = Settings.from_env(env)
    assert settings.database_url.startswith("postgresql+asyncpg://")
    if name != "migrate":
        assert settings.kafka_bootstrap == "kafka:9092"
        assert settings.partitions == 12


def test_the_api_is_published_and_healthy_only_when_ready() -> None:
    api = _compose()["services"]["api"]
    assert api["command"] == ["api"]
    settings = Settings.from_env(_environment(api))
    assert settings.api_host == "0.0.0.0"
    assert api["ports"] == [f"127.0.0.1:{settings.api_port}:{settings.api_port}"]
    check = " ".join(api["healthcheck"]["test"])
    assert f"http://127.0.0.1:{settings.api_port}/readyz" in check
    assert set(api["depends_on"]) == {"topics", "grants"}
    assert "tokens create --source" in COMPOSE.read_text()


def test_compose_kafka_matches_the_local_broker() -> None:
    kafka = _compose()["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    template = TEMPLATE.read_text()
    env = _environment(kafka)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "auto.create.topics.enable={auto_create_topics}" in template
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert "group.initial.rebalance.delay.ms=0" in template
    assert env["KAFKA_LOG_RETENTION_HOURS"] == "-1"
    assert "log.retention.hours=-1" in template


def test_mounted_files_exist() -> None:
    for service in _compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{source} is mounted but missing"


def _statements(path: Path) -> list[str]:
    lines = [line for line in path.read_text().splitlines() if not line.startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


def test_writer_grants_are_those_the_command_prints() -> None:
    statements = _statements(GRANTS)
    writer = writer_grants("mhst_writer", "mhst")
    assert statements[: len(writer)] == writer
    assert all("mhst_reader" in statement for statement in statements[len(writer) :])


def test_reader_grants_are_those_the_command_prints() -> None:
    statements = _statements(GRANTS)
    writer = writer_grants("mhst_writer", "mhst")
    assert statements[len(writer) :] == reader_grants("mhst_reader", "mhst")


@pytest.mark.postgres
def test_grants_run_after_the_migrations_and_limit_each_role(postgres_url: str) -> None:
    owner_url = asyncio.run(create_database(postgres_url))
    try:
        asyncio.run(_apply_grants_and_probe(owner_url))
    finally:
        asyncio.run(drop_database(owner_url))


async def _apply_grants_and_probe(owner_url: str) -> None:
    engine = create_engine(owner_url)
    await upgrade(engine)
    await engine.dispose()
    url = make_url(owner_url)
    suffix = uuid.uuid4().hex[:8]
    writer, reader = f"mhst_writer_{suffix}", f"mhst_reader_{suffix}"
    owner = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        await owner.execute(f"CREATE ROLE {writer} LOGIN; CREATE ROLE {reader} LOGIN")
        for statement in _statements(GRANTS):
            statement = statement.replace("DATABASE mhst ", f'DATABASE "{url.database}" ')
            statement = statement.replace("mhst_writer", writer).replace("mhst_reader", reader)
            await owner.execute(statement)
    finally:
        await owner.close()
    for role, can_write in ((writer, True), (reader, False)):
        conn = await asyncpg.connect(host=url.host, port=url.port, user=role, database=url.database)
        try:
            assert await conn.fetchval("SELECT count(*) FROM alerts") == 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("CREATE TABLE intruder (id int)")
            insert = "INSERT INTO rejected_events (reason) VALUES ('probe')"
            if can_write:
                await _insert_or_not_null(conn, insert)
            else:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(insert)
        finally:
            await conn.close()


async def _insert_or_not_null(conn: asyncpg.Connection, insert: str) -> None:
    """The writer may insert: a NOT NULL violation (not a privilege error) proves the right."""
    with contextlib.suppress(asyncpg.NotNullViolationError):
        await conn.execute(insert)
