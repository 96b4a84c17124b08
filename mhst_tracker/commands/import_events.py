"""``mhst-tracker import FILE``: load a JSONL event file or an MHSDS-style CSV extract.

Into the store (``--to store``, the default; rejected lines are stored too) or onto the
events topic (``--to kafka``: each valid event in its canonical form, keyed by referral id,
by the events producer the ingestion API uses). Each bad line is reported on standard
error with its line number and reason, and every valid line around it is kept: the exit
status is 0 even when lines were rejected, and non-zero only when the file cannot be read at
all. A progress bar goes to standard error when it is a terminal.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from mhst_tracker import bootstrap
from mhst_tracker.adapters.producer import ProduceFailed
from mhst_tracker.adapters.store.importer import (
    ImportItem,
    UnusableFile,
    count_lines,
    detect_format,
    read_file,
)
from mhst_tracker.adapters.store.records import Batch, Rejection
from mhst_tracker.commands import running
from mhst_tracker.commands.progress import stderr_is_terminal, with_progress
from mhst_tracker.config import Settings

BATCH_SIZE = 2000
SEND_TIMEOUT = 60.0
"""Seconds the broker has to acknowledge one batch published with ``--to kafka``."""


@dataclass
class ImportCounts:
    """What an import did."""

    events: int = 0
    new: int = 0
    rejected: int = 0


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    help="File format (default: from the file name).",
)
@click.option(
    "--to",
    "target",
    type=click.Choice(["store", "kafka"]),
    default="store",
    show_default=True,
    help="Write straight into the store, or publish on the events topic.",
)
def import_command(file: Path, fmt: str | None, target: str) -> None:
    """Import the events of FILE (JSONL events or an MHSDS-style CSV extract)."""
    settings = Settings.from_env()
    try:
        fmt = fmt or detect_format(file)
        counts = running.run(import_file(file, fmt, target, settings))
    except (UnusableFile, NoTopic) as error:
        raise click.ClickException(str(error)) from None
    except (KafkaError, ProduceFailed) as error:
        cause = str(error) if isinstance(error, ProduceFailed) else type(error).__name__
        raise click.ClickException(f"Kafka at {settings.kafka_bootstrap}: {cause}") from None
    new = f", {counts.new} new" if target == "store" else " published"
    events = "event" if counts.events == 1 else "events"
    lines = "line" if counts.rejected == 1 else "lines"
    click.echo(
        f"{file.name}: {counts.events} {events}{new}; {counts.rejected} {lines} rejected", err=True
    )


async def import_file(path: Path, fmt: str, target: str, settings: Settings) -> ImportCounts:
    """Import ``path`` into the store or onto the events topic; bad lines to stderr."""
    counts = ImportCounts()
    async with _writer(target, settings) as write:
        batch = Batch()
        for item in _with_progress(path, fmt, settings):
            if isinstance(item, Rejection):
                counts.rejected += 1
                click.echo(f"{path.name}:{item.origin.line}: {item.reason}", err=True)
                batch.rejections.append(item)
            else:
                counts.events += 1
                batch.events.append(item)
            if len(batch) >= BATCH_SIZE:
                counts.new += await write(batch)
                batch = Batch()
        if len(batch):
            counts.new += await write(batch)
    return counts


def _with_progress(path: Path, fmt: str, settings: Settings) -> Iterator[ImportItem]:
    now = datetime.now(UTC)
    with path.open("rb") as file:
        items = read_file(file, fmt, str(path), settings.profile(), now, settings.max_event_bytes)
        if not stderr_is_terminal():
            yield from items
            return
        yield from with_progress(
            items, count_lines(path), "importing", lambda item: item.origin.line or 0
        )


class NoTopic(Exception):
    """The events topic to publish on does not exist on the broker."""


Write = Callable[[Batch], Awaitable[int]]
"""Writes one batch; returns how many of its events were new (or published)."""


@asynccontextmanager
async def _writer(target: str, settings: Settings) -> AsyncIterator[Write]:
    if target == "store":
        store = await bootstrap.open_store(bootstrap.wire(settings))

        async def to_store(batch: Batch) -> int:
            return (await store.write(batch)).events_new

        try:
            yield to_store
        finally:
            await store.close()
        return
    topic = settings.topics.events
    # The producer would wait for a missing topic's metadata until its request timeout.
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        exists = topic in await admin.list_topics()
    finally:
        await admin.close()
    if not exists:
        raise NoTopic(
            f"topic {topic} does not exist on {settings.kafka_bootstrap}"
            " (create it with: mhst-tracker topics create)"
        )
    producer = bootstrap.event_producer(bootstrap.wire(settings), SEND_TIMEOUT)

    async def to_kafka(batch: Batch) -> int:
        await producer.send([item.event for item in batch.events])
        return len(batch.events)

    await producer.start()
    try:
        yield to_kafka
    finally:
        await producer.stop()
