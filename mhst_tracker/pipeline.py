"""What the worker does with one message, without Faust: the engine's calls, in order.

A referral's table value is a :class:`ReferralRecord`: the engine's clock snapshot, the
``(stage, kind)`` alerts already raised (so a replayed event never raises a different second
alert), the next deadline (the engine's :func:`next_deadline`, or the moment a decision was
deferred: see :meth:`Outcome.deferred`) and the partition the referral lives on (so the
deadline index can be rebuilt per partition from the table).
Every clinical decision is the engine's: :func:`parse_event`, ``ReferralClock.apply``,
``ReferralClock.state``, :func:`decide_alerts`, :func:`next_deadline`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from mhst_tracker.domain.alerts import Alert, decide_alerts, next_deadline
from mhst_tracker.domain.clock import Evaluation, ReferralClock, ReferralState
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import Event, parse_event
from mhst_tracker.domain.profile import Profile

RECORD_FORMAT_VERSION: Final = 1
KEY_MISMATCH: Final = "key does not match referral_id"
NO_KEY: Final = "message has no key"
NO_VALUE: Final = "message has no value"


@dataclass
class ReferralRecord:
    """One referral's table value."""

    clock: ReferralClock
    partition: int
    raised: set[tuple[str, str]] = field(default_factory=set)
    deadline: datetime | None = None

    def to_bytes(self) -> bytes:
        """The JSON table value."""
        return orjson.dumps(
            {
                "version": RECORD_FORMAT_VERSION,
                "clock": self.clock.snapshot(),  # orjson writes it as `to_dict`'s JSON
                "raised": sorted(self.raised),
                "deadline": None if self.deadline is None else self.deadline.isoformat(),
                "partition": self.partition,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> ReferralRecord:
        """Read a table value back."""
        data = orjson.loads(raw)
        if data.get("version") != RECORD_FORMAT_VERSION:
            raise ValueError(f"unsupported referral record version {data.get('version')!r}")
        deadline = data["deadline"]
        return cls(
            clock=ReferralClock.from_dict(data["clock"]),
            partition=int(data["partition"]),
            raised={(stage, kind) for stage, kind in data["raised"]},
            deadline=None if deadline is None else datetime.fromisoformat(deadline),
        )


def deadline_of(raw: bytes) -> tuple[int, float | None]:
    """A table value's partition and next deadline (POSIX seconds), without the clock."""
    data: dict[str, Any] = orjson.loads(raw)
    deadline = data["deadline"]
    moment = None if deadline is None else datetime.fromisoformat(deadline).timestamp()
    return int(data["partition"]), moment


def raised_of(raw: bytes) -> list[tuple[str, str]]:
    """A table value's alerts already raised, ``(stage, kind)``, without the clock."""
    data: dict[str, Any] = orjson.loads(raw)
    return [(stage, kind) for stage, kind in data["raised"]]


def accept(key: bytes | None, value: bytes | None, max_bytes: int) -> Event:
    """Validate one message of the events topic; ``InvalidEvent`` with the reason if not.

    The engine's contract (events at most ``max_bytes`` long), and the transport's rules: a
    value, and a key equal to the event's ``referral_id`` (UTF-8), since the key decides
    the partition and so which clock the event reaches.
    """
    if value is None:
        raise InvalidEvent(NO_VALUE)
    event = parse_event(value, max_bytes)
    if key is None:
        raise InvalidEvent(NO_KEY)
    if key != event.referral_id.encode():
        raise InvalidEvent(KEY_MISMATCH)
    return event


@dataclass(frozen=True)
class Outcome:
    """The result of one message.

    ``record`` is the value to store, or ``None`` when nothing changed; ``state`` is the
    referral's state as of now (``None`` for a duplicate event); ``alerts`` are new.
    """

    record: ReferralRecord | None
    state: ReferralState | None
    alerts: list[Alert]

    def deferred(self, now: datetime) -> Outcome:
        """This outcome with its alert decision left for later: the event stays folded, the
        new alerts are not raised, and the record's deadline is ``now``, so whoever times the
        referral's partition (this worker, or the next owner, from the table) finds the
        decision due and makes it once the partition has been read far enough."""
        record = self.record
        assert record is not None, "only an outcome with alerts is deferred"
        record.raised.difference_update((alert.stage, alert.kind.value) for alert in self.alerts)
        record.deadline = now
        return Outcome(record, self.state, [])


def apply_event(
    record: ReferralRecord | None,
    event: Event,
    partition: int,
    profile: Profile,
    now: datetime,
) -> Outcome:
    """Fold a valid event into the referral's record and decide its alerts as of ``now``.

    A duplicate event (an ``event_id`` seen before) changes nothing.
    """
    if record is None:
        record = ReferralRecord(ReferralClock(event.referral_id), partition)
    if not record.clock.apply(event):
        return Outcome(None, None, [])
    state = record.clock.state(now, profile)
    return Outcome(record, state, _decide(record, state, profile, now))


def apply_tick(record: ReferralRecord, evaluation: Evaluation) -> Outcome:
    """Look at a referral again as of the evaluation's moment because its deadline came (no
    new event); a timer decides many referrals as of one moment with one evaluation."""
    previous_deadline = record.deadline
    state = record.clock.evaluate(evaluation)
    alerts = _decide(record, state, evaluation.profile, evaluation.as_of)
    changed = bool(alerts) or record.deadline != previous_deadline
    return Outcome(record if changed else None, state, alerts)


def _decide(
    record: ReferralRecord, state: ReferralState, profile: Profile, now: datetime
) -> list[Alert]:
    """The engine's new alerts and next deadline, recorded on ``record``."""
    alerts = decide_alerts(state, profile, now, record.raised)
    record.raised.update((alert.stage, alert.kind.value) for alert in alerts)
    record.deadline = next_deadline(state, profile)
    return alerts
