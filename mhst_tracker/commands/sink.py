"""``mhst-tracker sink``: consume the events, alerts and dead-letter topics into the store.

Runs until SIGTERM or Ctrl-C, serving its metrics (lag, retries, rows) on
``MHST_SINK_METRICS_PORT``. See :mod:`mhst_tracker.adapters.store.sink`.
"""

import asyncio
import logging
import signal

import click
from prometheus_client import CollectorRegistry, start_http_server

from mhst_tracker.adapters.store.database import StoreNotMigrated
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.adapters.store.sink import GROUP_ID, Sink, SinkMetrics, SinkOptions
from mhst_tracker.commands import running
from mhst_tracker.config import Settings


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
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def sink_command(batch_size: int, group: str, loglevel: str) -> None:
    """Write every event, alert and dead letter from Kafka into the store."""
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    registry = CollectorRegistry()
    start_http_server(settings.sink_metrics_port, registry=registry)
    try:
        options = SinkOptions(batch_size=batch_size, group_id=group)
        running.run(_run(settings, SinkMetrics(registry), options))
    except StoreNotMigrated as error:
        raise click.ClickException(str(error)) from None


async def _run(settings: Settings, metrics: SinkMetrics, options: SinkOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    store = await Store.open(settings)
    try:
        await Sink(store, settings, metrics, options).run(stop)
    finally:
        await store.close()
