"""The Alertmanager configuration is valid, routes every alert, and each receiver points at
something real: a docker-compose service that serves the path, with recipients to forward to."""

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from mhst_tracker.adapters.notify.alertmanager import PATH
from mhst_tracker.config import Settings
from mhst_tracker.notify.config import load_config

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
COMPOSE = REPO / "docker-compose.yml"
SECRETS = REPO / "deploy" / "notify" / "notifier.env.example"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["amtool", *args], capture_output=True, text=True, check=False)


def test_config_is_valid() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "labels",
    [
        ["category=breach", "team=MHST001", "stage=allocation"],
        ["category=pipeline", "alertname=MhstNotifyDeliveriesFailed"],
        ["category=pipeline", "alertname=MhstWorkerDown"],
        ["alertname=Other"],
    ],
)
def test_every_alert_goes_to_the_notifier(labels: list[str]) -> None:
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "notifier"


def _secrets() -> dict[str, str]:
    lines = SECRETS.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_every_receiver_points_at_a_compose_service_that_serves_it() -> None:
    receivers = yaml.safe_load(CONFIG.read_text())["receivers"]
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    urls = []
    for receiver in receivers:
        assert set(receiver) == {"name", "webhook_configs"}, f"{receiver['name']}: not a webhook"
        urls += [config["url"] for config in receiver["webhook_configs"]]
    assert urls
    for url in urls:
        parts = urlsplit(url)
        assert parts.hostname in services, f"{url}: no compose service {parts.hostname}"
        service = services[parts.hostname]
        assert service["command"] == ["notify"]
        settings = Settings.from_env(service["environment"])
        assert parts.port == settings.notify_port
        assert parts.path == PATH
        # The routing file the service mounts has recipients for what it is sent.
        (mount,) = [v for v in service["volumes"] if v.endswith(f"{settings.notify_config}:ro")]
        routing = load_config(REPO / mount.split(":")[0], {**os.environ, **_secrets()}, STAGES)
        assert routing.operations, "Alertmanager's alerts would be forwarded to no one"


STAGES = ("assessment", "allocation", "intervention")
