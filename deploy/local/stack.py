"""The three services together, for the demo and for a developer's shell.

``python -m deploy.local up`` starts Kafka, PostgreSQL and Prometheus in the foreground,
writes their addresses to ``.cache/stack.env`` (``source`` it, or let the tests read it)
and stops everything on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deploy.local.kafka import KafkaBroker
from deploy.local.postgres import PostgresServer
from deploy.local.process import CACHE_DIR
from deploy.local.prometheus import PrometheusServer

STACK_ENV = CACHE_DIR / "stack.env"

# The variables the application reads, and that the tests use to reach a running stack.
KAFKA_VAR = "MHST_KAFKA_BOOTSTRAP"
DATABASE_VAR = "MHST_DATABASE_URL"
PROMETHEUS_VAR = "MHST_PROMETHEUS_URL"


@dataclass(frozen=True)
class StackAddresses:
    """Where each service of a running stack listens."""

    kafka_bootstrap: str
    database_url: str
    prometheus_url: str
    prometheus_config: Path

    def as_env(self) -> dict[str, str]:
        """The environment variables that point the application at this stack."""
        return {
            KAFKA_VAR: self.kafka_bootstrap,
            DATABASE_VAR: self.database_url,
            PROMETHEUS_VAR: self.prometheus_url,
            "MHST_PROMETHEUS_CONFIG": str(self.prometheus_config),
        }


def write_env_file(addresses: StackAddresses, path: Path = STACK_ENV) -> None:
    """Record a running stack's addresses as shell ``export`` lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"export {key}={value}" for key, value in addresses.as_env().items()]
    path.write_text("\n".join(lines) + "\n")


def read_env_file(path: Path = STACK_ENV) -> dict[str, str]:
    """The addresses recorded by ``write_env_file`` (empty when no stack is up)."""
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines if "=" in line)


@contextlib.contextmanager
def running_stack(
    kafka_port: int | None = None,
    postgres_port: int | None = None,
    prometheus_port: int | None = None,
    scrape_targets: tuple[str, ...] = (),
) -> Iterator[StackAddresses]:
    """Start all three services in parallel-friendly order and stop them on exit."""
    kafka = KafkaBroker(kafka_port)
    postgres = PostgresServer(postgres_port)
    prometheus = PrometheusServer(prometheus_port)
    try:
        # Start all first, then wait: the slow JVM start overlaps with the others.
        kafka.start()
        postgres.start()
        prometheus.start(scrape_targets)
        postgres.wait_ready()
        prometheus.wait_ready()
        kafka.wait_ready()
        yield StackAddresses(kafka.bootstrap, postgres.url, prometheus.url, prometheus.config_path)
    finally:
        for service in (prometheus, postgres, kafka):
            service.stop()


def env_port(name: str) -> int | None:
    """A fixed port from the environment, or None to pick a free one."""
    value = os.environ.get(name)
    return int(value) if value else None
