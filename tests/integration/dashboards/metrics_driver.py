"""A metrics-serving process for the dashboard tests: the engine over a JSONL file.

It plays the part of a stream worker that owns some partitions: every line goes through the
engine's parser, valid events of owned partitions are folded into referral clocks, the
alerts due as of ``--as-of`` are decided by the engine, and everything is reported through
:class:`ClinicalMetrics`, served on ``/metrics`` until SIGTERM. It prints ``ready`` when
the metrics are complete.

    python -m tests.integration.dashboards.metrics_driver EVENTS --as-of T \
        --partitions 0,1,2 --of 6 --port N
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import zlib
from datetime import datetime
from pathlib import Path

from mhst_tracker.adapters.metrics import ClinicalMetrics, start_metrics_server
from mhst_tracker.domain.alerts import decide_alerts
from mhst_tracker.domain.clock import ReferralClock
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import EventType, parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW


def partition_of(referral_id: str, partitions: int) -> int:
    """The partition a referral belongs to in these tests."""
    return zlib.crc32(referral_id.encode()) % partitions


def declared_type(line: str) -> str | None:
    """The ``type`` a rejected line declares, when it is a known event type."""
    for event_type in EventType:
        if f'"type":"{event_type.value}"' in line.replace(" ", ""):
            return event_type.value
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("events", type=Path)
    parser.add_argument("--as-of", required=True)
    parser.add_argument("--partitions", required=True)
    parser.add_argument("--of", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    as_of = datetime.fromisoformat(args.as_of)
    owned = {int(partition) for partition in args.partitions.split(",")}
    metrics = ClinicalMetrics(TRAILBLAZER_4WW)
    clocks: dict[int, dict[str, ReferralClock]] = {partition: {} for partition in owned}
    for line in args.events.read_text(encoding="utf-8").splitlines():
        started = time.time()
        try:
            event = parse_event(line)
        except InvalidEvent as error:
            if zlib.crc32(line.encode()) % args.of in owned:
                metrics.observe_rejected(error.reason, declared_type(line))
            continue
        partition = partition_of(event.referral_id, args.of)
        if partition not in owned:
            continue
        clock = clocks[partition].setdefault(event.referral_id, ReferralClock(event.referral_id))
        metrics.observe_event(event.type.value, duplicate=not clock.apply(event))
        metrics.observe_processing_lag(time.time() - started)
    for partition, partition_clocks in clocks.items():
        metrics.replace_partition(
            partition, [clock.state(as_of, TRAILBLAZER_4WW) for clock in partition_clocks.values()]
        )
        for clock in partition_clocks.values():
            for alert in decide_alerts(clock, TRAILBLAZER_4WW, as_of):
                metrics.observe_alert(alert)
    server = start_metrics_server(metrics.registry, args.port, "127.0.0.1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    try:
        signal.pause()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
