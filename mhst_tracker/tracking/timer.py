"""The deadline timer: which referrals' deadlines have come, decided in bulk, without Faust.

A worker's timer must raise every alert due at a moment (most fall at a local midnight,
when a day's referrals all reach a stage boundary at once) within a second, however many
referrals are open. So the timer does not route each due referral through the stream:

* **Deciding.** For each partition the worker owns, the keys whose deadline has come are
  listed by the :class:`~mhst_tracker.tracking.deadlines.DeadlineIndex` and each referral is
  decided by the engine (:func:`mhst_tracker.pipeline.apply_tick`) right there; the tracker
  publishes the alerts in bulk, and only then are the decisions applied
  (:meth:`DeadlineTimer.settle`), so that the index's bookkeeping does not delay the alerts.
* **Preparing.** Before a deadline moment M comes (from :data:`PREPARE_AHEAD` ahead), the
  referrals due at M are decided in advance *as of M*, a bounded number per timer run, so at
  M only the sending is left. A prepared decision is dropped when the referral changes in
  between (an event), and is used only on M's local date (a worker that was down past it
  decides afresh).
* **Pending records.** A decided referral's new record (raised alerts, next deadline) cannot
  be written to the Faust table outside stream iteration, so it waits here, per partition,
  until the agent writes it: either with the referral's next event (which reads the pending
  record before the table) or when a flush tick for that partition reaches the agent.

A worker that stops gracefully has the agent write its pending records before it leaves
its group (:meth:`ReferralTracker.write_pending
<mhst_tracker.tracking.tracker.ReferralTracker.write_pending>`). If a worker dies or loses a
partition before a pending record is written, the table still holds the old deadline, so the
partition's next owner decides the referral again and sends the same alerts with the same
``alert_id``: at-least-once, as everywhere in the pipeline.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from mhst_tracker.domain.alerts import Alert
from mhst_tracker.domain.clock import Evaluation, ReferralState
from mhst_tracker.domain.profile import Profile
from mhst_tracker.pipeline import ReferralRecord, apply_tick
from mhst_tracker.tracking.alert_messages import key_hash, unstamped
from mhst_tracker.tracking.deadlines import DeadlineIndex
from mhst_tracker.tracking.monitoring import local_date

PREPARE_AHEAD: Final = timedelta(minutes=10)
"""How long (on the worker's clock) before a deadline moment its referrals are decided."""

Reader = Callable[[bytes], bytes | None]
"""Reads a key's stored record from the table (``None`` if absent)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine decided for one referral whose deadline came.

    ``record`` is the record to store (``None``: nothing changed); ``deadline`` its next
    deadline (POSIX seconds); ``due`` the deadline that came; ``alerts`` the new alerts, with
    ``detected_at`` the moment they were decided as of.
    """

    key: bytes
    partition: int
    due: float
    record: bytes | None
    deadline: float | None
    state: ReferralState
    alerts: tuple[Alert, ...]
    bodies: tuple[bytes, ...]
    key_hash: int


def decide(key: bytes, raw: bytes, partition: int, evaluation: Evaluation) -> Decision:
    """Decide, as of the evaluation's moment, the referral stored as ``raw`` whose deadline
    has come."""
    record = ReferralRecord.from_bytes(raw)
    due = record.deadline
    at = evaluation.as_of
    outcome = apply_tick(record, evaluation)
    state = outcome.state
    assert state is not None  # a tick always states the referral
    deadline = None if record.deadline is None else record.deadline.timestamp()
    return Decision(
        key=key,
        partition=partition,
        due=at.timestamp() if due is None else due.timestamp(),
        record=None if outcome.record is None else outcome.record.to_bytes(),
        deadline=deadline,
        state=state,
        alerts=tuple(outcome.alerts),
        bodies=tuple(unstamped(alert) for alert in outcome.alerts),
        key_hash=key_hash(key),
    )


class DeadlineTimer:
    """Deadlines, prepared decisions and pending records of the partitions a worker owns."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.index = DeadlineIndex()
        self._pending: dict[int, dict[bytes, bytes]] = {}
        self._prepared: dict[int, dict[bytes, Decision]] = {}
        self._prepared_for: dict[int, float] = {}
        self._to_prepare: dict[int, list[bytes]] = {}

    # The agent's side.

    def stored(self, partition: int, key: bytes, read: Reader) -> bytes | None:
        """The key's newest record: pending here if the timer decided it, else the table's."""
        pending = self._pending.get(partition)
        if pending is not None:
            raw = pending.get(key)
            if raw is not None:
                return raw
        return read(key)

    def written(self, partition: int, key: bytes, deadline: float | None) -> None:
        """The agent stored a new record for ``key`` with this next deadline."""
        pending = self._pending.get(partition)
        if pending is not None:
            pending.pop(key, None)
        prepared = self._prepared.get(partition)
        if prepared is not None:
            prepared.pop(key, None)
        self.index.schedule(partition, key, deadline)

    def take_pending(self, partition: int, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` pending records of ``partition``, for the agent to write."""
        pending = self._pending.get(partition)
        if not pending:
            return []
        keys = list(itertools.islice(pending, limit))
        return [(key, pending.pop(key)) for key in keys]

    def has_pending(self, partition: int) -> bool:
        """Whether ``partition`` has records waiting to be written."""
        return bool(self._pending.get(partition))

    def pending_count(self) -> int:
        """Records waiting to be written, over every partition."""
        return sum(len(pending) for pending in self._pending.values())

    # The timer's side.

    def due(self, partitions: Iterable[int], now: float) -> bool:
        """Whether a deadline of ``partitions`` has come by ``now`` (POSIX seconds)."""
        for partition in partitions:
            earliest = self.index.earliest(partition)
            if earliest is not None and earliest <= now:
                return True
        return False

    def waiting(self, partitions: Iterable[int], now: float) -> tuple[int, float | None]:
        """How many referrals of ``partitions`` are due by ``now`` and not yet decided, and
        the earliest of their deadlines (POSIX seconds)."""
        count = 0
        earliest: float | None = None
        for partition in partitions:
            first = self.index.earliest(partition)
            if first is None or first > now:
                continue
            count += len(self.index.due_by(partition, now))
            earliest = first if earliest is None else min(earliest, first)
        return count, earliest

    def prepare(self, partition: int, now: datetime, read: Reader, budget: int) -> int:
        """Decide in advance up to ``budget`` referrals due at the partition's next moment.

        The next moment is prepared once it is :data:`PREPARE_AHEAD` away or closer; returns
        how many referrals were decided.
        """
        moment = self.index.earliest(partition)
        if moment is None or moment > (now + PREPARE_AHEAD).timestamp():
            return 0
        if moment <= now.timestamp():
            return 0  # due already: :meth:`fire` decides it
        if self._prepared_for.get(partition) != moment:
            self._prepared_for[partition] = moment
            self._prepared[partition] = {}
            self._to_prepare[partition] = self.index.due_by(partition, moment)
        queue = self._to_prepare[partition]
        prepared = self._prepared[partition]
        evaluation = Evaluation.of(datetime.fromtimestamp(moment, UTC), self.profile)
        done = 0
        while queue and done < budget:
            key = queue.pop()
            if self.index.deadline(partition, key) != moment:
                continue
            raw = self.stored(partition, key, read)
            if raw is not None:
                prepared[key] = decide(key, raw, partition, evaluation)
                done += 1
        return done

    def fire(self, partition: int, moment: datetime, read: Reader, limit: int) -> list[Decision]:
        """Decide (or take the prepared decision of) up to ``limit`` referrals due by
        ``moment``, as of ``moment``.

        ``moment`` is when the partition's round of decisions began (the partition has been
        read to the broker's end offset of that moment: :mod:`mhst_tracker.tracking.catchup`).
        Nothing is applied yet, so that the alerts leave first: the caller publishes them,
        then hands the decisions to :meth:`settle`. Until then the referrals stay due.
        """
        keys = self.index.due_by(partition, moment.timestamp(), limit)
        if not keys:
            return []
        prepared = self._prepared.get(partition, {})
        prepared_for = self._prepared_for.get(partition)
        usable = prepared_for is not None and self._same_day(prepared_for, moment)
        evaluation = Evaluation.of(moment, self.profile)
        decisions = []
        for key in keys:
            decision = prepared.pop(key, None) if usable else None
            if decision is None:
                raw = self.stored(partition, key, read)
                if raw is None:
                    continue
                decision = decide(key, raw, partition, evaluation)
            decisions.append(decision)
        return decisions

    def settle(self, decisions: Iterable[Decision]) -> None:
        """Apply decisions of :meth:`fire` whose alerts were sent.

        Each new record becomes pending (for the agent to write) and its next deadline is
        indexed; a referral with nothing new has no deadline until an event gives it one.
        Decisions of a partition dropped meanwhile are left out.
        """
        timed = self.index.partitions()
        for decision in decisions:
            partition = decision.partition
            if partition not in timed:
                continue
            if decision.record is None:
                self.index.schedule(partition, decision.key, None)
                continue
            self._pending.setdefault(partition, {})[decision.key] = decision.record
            self.index.schedule(partition, decision.key, decision.deadline)

    def _same_day(self, moment: float, now: datetime) -> bool:
        then = datetime.fromtimestamp(moment, UTC)
        return local_date(self.profile, then) == local_date(self.profile, now)

    # Ownership.

    def replace(self, partition: int, entries: Iterable[tuple[bytes, float]]) -> None:
        """Time ``partition`` afresh from the table's ``(key, deadline)`` pairs."""
        self.drop(partition)
        self.index.replace(partition, entries)

    def drop(self, partition: int) -> None:
        """Forget ``partition``: its deadlines, prepared decisions and pending records."""
        self.index.drop(partition)
        self._pending.pop(partition, None)
        self._prepared.pop(partition, None)
        self._prepared_for.pop(partition, None)
        self._to_prepare.pop(partition, None)

    def partitions(self) -> set[int]:
        """The partitions timed."""
        return self.index.partitions()
