"""``mhst-tracker rebuild``: recompute the stopped workers' referral table from the events topic.

The engine folds the whole history at replay's pace, outside Faust
(:mod:`mhst_tracker.adapters.rebuild`); the workers then restore the records and go on from
the end of the history. ``--profile`` rebuilds for another profile (the workers must then
run it, ``MHST_PROFILE``); ``--store`` also recomputes the store's referral projection from
the store's events under the same profile. A progress bar goes to standard error when it is
a terminal; the figures are printed when it ends. See docs/streams.md for when to run it.

The process's choices are made here: the partitions are shared out between ``--jobs``
processes (forked once the plan and the alert history are read, so each starts with them;
each ends with this one), and the cyclic garbage collector is paused while they fold (the
clocks are long-lived and in no reference cycle: a full collection would only walk them).
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias, cast

import click

from mhst_tracker import bootstrap
from mhst_tracker.commands import running
from mhst_tracker.commands.options import chosen_profile, profile_option
from mhst_tracker.commands.progress import stderr_is_terminal
from mhst_tracker.config import Settings
from mhst_tracker.domain.profile import Profile

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from aiokafka import TopicPartition

    from mhst_tracker.adapters.rebuild import PartitionFigures, Plan, Progress, RebuildFigures

_PR_SET_PDEATHSIG: Final = 1

Share: TypeAlias = "list[tuple[TopicPartition, TopicPartition]]"


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
@profile_option("Profile TOML file the workers will run. Default: MHST_PROFILE.")
@click.option(
    "--store",
    is_flag=True,
    help="Also recompute the store's referral projection (MHST_DATABASE_URL) from its events.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Processes sharing the partitions. Default: one per CPU.",
)
def rebuild_command(profile_path: Path | None, store: bool, jobs: int | None) -> None:
    """Recompute the stopped workers' referral table from the whole events topic.

    Every referral's record is folded from its events by the engine, with the alerts already
    raised, written to the table's changelog, and the workers' consumer group moved to the
    end of the events: the workers restore the new records when they start, and raise what
    is due then. Refused while a worker runs. Safe to interrupt: until the last step the
    workers' state is as before, and the rebuild can be run again."""
    from mhst_tracker.adapters.rebuild import RebuildRefused

    wiring = bootstrap.wire(Settings.from_env())
    workers_profile = wiring.profile
    profile = chosen_profile(profile_path, lambda: workers_profile)
    profiles: list[Profile] = [profile]
    if workers_profile != profile:
        profiles.append(workers_profile)
    try:
        with ExitStack() as stack:
            bar = ProgressBar(stack) if stderr_is_terminal() else None
            if store:  # a store that cannot be used stops the rebuild before it starts
                running.run(_rebuild_store(wiring, profile, check_only=True))
            figures = rebuild_table(wiring, profiles, bar, jobs or os.cpu_count() or 1)
            referrals = running.run(_rebuild_store(wiring, profile)) if store else None
    except RebuildRefused as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        raise click.ClickException(
            "rebuild interrupted: nothing was handed over, the workers' state is as before;"
            " run it again"
        ) from None
    rate = figures.events / figures.seconds if figures.seconds else 0.0
    as_of = "" if figures.as_of is None else figures.as_of.isoformat()
    click.echo(
        f"rebuilt {figures.referrals:,} referrals ({profile.name}) from {figures.events:,}"
        f" events on {figures.partitions} partitions in {figures.seconds:.1f} s"
        f" ({rate:,.0f} events/s, {figures.jobs} process{'es' if figures.jobs > 1 else ''})"
        f" as of {as_of}:"
        f" {figures.rejected:,} rejected ({figures.dead_letters:,} sent to the dead-letter"
        f" topic), {figures.duplicates:,} duplicates, {figures.alerts:,} alerts on record"
        f"{f' ({figures.unreadable:,} unreadable)' if figures.unreadable else ''};"
        f" the workers ({figures.group}) start at the end of the events",
        err=True,
    )
    if referrals is not None:
        click.echo(f"store: {referrals:,} referrals recomputed ({profile.name})", err=True)


