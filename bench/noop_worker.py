"""Faust's own ceiling for the worker benchmark: an agent that does nothing per event.

Run by :mod:`bench.bench_worker` as ``python -m bench.noop_worker`` with the worker's
settings (``MHST_*``) and ``BENCH_NOOP_COUNT``: the app reads the events
topic with the same Faust settings as the real worker (raw serializers, at-least-once,
its own consumer group) and, when it has seen ``BENCH_NOOP_COUNT`` events, logs
``counted N events at T`` with T the wall time. With ``BENCH_NOOP_TAKE=N`` the agent reads
batches of up to N events (``stream.take(N, within=1)``) instead of one event at a time.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import faust

from mhst_tracker import bootstrap
from mhst_tracker.config import Settings
from streams.app import faust_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, count: int, take: int) -> faust.App:
    """A Faust app whose one agent only counts the events topic's messages."""
    app = faust.App(
        f"{settings.topic_prefix}bench-noop-{take}",
        **faust_settings(settings, bootstrap.wire(settings).kafka, "memory://"),
    )
    events = app.topic(
        settings.topics.events,
        partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(events, name="count-events")
    async def count_events(stream: faust.StreamT[Any]) -> None:
        seen = 0
        if take:
            async for batch in stream.take(take, within=1):
                before, seen = seen, seen + len(batch)
                if before < count <= seen:
                    log.warning("counted %d events at %r", count, time.time())
            return
        async for _event in stream.events():
            seen += 1
            if seen == count:
                log.warning("counted %d events at %r", count, time.time())

    return app


def main() -> None:
    """Run the no-op worker until SIGTERM."""
    take = int(os.environ.get("BENCH_NOOP_TAKE", "0"))
    app = create_app(Settings.from_env(), int(os.environ["BENCH_NOOP_COUNT"]), take)
    faust.Worker(app, loglevel="info").execute_from_commandline()


if __name__ == "__main__":
    main()
