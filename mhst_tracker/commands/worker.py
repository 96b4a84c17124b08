"""``mhst-tracker worker`` and ``mhst-tracker topics create``: run the stream workers.

``worker`` creates any missing topic, then runs one Faust worker of :mod:`streams` until
SIGTERM or Ctrl-C. Start more of them (each with its own ``MHST_WORKER_DATA_DIR``) to share
the partitions. The plain Faust form, ``faust -A streams.app:app worker -l info``, runs the
same app but does not create the topics.
"""

import dataclasses

import click

from mhst_tracker.commands import running
from mhst_tracker.config import Settings


@click.command("worker")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    help="Partitions of the events topic (default MHST_PARTITIONS).",
)
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Log level.",
)
def worker_command(partitions: int | None, loglevel: str) -> None:
    """Run a stream worker: per-referral clocks, deadline timers, breach alerts, dead letters."""
    import faust

    from streams.topics import create_topics
    from streams.tracker import create_app

    settings = _settings(partitions)
    running.run(create_topics(settings))
    app = create_app(settings)
    faust.Worker(app, loglevel=loglevel).execute_from_commandline()


@click.group("topics")
def topics_command() -> None:
    """Manage the Kafka topics."""


@topics_command.command("create")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    help="Partitions of each topic (default MHST_PARTITIONS).",
)
def create_command(partitions: int | None) -> None:
    """Create the events, tick, alert and dead-letter topics that do not exist yet."""
    from streams.topics import TopicNames, create_topics

    settings = _settings(partitions)
    created = running.run(create_topics(settings))
    for name in TopicNames.of(settings).all():
        state = "created" if name in created else "exists"
        click.echo(f"{name}\t{state}")


def _settings(partitions: int | None) -> Settings:
    settings = Settings.from_env()
    if partitions is not None:
        settings = dataclasses.replace(settings, partitions=partitions)
    return settings