def rebuild_table(
    wiring: bootstrap.Wiring, profiles: list[Profile], progress: Progress | None, jobs: int
) -> RebuildFigures:
    """Plan, rebuild the partitions (in ``jobs`` processes if more than one), hand over."""
    from mhst_tracker.adapters.rebuild import hand_over, plan_rebuild, rebuild_partitions

    began = time.monotonic()
    plan, figures = running.run(plan_rebuild(wiring, profiles))
    if progress is not None:
        progress.begin(plan.events)
    shares = plan.shares(jobs)
    figures.jobs = len(shares)
    with running.cyclic_gc_paused():
        if len(shares) == 1:
            done = [running.run(rebuild_partitions(wiring, plan, shares[0], progress))]
        else:
            done = _in_processes(wiring, plan, shares, progress)
    for part in done:
        figures.add(part)
    running.run(hand_over(wiring, plan))
    figures.seconds = time.monotonic() - began
    return figures


def _in_processes(
    wiring: bootstrap.Wiring, plan: Plan, shares: Sequence[Share], progress: Progress | None
) -> list[PartitionFigures]:
    """Each share of the partitions rebuilt in a forked process of its own, which reports
    through a pipe; its progress shown here. The first failure stops the others."""
    from mhst_tracker.adapters.rebuild import RebuildRefused

    context = multiprocessing.get_context("fork")
    pipes = [context.Pipe(duplex=False) for _ in shares]
    processes = [
        context.Process(target=_job, args=(wiring, plan, share, sender))
        for share, (_, sender) in zip(shares, pipes, strict=True)
    ]
    for process in processes:
        process.start()
    for _, sender in pipes:
        sender.close()  # the children's ends: a child's pipe ends when the child does
    open_pipes = [receiver for receiver, _ in pipes]
    done: list[PartitionFigures] = []
    try:
        while open_pipes:
            for receiver in multiprocessing.connection.wait(open_pipes):
                assert isinstance(receiver, multiprocessing.connection.Connection)
                try:
                    kind, value = receiver.recv()
                except EOFError:
                    kind, value = "failed", "a rebuild process ended before it finished"
                if kind == "advance":
                    if progress is not None:
                        progress.advance(cast(int, value))
                    continue
                if kind != "done":
                    raise RebuildRefused(f"the rebuild of some partitions failed: {value}")
                done.append(cast("PartitionFigures", value))
                open_pipes.remove(receiver)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
    return done


class _Reporter:
    """A job's progress, sent to the process that shows it."""

    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe

    def begin(self, events: int) -> None:
        """The parent knows the total already."""

    def advance(self, events: int) -> None:
        """Tell the parent."""
        self.pipe.send(("advance", events))


def _job(wiring: bootstrap.Wiring, plan: Plan, share: Share, pipe: Connection) -> None:
    """A forked process's rebuild of its share of the partitions; it dies with its parent,
    and leaves Ctrl-C to it."""
    from mhst_tracker.adapters.rebuild import rebuild_partitions

    ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        figures = running.run(rebuild_partitions(wiring, plan, share, _Reporter(pipe)))
    except Exception as error:
        pipe.send(("failed", f"{type(error).__name__}: {error}"))
        raise SystemExit(1) from None
    pipe.send(("done", figures))


async def _rebuild_store(
    wiring: bootstrap.Wiring, profile: Profile, check_only: bool = False
) -> int:
    """Recompute the store's projection under ``profile`` (with ``check_only``, only open
    the store: it is there and migrated); how many referrals."""
    store = await bootstrap.open_store(dataclasses.replace(wiring, profile=profile))
    try:
        return 0 if check_only else await store.rebuild_referrals()
    finally:
        await store.close()
