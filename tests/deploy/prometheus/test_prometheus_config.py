"""The Prometheus configuration and rules pass promtool, and every alert rule is unit tested."""

from pathlib import Path
from typing import Any

import yaml

from mhst_tracker.config import Settings
from tests.promtool import promtool

REPO = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULES_TESTS = sorted(Path(__file__).parent.glob("rules_test*.yml"))


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_config_is_valid() -> None:
    result = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_files_are_valid() -> None:
    assert {path.name for path in RULE_FILES} == {"alerts.yml", "recording.yml"}
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    assert len(RULES_TESTS) == 2
    result = promtool("test", "rules", *map(str, RULES_TESTS), cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULES_TESTS)


def alert_names() -> set[str]:
    return {
        rule["alert"]
        for group in load(PROMETHEUS_DIR / "rules" / "alerts.yml")["groups"]
        for rule in group["rules"]
    }


def test_every_alert_rule_has_a_firing_and_a_silent_unit_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in (case for path in RULES_TESTS for case in load(path)["tests"]):
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = alert_names()
    assert len(names) >= 8
    assert names == firing, f"alert rules without a firing test: {names - firing}"
    assert names == silent, f"alert rules without a silent test: {names - silent}"


def test_rule_files_in_the_tests_are_the_deployed_ones() -> None:
    for rules_test in RULES_TESTS:
        listed = {(rules_test.parent / path).resolve() for path in load(rules_test)["rule_files"]}
        assert listed == {path.resolve() for path in RULE_FILES}


def test_scrape_targets_match_the_compose_ports() -> None:
    config = load(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    compose = load(REPO / "docker-compose.yml")["services"]
    worker_port = Settings.from_env(compose["worker"]["environment"]).metrics_port
    sink_port = Settings.from_env(compose["sink"]["environment"]).sink_metrics_port
    notifier_port = Settings.from_env(compose["notifier"]["environment"]).notify_metrics_port
    assert jobs["mhst-worker"]["dns_sd_configs"][0]["names"] == ["worker"]
    assert jobs["mhst-worker"]["dns_sd_configs"][0]["port"] == worker_port
    assert jobs["mhst-sink"]["static_configs"][0]["targets"] == [f"sink:{sink_port}"]
    assert jobs["mhst-notifier"]["static_configs"][0]["targets"] == [f"notifier:{notifier_port}"]
    api_port = Settings.from_env(compose["api"]["environment"]).api_metrics_port
    assert jobs["mhst-api"]["static_configs"][0]["targets"] == [f"api:{api_port}"]
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
