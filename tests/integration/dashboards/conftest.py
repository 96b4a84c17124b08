"""Fixtures of the dashboard tests: simulated events, the engine's replay of them, and
metrics-serving processes (:mod:`tests.integration.dashboards.metrics_driver`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from deploy.local.process import REPO_ROOT, free_port
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import ReplayResult, replay
from mhst_tracker.simulate import simulate

AS_OF = datetime(2025, 12, 20, 12, 0, tzinfo=UTC)
PARTITIONS = 6
DATASOURCES = REPO_ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "mhst.yml"


def provisioned_datasources() -> dict[str, str]:
    """The provisioned datasources' uids and types."""
    config = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    return {source["uid"]: source["type"] for source in config["datasources"]}


@dataclass(frozen=True)
class Events:
    """A simulated event file and the engine's replay of it as of ``AS_OF``."""

    path: Path
    lines: list[str]
    result: ReplayResult


@pytest.fixture(scope="package")
def events(tmp_path_factory: pytest.TempPathFactory) -> Events:
    lines = list(simulate(11, date(2025, 11, 3), referrals=300))
    path = tmp_path_factory.mktemp("dashboards") / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Events(path, lines, replay(lines, AS_OF, TRAILBLAZER_4WW))


class Driver:
    """One metrics-serving process owning some partitions."""

    def __init__(self, events: Events, partitions: list[int]) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.dashboards.metrics_driver",
                str(events.path),
                f"--as-of={AS_OF.isoformat()}",
                f"--partitions={','.join(map(str, partitions))}",
                f"--of={PARTITIONS}",
                f"--port={self.port}",
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self) -> None:
        """Block until the driver says ``ready`` (it exits with an error otherwise)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == "ready", f"driver did not start: {line!r}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


StartDriver = Callable[[list[int]], Driver]


@pytest.fixture
def start_driver(events: Events) -> Iterator[StartDriver]:
    """Starts a ready driver owning the given partitions; all are stopped after the test."""
    started: list[Driver] = []

    def start(partitions: list[int]) -> Driver:
        driver = Driver(events, partitions)
        started.append(driver)
        driver.wait_ready()
        return driver

    yield start
    for driver in started:
        driver.stop()
