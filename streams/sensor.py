"""Faust's Prometheus sensor without the series it looks up by label on every message.

Faust calls its sensor several times per message (message in, event in, event out, table
get, table set, message out, and per message sent). Its Prometheus sensor looks up labelled
series in five of those calls (messages by topic, the read offset by topic and partition,
events by stream, its name cleaned by a regular expression each time, table reads and writes
by table, messages sent by topic), which made it about a tenth of a worker's time per event.

:class:`WorkerSensor` keeps every series without a label on the hot path (messages received
and in flight, events and their runtime in the agent, messages sent and their latency), the
end and committed offsets by topic and partition that the consumer-lag panels and rules
read (the end offset is set with every message, through its series kept by partition rather
than looked up by label), commits, assignments and rebalances.
It drops the five labelled series above, and :func:`install_sensor` does not serve them:
``mhst_events_processed_total`` counts the events by type, and the worker reads and writes
its table once per event. Faust's own bookkeeping (:class:`Monitor`) runs as before.
"""

from __future__ import annotations

from typing import Any, Final

import faust
from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP, CollectionT, EventT, Message, ProducerT, StreamT
from faust.types.tuples import PendingMessage
from prometheus_client import CollectorRegistry

FAUST_METRICS_PREFIX: Final = "mhst_faust"
"""Name prefix of the sensor's pipeline metrics (messages, offsets, rebalances)."""


def install_sensor(app: faust.App, registry: CollectorRegistry) -> None:
    """Make a :class:`WorkerSensor` reporting to ``registry`` the app's monitor."""
    metrics = FaustMetrics.create(registry, FAUST_METRICS_PREFIX)
    for dropped in (
        metrics.messages_received_per_topics,
        metrics.messages_received_per_topics_partition,
        metrics.total_events_per_stream,
        metrics.table_operations,
        metrics.topic_messages_sent,
    ):
        registry.unregister(dropped)
    app.monitor = WorkerSensor(metrics=metrics)


class WorkerSensor(PrometheusMonitor):
    """:class:`PrometheusMonitor` without its labelled series per message."""

    def __init__(self, metrics: FaustMetrics, **kwargs: Any) -> None:
        super().__init__(metrics, **kwargs)
        self._end_offsets: dict[TP, Any] = {}
        """The end-offset gauge's child series by partition (set with every message)."""

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        """The end offset of a message's fetch: kept, and its gauge set."""
        Monitor.track_tp_end_offset(self, tp, offset)
        series = self._end_offsets.get(tp)
        if series is None:
            series = self._end_offsets[tp] = self._metrics.topic_partition_end_offset.labels(
                topic=tp.topic, partition=tp.partition
            )
        series.set(offset)

    def _clear_partition_related_metrics(self) -> None:
        super()._clear_partition_related_metrics()
        self._end_offsets.clear()

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        """A message is handed to the streams."""
        Monitor.on_message_in(self, tp, offset, message)
        self._metrics.messages_received.inc()
        self._metrics.active_messages.inc()

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[str, Any] | None:
        """An event enters the agent."""
        state = Monitor.on_stream_event_in(self, tp, offset, stream, event)
        self._metrics.total_events.inc()
        self._metrics.total_active_events.inc()
        return state

    def on_table_get(self, table: CollectionT, key: Any) -> None:
        """A table read: Faust's bookkeeping only."""
        Monitor.on_table_get(self, table, key)

    def on_table_set(self, table: CollectionT, key: Any, value: Any) -> None:
        """A table write: Faust's bookkeeping only."""
        Monitor.on_table_set(self, table, key, value)

    def on_send_initiated(
        self,
        producer: ProducerT,
        topic: str,
        message: PendingMessage,
        keysize: int,
        valsize: int,
    ) -> Any:
        """A message handed to the producer: Faust's bookkeeping only (its completion is
        counted)."""
        return Monitor.on_send_initiated(self, producer, topic, message, keysize, valsize)
