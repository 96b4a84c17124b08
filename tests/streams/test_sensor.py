"""The worker's Faust sensor: the figures the dashboards read, none of the labelled series
it looked up per message."""

from __future__ import annotations

import faust
from faust.types import TP
from faust.types.tuples import Message
from prometheus_client import generate_latest

from mhst_tracker.adapters.metrics import ExpositionRegistry
from streams.sensor import WorkerSensor, install_sensor
from tests.promtool import metrics_problems

DROPPED = (
    "mhst_faust_messages_received_per_topic",
    "mhst_faust_messages_received_per_topics_partition",
    "mhst_faust_total_events_per_stream",
    "mhst_faust_table_operations",
    "mhst_faust_topic_messages_sent",
)


def test_messages_offsets_and_commits_are_served_and_no_series_per_message_label() -> None:
    registry = ExpositionRegistry()
    app = faust.App("sensor-test", broker="kafka://127.0.0.1:9")
    install_sensor(app, registry)
    sensor = app.monitor
    assert isinstance(sensor, WorkerSensor)
    tp = TP("mhst.referral-events", 3)
    for offset in range(5):
        message = Message(tp.topic, tp.partition, offset, 0.0, 0, None, b"R1", b"{}", None)
        sensor.on_message_in(tp, offset, message)
        sensor.on_message_out(tp, offset, message)
    sensor.track_tp_end_offset(tp, 9)
    sensor.on_tp_commit({tp: 5})
    assert registry.get_sample_value("mhst_faust_messages_received_total") == 5
    assert registry.get_sample_value("mhst_faust_active_messages") == 0
    labels = {"topic": tp.topic, "partition": "3"}
    assert registry.get_sample_value("mhst_faust_topic_partition_end_offset", labels) == 9
    assert registry.get_sample_value("mhst_faust_topic_partition_offset_commited", labels) == 5
    text = generate_latest(registry).decode()
    assert [name for name in DROPPED if name in text] == []
    assert metrics_problems(text) == ""
