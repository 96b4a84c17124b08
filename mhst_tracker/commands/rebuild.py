"""``mhst-tracker rebuild``: recompute the stopped workers' referral table from the events topic.

The engine folds the whole history at replay's pace, outside Faust
(:mod:`mhst_tracker.adapters.rebuild`); the workers then restore the records and go on from
the end of the history. ``--profile`` rebuilds for another profile (the workers must then
run it, ``MHST_PROFILE``); ``--store`` also recomputes the store's referral projection from
the store's events under the same profile. A progress bar goes to standard error when it is
a terminal; the figures are printed when it ends. See docs/streams.md for when to run it.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mhst_tracker import bootstrap
from mhst_tracker.commands import running
from mhst_tracker.commands.progress import stderr_is_terminal
from mhst_tracker.config import ConfigError, Settings
from mhst_tracker.domain.errors import ProfileError
from mhst_tracker.domain.profile import Profile, load_profile

if TYPE_CHECKING:
    from mhst_tracker.adapters.rebuild import RebuildFigures


class ProgressBar:
    """The events read so far, as a bar on standard error (closed with the ``stack``)."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.update: Callable[[int], None] | None = None

    def begin(self, events: int) -> None:
        """Show a bar of ``events``."""
        bar = click.progressbar(
            length=max(events, 1), label=f"rebuilding from {events:,} events", file=sys.stderr
        )
        self.update = self.stack.enter_context(bar).update

    def advance(self, events: int) -> None:
        """Move the bar on by ``events``."""
        if self.update is not None:
            self.update(events)


@click.command("rebuild")
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Profile TOML file the workers will run. Default: MHST_PROFILE.",
)
@click.option(
    "--store",
    is_flag=True,
    help="Also recompute the store's referral projection (MHST_DATABASE_URL) from its events.",
)
def rebuild_command(profile_path: Path | None, store: bool) -> None:
    """Recompute the stopped workers' referral table from the whole events topic.

    Every referral's record is folded from its events by the engine, with the alerts already
    raised, written to the table's changelog, and the workers' consumer group moved to the
    end of the events: the workers restore the new records when they start, and raise what
    is due then. Refused while a worker runs. Safe to interrupt: until the last step the
    workers' state is as before, and the rebuild can be run again."""
    from aiokafka.errors import KafkaError

    from mhst_tracker.adapters.rebuild import RebuildRefused

    refusals: tuple[type[Exception], ...] = (RebuildRefused,)
    if store:  # the database libraries are loaded only for the store
        from mhst_tracker.adapters.store.database import StoreNotMigrated

        refusals = (RebuildRefused, StoreNotMigrated)
    try:
        settings = Settings.from_env()
        wiring = bootstrap.wire(settings)
        workers_profile = wiring.profile
        profile = workers_profile if profile_path is None else load_profile(profile_path)
    except (ConfigError, ProfileError) as error:
        raise click.ClickException(str(error)) from None
    profiles: list[Profile] = [profile]
    if workers_profile != profile:
        profiles.append(workers_profile)
    try:
        with ExitStack() as stack:
            bar = ProgressBar(stack) if stderr_is_terminal() else None
            figures, referrals = running.run(_rebuild(wiring, profiles, bar, store))
    except refusals as error:
        raise click.ClickException(str(error)) from None
    except KafkaError as error:
        raise click.ClickException(
            f"Kafka at {settings.kafka_bootstrap}: {type(error).__name__}"
        ) from None
    except KeyboardInterrupt:
        raise click.ClickException(
            "rebuild interrupted: nothing was handed over, the workers' state is as before;"
            " run it again"
        ) from None
    rate = figures.events / figures.seconds if figures.seconds else 0.0
    click.echo(
        f"rebuilt {figures.referrals:,} referrals ({profile.name}) from {figures.events:,}"
        f" events on {figures.partitions} partitions in {figures.seconds:.1f} s"
        f" ({rate:,.0f} events/s) as of {figures.as_of.isoformat()}:"
        f" {figures.rejected:,} rejected ({figures.dead_letters:,} sent to the dead-letter"
        f" topic), {figures.duplicates:,} duplicates, {figures.alerts:,} alerts on record"
        f"{f' ({figures.unreadable:,} unreadable)' if figures.unreadable else ''};"
        f" the workers ({figures.group}) start at the end of the events",
        err=True,
    )
    if referrals is not None:
        click.echo(f"store: {referrals:,} referrals recomputed ({profile.name})", err=True)


async def _rebuild(
    wiring: bootstrap.Wiring, profiles: list[Profile], bar: ProgressBar | None, store: bool
) -> tuple[RebuildFigures, int | None]:
    """The table rebuilt (and handed over), then with ``store`` the store's projection
    (opened first, so that a store that cannot be used stops the rebuild before it starts)."""
    from mhst_tracker.adapters.rebuild import rebuild_table

    if not store:
        return await rebuild_table(wiring, profiles, bar), None
    opened = await bootstrap.open_store(dataclasses.replace(wiring, profile=profiles[0]))
    try:
        figures = await rebuild_table(wiring, profiles, bar)
        return figures, await opened.rebuild_referrals()
    finally:
        await opened.close()
