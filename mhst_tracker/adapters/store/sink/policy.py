"""The sink's decisions, as pure functions of what it knows: no Kafka, no database, no clock.

At each turn of its loop the sink describes where it stands (a :class:`Turn`: messages
gathered for the next batch, full batches set aside, batches being written, a window's
refresh under way, the open window's batches and age, how far it is behind the stream) and
asks :class:`SinkPolicy` what to do:

* :meth:`~SinkPolicy.set_aside`: a full batch that cannot be written yet is set aside (up to
  ``batches_ahead``) and the next one gathered, so Python decodes while the database writes;
* :meth:`~SinkPolicy.poll`: how many messages to take and how long to wait for them: not at
  all while anything is under way; with only a window open, not if every partition was read
  to its high watermark, else for a fetch's wait at most (if none come, the stream paused
  or ended and the window is refreshed at once, not at its age);
* :meth:`~SinkPolicy.refresh`: whether to refresh the open window now: it holds
  ``refresh_batches`` batches, its first was written ``refresh_seconds`` ago, or the sink is
  idle; up to ``catch_up_factor`` times those limits while the messages still to be read
  would fill such a window (the sink catching up); never while the previous window's
  refresh and commit are under way;
* :meth:`~SinkPolicy.write`: which batch to start writing: one set aside if fewer than
  ``writes_in_flight`` are being written, else the one gathered if nothing is being written
  or it is full and there is room;
* :meth:`~SinkPolicy.wait`: with nothing to start and nothing fetched, wait a moment for the
  writes and the refresh under way.

The at-least-once order itself (a window's offsets committed only after its batches are
written and its referrals refreshed) is the loop's ``_Run.complete``
(:mod:`mhst_tracker.adapters.store.sink.loop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final, NamedTuple

FETCH_MAX_WAIT_MS: Final = 50
"""How long the broker may hold a fetch with no data (aiokafka's default, 500 ms, left the
sink idle between batches while the fetcher waited on partitions already drained)."""
POLL_RECORDS: Final = 1000
"""The most messages taken from the consumer's buffer and decoded at a time: between two
polls the event loop runs the writes' and refreshes' next steps, so a statement is sent
as soon as the one before it returns, not after a whole batch is decoded."""
GROUP_ID: Final = "mhst-store-sink"


@dataclass(frozen=True)
class SinkOptions:
    """Batching, windows, backoff and lag-refresh settings."""

    batch_size: int = 10000
    writes_in_flight: int = 2
    batches_ahead: int = 1
    refresh_batches: int = 5
    refresh_seconds: float = 1.0
    refresh_parts: int = 2
    catch_up_factor: int = 4
    remembered_events: int = 100_000
    poll_seconds: float = 0.5
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    lag_interval: float = 1.0
    group_id: str = GROUP_ID


@dataclass(frozen=True, slots=True)
class Turn:
    """Where the sink stands at one turn of its loop."""

    gathered: int = 0
    """Messages gathered (and decoded) for the next batch."""
    ready: int = 0
    """Full batches set aside, waiting for a write to start."""
    writing: int = 0
    """Batches being written."""
    refreshing: bool = False
    """A window's refresh (then its commit) is under way."""
    window: int = 0
    """Written batches in the open window, waiting for its refresh."""
    window_age: float = 0.0
    """Seconds since the open window's first batch was written."""
    behind: int | None = None
    """Messages still to be read up to the high watermarks of the last fetches (``None``
    while a partition has not been fetched yet, or no window is open)."""


class Poll(NamedTuple):
    """Take up to ``max_records`` messages, waiting up to ``timeout_ms`` for some; if none
    come, the sink is idle when ``idle_if_empty``."""

    timeout_ms: int
    max_records: int
    idle_if_empty: bool


class Next(Enum):
    """Which batch to start writing."""

    SET_ASIDE = "set aside"
    GATHERED = "gathered"


class SinkPolicy:
    """The sink's decisions under its options (see the module docstring)."""

    def __init__(self, options: SinkOptions) -> None:
        self.options = options
        self._poll_ms = int(options.poll_seconds * 1000)

    def set_aside(self, turn: Turn) -> bool:
        """Whether to set the gathered batch aside and gather the next one: it is full and
        fewer than ``batches_ahead`` are set aside."""
        return turn.gathered >= self.options.batch_size and turn.ready < self.options.batches_ahead

    def poll(self, turn: Turn) -> Poll | None:
        """What to take from the consumer; ``None`` while the gathered batch is full."""
        room = self.options.batch_size - turn.gathered
        if room <= 0:
            return None
        caught_up = False
        if turn.writing or turn.refreshing or turn.gathered or turn.ready:
            timeout = 0
        elif turn.window:
            caught_up = turn.behind == 0
            wait_ms = int(max(0.0, self.options.refresh_seconds - turn.window_age) * 1000)
            timeout = 0 if caught_up else min(self._poll_ms, FETCH_MAX_WAIT_MS, wait_ms)
        else:
            timeout = self._poll_ms
        return Poll(timeout, min(room, POLL_RECORDS), caught_up or timeout > 0)

    def refresh(self, turn: Turn, idle: bool) -> bool:
        """Whether to start refreshing the open window now."""
        if turn.refreshing or not self._due(turn, idle, 1):
            return False
        return idle or not self._catching_up(turn)

    def _due(self, turn: Turn, idle: bool, scale: int) -> bool:
        """The window holds batches and is full, old enough (both limits times ``scale``) or
        the sink ``idle`` (nothing to read, gather or write)."""
        options = self.options
        return turn.window > 0 and (
            idle
            or turn.window >= options.refresh_batches * scale
            or turn.window_age >= options.refresh_seconds * scale
        )

    def _catching_up(self, turn: Turn) -> bool:
        """Whether to let a due window grow while the sink catches up: until it reaches
        ``catch_up_factor`` times the window's limits, as long as the messages still to be
        read would fill a window that large. A referral's events then fall in fewer windows,
        so fewer of its projection rows are written again (after a long outage, or a first
        run on a long history), and the projection is, meanwhile, behind by the lag
        anyway."""
        options = self.options
        factor = options.catch_up_factor
        if factor <= 1 or self._due(turn, False, factor):
            return False
        unread = factor * options.refresh_batches * options.batch_size
        return turn.behind is not None and turn.behind >= unread

    def write(self, turn: Turn) -> Next | None:
        """Which batch to start writing, if any."""
        room = turn.writing < self.options.writes_in_flight
        if turn.ready and room:
            return Next.SET_ASIDE
        full = turn.gathered >= self.options.batch_size
        if turn.gathered and (not turn.writing or (full and room)):
            return Next.GATHERED
        return None

    def wait(self, turn: Turn, polled: bool) -> bool:
        """With no batch to start: whether to wait a moment for the work under way (nothing
        was fetched; otherwise poll again at once)."""
        return bool(turn.writing or turn.refreshing) and not polled
