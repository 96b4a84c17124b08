"""The wiring root: the pieces built from settings, the Kafka client aligned with the
broker's limits, and the one way a process serves /metrics and /healthz."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from mhst_tracker import bootstrap
from mhst_tracker.bootstrap import PRODUCER_BATCH_BYTES, KafkaClient
from mhst_tracker.config import ConfigError, Settings
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.timesource import SimulatedClock, WallClock
from tests.http import get


def test_wire_builds_the_shared_pieces_from_the_settings() -> None:
    settings = Settings(
        kafka_bootstrap="127.0.0.1:1,127.0.0.1:2",
        topic_prefix="p.",
        clock="simulated:2026-09-01T06:00:00+01:00@60",
    )
    wiring = bootstrap.wire(settings)
    assert wiring.settings is settings
    assert wiring.profile == TRAILBLAZER_4WW
    assert isinstance(wiring.time_source, SimulatedClock)
    assert wiring.topics.events == "p.mhst.referral-events"
    assert wiring.kafka == KafkaClient("127.0.0.1:1,127.0.0.1:2")
    assert isinstance(bootstrap.wire(Settings()).time_source, WallClock)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(clock="hourglass"), "MHST_CLOCK"),
        (Settings(profile_path=Path("/nonexistent/profile.json")), "MHST_PROFILE"),
    ],
)
def test_wire_refuses_unusable_settings_naming_the_variable(
    settings: Settings, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        bootstrap.wire(settings)


def test_the_kafka_client_is_aligned_with_the_topics_limits() -> None:
    client = KafkaClient("127.0.0.1:9092")
    assert client.batch_bytes == PRODUCER_BATCH_BYTES
    big = client.aligned({"alerts": 1_048_588, "ticks": 1_048_588, "dlq": 5_000_000})
    assert (big.max_request_bytes, big.batch_bytes) == (5_000_000, PRODUCER_BATCH_BYTES)
    small = client.aligned({"alerts": 200_000, "ticks": 1_048_588, "dlq": 1_048_588})
    assert (small.max_request_bytes, small.batch_bytes) == (1_048_588, 200_000)


def test_metrics_and_readiness_are_served_on_one_port() -> None:
    registry = CollectorRegistry()
    Counter("mhst_test_things", "Things.", registry=registry).inc(3)
    state = {"ready": False, "reason": "starting"}
    port = bootstrap.serve_metrics(
        registry, 0, health=lambda: (bool(state["ready"]), str(state["reason"]))
    )
    status, page = get(port, "/metrics")
    assert status == 200
    assert "mhst_test_things_total 3.0" in page
    assert get(port, "/healthz") == (503, "starting\n")
    state.update(ready=True, reason="ready")
    assert get(port, "/healthz") == (200, "ready\n")


def test_without_a_health_check_healthz_is_just_metrics() -> None:
    registry = CollectorRegistry()
    Counter("mhst_test_other", "Other.", registry=registry)
    port = bootstrap.serve_metrics(registry, 0)
    status, page = get(port, "/healthz")
    assert status == 200
    assert "mhst_test_other_total" in page
