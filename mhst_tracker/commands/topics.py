"""``mhst-tracker topics create``: create the deployment's topics on the broker."""

import click

from mhst_tracker.commands import running
from mhst_tracker.config import Settings


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
    from mhst_tracker.adapters.kafka import create_topics

    settings = Settings.from_env().with_partitions(partitions)
    created = running.run(create_topics(settings))
    for name in settings.topics.all():
        state = "created" if name in created else "exists"
        click.echo(f"{name}\t{state}")
