"""``mhst-tracker notify``: the notifier, and ``notify retry`` for deliveries that failed.

The routing file (``MHST_NOTIFY_CONFIG``) is checked before anything starts: each problem
is one line naming the file, the recipient and the field, and the exit code is 2. The
notifier then runs until SIGTERM or Ctrl-C: it consumes ``mhst.breach-alerts`` (group
``mhst-notifier``, under ``MHST_TOPIC_PREFIX``), serves its metrics on
``MHST_NOTIFY_METRICS_PORT`` and Alertmanager's webhook on ``MHST_NOTIFY_PORT``.
``notify skip`` moves a stopped notifier past every alert on the topic (a first deployment
with history). See docs/notify.md.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine, Mapping
from typing import Any

import click
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from mhst_tracker import bootstrap, logs
from mhst_tracker.adapters.metrics import NotifierMetrics
from mhst_tracker.adapters.notify import Sender, alertmanager
from mhst_tracker.adapters.notify.email import EmailSender
from mhst_tracker.adapters.notify.webhook import WebhookSender
from mhst_tracker.adapters.store.ledger import Ledger
from mhst_tracker.commands import running
from mhst_tracker.commands.options import loglevel_option
from mhst_tracker.config import ConfigError, Settings
from mhst_tracker.failures import ServiceUnavailable
from mhst_tracker.notify.config import Channel, NotifyConfig, NotifyConfigError, load_config
from mhst_tracker.notify.consumer import (
    GROUP_ID,
    ConsumerOptions,
    NotifierRunning,
    consume,
    skip_to_end,
)
from mhst_tracker.notify.service import DigestListener, Notifier, wall_now


@click.group("notify", invoke_without_command=True)
@loglevel_option
@click.pass_context
def notify_command(ctx: click.Context, loglevel: str) -> None:
    """Deliver breach alerts to the recipients of the routing file, each once.

    Consumes the alerts topic until SIGTERM or Ctrl-C; the routing file is named by
    MHST_NOTIFY_CONFIG. `notify retry` sends the deliveries that failed again.
    """
    if ctx.invoked_subcommand is not None:
        return  # a one-off command: its answer, and warnings only
    settings = Settings.from_env()
    logs.configure(settings.log_format, loglevel.upper())
    config = routing_file(settings)
    registry = CollectorRegistry()
    bootstrap.serve_metrics(
        registry, settings.notify_metrics_port, setting="MHST_NOTIFY_METRICS_PORT"
    )
    _run_or_explain(settings, run(settings, config, NotifierMetrics(registry)))


@notify_command.command("retry")
def retry_command() -> None:
    """Send every delivery and digest that failed for good again, now."""
    settings = Settings.from_env()
    config = routing_file(settings)
    _run_or_explain(settings, retry(settings, config))


@notify_command.command("skip")
def skip_command() -> None:
    """Move the stopped notifier past every alert now on the alerts topic.

    For a first deployment that loads a year of history: the workers' first run raises that
    year's breaches once. Run this after it and before the notifier's first start; only
    alerts raised afterwards are delivered. Refused while a notifier runs.
    """
    settings = Settings.from_env()
    options = consumer_options(settings)
    try:
        skipped = running.run(skip_to_end(options))
    except NotifierRunning as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"{skipped} alert(s) on {options.topic} will not be delivered: group"
        f" {options.group_id} now starts after them"
    )


def consumer_options(settings: Settings) -> ConsumerOptions:
    """Where the notifier reads: the deployment's alerts topic, in its own group."""
    return ConsumerOptions(
        settings.kafka_bootstrap, settings.topics.alerts, f"{settings.topic_prefix}{GROUP_ID}"
    )


def routing_file(settings: Settings, env: Mapping[str, str] | None = None) -> NotifyConfig:
    """The checked routing file; each problem is printed on its own line, exit code 2."""
    if settings.notify_config is None:
        raise ConfigError("MHST_NOTIFY_CONFIG must name the notifier's routing file")
    stages = [stage.name for stage in settings.profile().stages]
    try:
        return load_config(settings.notify_config, os.environ if env is None else env, stages)
    except NotifyConfigError as error:
        for line in error.lines():
            click.echo(f"Error: {line}", err=True)
        raise click.exceptions.Exit(2) from None


def _run_or_explain(settings: Settings, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main``; a broker out of reach or a port taken is one line (the command line
    prints the store's failures the same way)."""
    try:
        running.run(main)
    except KafkaError as error:
        raise ServiceUnavailable(
            f"cannot reach Kafka at {settings.kafka_bootstrap} (MHST_KAFKA_BOOTSTRAP): "
            f"{type(error).__name__}; check that it is running"
        ) from None
    except OSError as error:
        raise ConfigError(
            f"cannot serve Alertmanager's webhook on port {settings.notify_port} "
            f"(MHST_NOTIFY_PORT): {error.strerror}; choose another port"
        ) from None


def senders(config: NotifyConfig) -> dict[Channel, Sender]:
    """A sender for each channel the routing file uses."""
    delivery = config.delivery
    made: dict[Channel, Sender] = {}
    if config.smtp is not None:
        made[Channel.EMAIL] = EmailSender(config.smtp, delivery.timeout_seconds)
    made[Channel.WEBHOOK] = WebhookSender(delivery.timeout_seconds, delivery.concurrency)
    return made


async def run(
    settings: Settings,
    config: NotifyConfig,
    metrics: NotifierMetrics,
    on_digest: DigestListener | None = None,
) -> None:
    """The notifier until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    wiring = bootstrap.wire(settings)
    ledger = await Ledger.open(settings.database_url)
    channels = senders(config)
    notifier = Notifier(config, ledger, channels, metrics, wiring.time_source, on_digest=on_digest)
    http = alertmanager.server(notifier.forward_operations, "0.0.0.0", settings.notify_port)
    serving = asyncio.create_task(http.serve())
    try:
        await consume(notifier, consumer_options(settings), stop)
    finally:
        http.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        for sender in channels.values():
            await sender.close()
        await ledger.close()


async def retry(settings: Settings, config: NotifyConfig) -> None:
    """Make the failed deliveries due and send them (and any other retry due) once."""
    wiring = bootstrap.wire(settings)
    ledger = await Ledger.open(settings.database_url)
    channels = senders(config)
    try:
        reopened = await ledger.reopen_failed(wall_now())
        notifier = Notifier(
            config, ledger, channels, NotifierMetrics(CollectorRegistry()), wiring.time_source
        )
        attempted, delivered = await notifier.retry_due()
        digests = await notifier.send_digests()
    finally:
        for sender in channels.values():
            await sender.close()
        await ledger.close()
    click.echo(
        f"{reopened} failed made due again; {attempted} sent: {delivered} delivered,"
        f" {attempted - delivered} still failing (the notifier retries them); "
        f"{digests} digest(s) sent"
    )
