"""``mhst-tracker sink``: consume the events, alerts and dead-letter topics into the store.

Runs until SIGTERM or Ctrl-C, serving its metrics (lag, retries, rows) on
``MHST_SINK_METRICS_PORT``. See :mod:`mhst_tracker.adapters.store.sink`.

The process-wide policy is set here, not in the library: :func:`collector_paused`.
"""

import asyncio
import gc
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import click
from prometheus_client import CollectorRegistry

from mhst_tracker import bootstrap, logs
from mhst_tracker.adapters.metrics import SinkMetrics
from mhst_tracker.adapters.store.sink import GROUP_ID, Sink, SinkOptions
from mhst_tracker.commands import running
from mhst_tracker.commands.options import loglevel_option
from mhst_tracker.commands.running import cyclic_gc_paused
from mhst_tracker.config import Settings

GC_INTERVAL_SECONDS: Final = 5.0
"""How often the sink's process runs the cyclic garbage collector, which it otherwise pauses."""


@asynccontextmanager
async def collector_paused(interval: float = GC_INTERVAL_SECONDS) -> AsyncIterator[None]:
    """The sink's garbage-collector policy, for the command and its benchmark alike.

    A batch is tens of thousands of short-lived objects, freed by reference counting; the
    cyclic collector's passes they set off walked every object of the process and took a
    third of the sink's CPU time. So it is paused, what exists now (modules, settings, the
    caller's data, without a full pass first: it walked the caller's data too) is frozen out
    of it, and it runs every ``interval`` seconds from a task of the event loop; on the way
    out, all three are undone.
    """
    with cyclic_gc_paused():
        gc.freeze()
        collecting = asyncio.create_task(_collect_every(interval))
        try:
            yield
        finally:
            collecting.cancel()
            await asyncio.gather(collecting, return_exceptions=True)
            gc.unfreeze()


async def _collect_every(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        gc.collect()


@click.command("sink")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=SinkOptions.batch_size,
    show_default=True,
    help="Most messages written in one transaction.",
)
@click.option(
    "--group",
    default=GROUP_ID,
    show_default=True,
    help="Kafka consumer group; sinks of the same store share one, another store needs its own.",
)
@loglevel_option
def sink_command(batch_size: int, group: str, loglevel: str) -> None:
    """Write every event, alert and dead letter from Kafka into the store."""
    settings = Settings.from_env()
    logs.configure(settings.log_format, loglevel.upper())
    registry = CollectorRegistry()
    bootstrap.serve_metrics(registry, settings.sink_metrics_port, setting="MHST_SINK_METRICS_PORT")
    options = SinkOptions(batch_size=batch_size, group_id=group)
    running.run(_run(settings, SinkMetrics(registry), options))


async def _run(settings: Settings, metrics: SinkMetrics, options: SinkOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    store = await bootstrap.open_store(bootstrap.wire(settings))
    try:
        async with collector_paused():
            await Sink(store, settings, metrics, options).run(stop)
    finally:
        await store.close()
