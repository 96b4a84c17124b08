"""The Alertmanager configuration is valid and routes breach alerts by team."""

import subprocess
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "alertmanager" / "alertmanager.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["amtool", *args], capture_output=True, text=True, check=False)


def test_config_is_valid() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["category=breach", "team=MHST001", "stage=allocation"], "breach-notifier,team-mhst001"),
        (["category=breach", "team=MHST002"], "breach-notifier,team-mhst002"),
        (["category=breach", "team=MHST077"], "breach-notifier"),
        (["category=pipeline", "alertname=MhstWorkerDown"], "operations"),
        (["alertname=Other"], "operations"),
    ],
)
def test_routes(labels: list[str], receivers: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers
