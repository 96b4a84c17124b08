"""The workers' referral table recomputed from history: the fold and the records, without Kafka.

``mhst-tracker rebuild`` (:mod:`mhst_tracker.adapters.rebuild` reads and writes the topics)
recomputes one :class:`~mhst_tracker.pipeline.ReferralRecord` per referral from every event
of its partition, as a worker would hold it had it read them all, in the value format the
workers write (``ReferralRecord.to_bytes``):

* **Events** are accepted and folded as a worker's agent does it
  (:func:`~mhst_tracker.pipeline.accept`: the engine's contract plus the transport's size and
  key rules; ``ReferralClock.apply``, the engine's fold that ``replay`` uses too), so the
  clocks equal ``replay``'s for the accepted events and a rejected message is rejected for the
  reason a worker gives.
* **Alert history.** A record's raised set is what was already sent for the referral: every
  ``(stage, kind)`` on the alerts topic, together with the raised set of the record the table
  holds now (the table never forgets an alert, the alerts topic may have dropped old ones on
  retention). The workers then raise nothing twice.
* **Deadline.** The rebuild decides no alert itself. A record's deadline is when the timers
  must look at the referral: the rebuild's moment when an alert is due already (the workers'
  first timer run decides it, as of its own now), otherwise the engine's next deadline. With
  two profiles (a profile change: the new one, and the one the workers ran so far) it is the
  earlier of the two, so a record is timed correctly whichever of them the workers run: one
  written by a rebuild that was interrupted (and so never handed over) is then as good as the
  record it replaced.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime

import orjson

from mhst_tracker.domain.alerts import decide_alerts, next_deadline
from mhst_tracker.domain.clock import Evaluation, ReferralClock
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.pipeline import ReferralRecord, accept, raised_of

Raised = set[tuple[str, str]]
"""``(stage, kind)`` pairs of the alerts raised for one referral."""


class AlertHistory:
    """The alerts already raised, per referral (keyed by the referral id as bytes)."""

    def __init__(self) -> None:
        self._raised: dict[bytes, Raised] = {}
        self.alerts = 0
        """Alert messages read."""
        self.unreadable = 0
        """Alert messages or table records whose alerts could not be read (skipped)."""

    def add_alert(self, value: bytes | None) -> None:
        """One message of the alerts topic (an ``Alert.to_dict()`` body)."""
        self.alerts += 1
        try:
            body = orjson.loads(value or b"")
            referral_id, stage, kind = body["referral_id"], body["stage"], body["kind"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            self.unreadable += 1
            return
        if not all(isinstance(field, str) for field in (referral_id, stage, kind)):
            self.unreadable += 1
            return
        self._raised.setdefault(referral_id.encode(), set()).add((stage, kind))

    def add_record(self, key: bytes | None, value: bytes | None) -> None:
        """One message of the table's changelog: its record's raised alerts (a tombstone
        has none)."""
        if key is None or value is None:
            return
        try:
            pairs = raised_of(value)
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            self.unreadable += 1
            return
        self._raised.setdefault(key, set()).update(pairs)

    def take(self, key: bytes) -> Raised:
        """The referral's raised alerts, forgotten here (each referral is written once)."""
        return self._raised.pop(key, set())


class PartitionFold:
    """One partition of the events topic folded into its referrals' clocks, as a worker
    folds it."""

    def __init__(self, partition: int, max_event_bytes: int) -> None:
        self.partition = partition
        self.max_event_bytes = max_event_bytes
        self.clocks: dict[bytes, ReferralClock] = {}
        self.events = 0
        self.duplicates = 0
        self.rejected = 0

    def add(self, key: bytes | None, value: bytes | None) -> str | None:
        """Fold one message; the reason a worker gives if it is rejected."""
        self.events += 1
        try:
            event = accept(key, value, self.max_event_bytes)
        except InvalidEvent as rejection:
            self.rejected += 1
            return rejection.reason
        assert key is not None  # accepted: the referral id
        clock = self.clocks.get(key)
        if clock is None:
            clock = self.clocks[key] = ReferralClock(event.referral_id)
        if not clock.apply(event):
            self.duplicates += 1
        return None

    def records(
        self, history: AlertHistory, evaluations: Sequence[Evaluation]
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` of every referral's record, in the table's format."""
        partition = self.partition
        for key, clock in self.clocks.items():
            record = rebuilt_record(clock, partition, history.take(key), evaluations)
            yield key, record.to_bytes()


def rebuilt_record(
    clock: ReferralClock, partition: int, raised: Raised, evaluations: Sequence[Evaluation]
) -> ReferralRecord:
    """The record of ``clock`` with the alerts ``raised`` so far, timed for the profile of
    each evaluation (all as of the same moment; see the module's docstring)."""
    deadline: datetime | None = None
    for evaluation in evaluations:
        due = _due(clock, evaluation, raised)
        if due is not None and (deadline is None or due < deadline):
            deadline = due
    return ReferralRecord(clock, partition, raised, deadline)


def _due(
    clock: ReferralClock, evaluation: Evaluation, raised: Collection[tuple[str, str]]
) -> datetime | None:
    """The evaluation's moment if an alert is due then, else when the next one can be."""
    state = clock.evaluate(evaluation)
    profile = evaluation.profile
    if decide_alerts(state, profile, evaluation.as_of, raised):
        return evaluation.moment
    return next_deadline(state, profile)
