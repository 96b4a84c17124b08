"""The worker's Faust settings, from the tracker's settings."""

from __future__ import annotations

from mhst_tracker.bootstrap import KafkaClient
from mhst_tracker.config import Settings
from streams.app import faust_settings


def test_standby_replicas_come_from_mhst_standby_replicas() -> None:
    kafka = KafkaClient("127.0.0.1:9092")
    assert faust_settings(Settings(), kafka, "memory://")["table_standby_replicas"] == 1
    settings = Settings.from_env({"MHST_STANDBY_REPLICAS": "0"})
    assert faust_settings(settings, kafka, "memory://")["table_standby_replicas"] == 0
