"""The four-week clock of one referral: an incremental, order-independent fold of its events.

:class:`ReferralClock` keeps only what the rules need, so applying an event is O(1) amortised:
the event ids seen (the idempotency keys), the earliest ``referral_received`` with its team
and school, the earliest event of every other kind that matters once (each stage event type,
``referral_closed``), and every ``appointment_dna``. "Earliest" compares ``occurred_at`` as
an instant and breaks ties by the smaller ``event_id``, so arrival order never matters.
:meth:`ReferralClock.state` turns that into a :class:`ReferralState` as of any moment T,
considering only events with ``occurred_at <= T``, in three steps: the stages' completion
dates, the stages' states, the referral's status. What an evaluation as of T needs
whatever the referral (T in UTC, its local date, the profile's stages, the stage states
made so far) is an :class:`Evaluation`, passed explicitly: bulk callers make one and call
:meth:`ReferralClock.evaluate` for every referral. The module keeps no state of its own.

The rules are those of the domain page. Decisions where it is silent:

* **Dates.** Every date is the local date in the profile's time zone. The "as of" date is
  the local date of T; a stage is breached from 00:00 local on the day after its due date.
* **De-duplication** is per referral: the stream is partitioned by referral, so no worker
  ever sees another referral's event ids. The first event seen with an id wins.
* **Team and school** come from the earliest receipt (the one that starts the clock); a
  second receipt changes nothing. A ``no_receipt`` referral has neither, whatever its
  other events say.
* **Completion facts win over closure.** A stage completed by an event dated after the
  closure is judged by its completion date (met or late): the child was seen, so the
  closure was premature. Closure only decides stages that were never completed, and a
  closed referral whose final stage was completed has a ``seen_*`` status.
* **Closure dated before the receipt** closes the referral on the receipt date (days
  waited 0) and adds the flag ``closed_before_receipt``.
* **stage_before_receipt** is set when a stage's completion *date* is before the receipt
  date; an event a few hours before the receipt on the same local date is not flagged.
* **DNAs** are counted whatever their date (also after closure or before receipt); they
  never change a stage.
* **Existence.** A referral none of whose events occurred at or before T does not exist yet
  as of T: it is not listed and counts nowhere (:meth:`ReferralClock.began_by`,
  :func:`existing_states`).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

import msgspec
import orjson

from mhst_tracker.domain.errors import ClockError
from mhst_tracker.domain.events import Event, EventType
from mhst_tracker.domain.profile import Profile

CLOCK_FORMAT_VERSION: Final = 1


class StageStatus(StrEnum):
    """Where one stage stands as of a moment."""

    MET = "met"
    BREACHED = "breached"
    PENDING = "pending"
    NOT_APPLICABLE = "not_applicable"


class ReferralStatus(StrEnum):
    """Where a referral stands against the standard as of a moment."""

    SEEN_WITHIN_STANDARD = "seen_within_standard"
    SEEN_LATE = "seen_late"
    CLOSED_BEFORE_INTERVENTION = "closed_before_intervention"
    WAITING_BREACHED = "waiting_breached"
    WAITING_WITHIN_STANDARD = "waiting_within_standard"
    NO_RECEIPT = "no_receipt"


WAITING_STATUSES: Final = frozenset(
    {ReferralStatus.WAITING_BREACHED, ReferralStatus.WAITING_WITHIN_STANDARD}
)
SEEN_STATUSES: Final = frozenset({ReferralStatus.SEEN_WITHIN_STANDARD, ReferralStatus.SEEN_LATE})


class Flag(StrEnum):
    """Data-quality remarks on a referral's events."""

    STAGE_BEFORE_RECEIPT = "stage_before_receipt"
    CLOSED_BEFORE_RECEIPT = "closed_before_receipt"


@dataclass(frozen=True, slots=True)
class StageState:
    """One stage as of a moment: its due date, completion date (if any) and state."""

    due_on: date
    done_on: date | None
    state: StageStatus

    def to_dict(self) -> dict[str, str | None]:
        """The JSON shape of the domain page: ``due_on``, ``done_on``, ``state``."""
        return {
            "due_on": self.due_on.isoformat(),
            "done_on": None if self.done_on is None else self.done_on.isoformat(),
            "state": self.state.value,
        }


class ReferralState(msgspec.Struct, frozen=True, gc=False):
    """A referral against the standard as of ``as_of``.

    ``stages`` maps every stage of the profile, in pathway order, to its state, or to
    ``None`` for a ``no_receipt`` referral. ``at_risk_stages`` names the pending stages of a
    waiting referral whose warning day (``Stage.at_risk_day``, in days waited) has been
    reached. ``as_of`` and ``at_risk_stages`` are not part of :meth:`to_dict`.

    A frozen msgspec ``Struct``: an evaluation builds one per referral, at about a fifth of
    a frozen dataclass's cost (:class:`StageState`, shared within an evaluation, stays a
    dataclass, which orjson writes as the object of its fields). ``gc=False``: it holds
    strings, dates, enum members and a dict of stage states, never a reference cycle.
    """

    referral_id: str
    team_id: str | None
    school_id: str | None
    status: ReferralStatus
    received_on: date | None
    days_waited: int | None
    dna_count: int
    flags: tuple[Flag, ...]
    stages: Mapping[str, StageState | None]
    as_of: datetime
    at_risk_stages: tuple[str, ...] = ()

    @property
    def is_waiting(self) -> bool:
        """Open, received, and the final stage not started."""
        return self.status in WAITING_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """The referral object of the replay output, exactly as on the domain page."""
        return {
            "referral_id": self.referral_id,
            "team_id": self.team_id,
            "school_id": self.school_id,
            "status": self.status.value,
            "received_on": None if self.received_on is None else self.received_on.isoformat(),
            "days_waited": self.days_waited,
            "dna_count": self.dna_count,
            "flags": [flag.value for flag in self.flags],
            "stages": {
                name: None if stage is None else stage.to_dict()
                for name, stage in self.stages.items()
            },
        }


_MET: Final = StageStatus.MET
_BREACHED: Final = StageStatus.BREACHED
_PENDING: Final = StageStatus.PENDING
_NOT_APPLICABLE: Final = StageStatus.NOT_APPLICABLE
_SEEN_WITHIN_STANDARD: Final = ReferralStatus.SEEN_WITHIN_STANDARD
_SEEN_LATE: Final = ReferralStatus.SEEN_LATE
_CLOSED_BEFORE_INTERVENTION: Final = ReferralStatus.CLOSED_BEFORE_INTERVENTION
_WAITING_BREACHED: Final = ReferralStatus.WAITING_BREACHED
_WAITING_WITHIN_STANDARD: Final = ReferralStatus.WAITING_WITHIN_STANDARD
_NO_RECEIPT: Final = ReferralStatus.NO_RECEIPT
_STAGE_BEFORE_RECEIPT: Final = Flag.STAGE_BEFORE_RECEIPT
_CLOSED_BEFORE_RECEIPT: Final = Flag.CLOSED_BEFORE_RECEIPT
_REFERRAL_RECEIVED: Final = EventType.REFERRAL_RECEIVED
_REFERRAL_CLOSED: Final = EventType.REFERRAL_CLOSED
_APPOINTMENT_DNA: Final = EventType.APPOINTMENT_DNA
"""Enum members as module constants: attribute access on an enum class is slow in 3.11."""

_EVENT_TYPE_NAMES: Final = {event_type: event_type.value for event_type in EventType}
"""Each event type's value (orjson takes no enum as a key of an object)."""

_ORDINAL_SPAN: Final = 4_000_000
"""More than the largest date ordinal (9999-12-31 is 3,652,059)."""

_Mark = tuple[datetime, str]
"""An event's instant (in UTC) and id: the key that decides which event is earliest."""

_fromordinal: Final = date.fromordinal


class _StagePlan(NamedTuple):
    """A stage of the profile, as the evaluation loop unpacks it."""

    name: str
    completed_by: EventType
    target_days: int
    at_risk_day: int | None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What evaluating any referral as of one moment under one profile needs, worked out
    once: a replay, a partition's restatement, a timer's burst or a report evaluates many
    referrals with one of these (:meth:`ReferralClock.evaluate`).

    ``stage_states`` holds the :class:`StageState` instances this evaluation has made,
    keyed by one int standing for ``(due_on, done_on, state)``: ``done * _ORDINAL_SPAN +
    due`` (date ordinals) for a completed stage, whose state follows from the two dates,
    else ``-(4 * due + n)`` with ``n`` 1 not applicable, 2 breached, 3 pending.
    StageState is frozen, so equal instances can be shared: a replay evaluates hundreds of
    thousands of referrals over a few thousand distinct stage states, and a lookup costs a
    fraction of building one (and of the memory). It lives and dies with the evaluation.
    """

    as_of: datetime
    profile: Profile
    moment: datetime
    """``as_of`` in UTC."""
    today: int
    """The ordinal of ``as_of``'s local date."""
    zone: ZoneInfo
    stages: tuple[_StagePlan, ...]
    stage_names: tuple[str, ...]
    stage_states: dict[int, StageState]

    @classmethod
    def of(cls, as_of: datetime, profile: Profile) -> "Evaluation":
        """The evaluation as of ``as_of`` (timezone-aware) under ``profile``."""
        if as_of.utcoffset() is None:
            raise ClockError("as_of must be timezone-aware")
        moment = as_of if as_of.tzinfo is UTC else as_of.astimezone(UTC)
        stages = tuple(
            _StagePlan(stage.name, stage.completed_by, stage.target_days, stage.at_risk_day)
            for stage in profile.stages
        )
        return cls(
            as_of=as_of,
            profile=profile,
            moment=moment,
            today=moment.astimezone(profile.timezone).date().toordinal(),
            zone=profile.timezone,
            stages=stages,
            stage_names=tuple(stage.name for stage in stages),
            stage_states={},
        )


_Completions = tuple[list[date | None], tuple[Flag, ...], int | None]
"""Step one of an evaluation: the local date each stage was completed (or ``None``), in
pathway order; the referral's flags; the ordinal of its closure date, if closed. (A plain
tuple, unpacked at once: a named tuple costs more to build than the step saves.)"""

_Stages = tuple[dict[str, StageState | None], tuple[str, ...], date | None, StageStatus]
"""Step two: every stage's state, the stages at risk, and the final stage's completion
date and state (which decide the referral's status)."""


class ReferralClock:
    """The accumulated facts of one referral; apply events in any order, ask for a state."""

    __slots__ = (
        "_dnas",
        "_event_ids",
        "_firsts",
        "_receipt",
        "_school_id",
        "_team_id",
        "referral_id",
    )

    def __init__(self, referral_id: str) -> None:
        self.referral_id = referral_id
        self._event_ids: set[str] = set()
        self._receipt: _Mark | None = None
        self._team_id: str | None = None
        self._school_id: str | None = None
        self._firsts: dict[EventType, _Mark] = {}
        self._dnas: list[_Mark] = []

    def apply(self, event: Event) -> bool:
        """Fold one event in; ``False`` (and no change) if its ``event_id`` was seen before."""
        if event.referral_id != self.referral_id:
            raise ClockError("event belongs to another referral")
        return self._fold(event)

    def _fold(self, event: Event) -> bool:
        """:meth:`apply` of an event known to be this referral's (:func:`fold_events`)."""
        event_id = event.event_id
        event_ids = self._event_ids
        if event_id in event_ids:
            return False
        event_ids.add(event_id)
        occurred_at = event.occurred_at
        if occurred_at.tzinfo is not UTC:
            occurred_at = occurred_at.astimezone(UTC)
        mark = (occurred_at, event_id)
        event_type = event.type
        if event_type is _APPOINTMENT_DNA:
            self._dnas.append(mark)
        elif event_type is _REFERRAL_RECEIVED:
            if self._receipt is None or mark < self._receipt:
                self._receipt = mark
                self._team_id = event.team_id
                self._school_id = event.school_id
        else:
            first = self._firsts.get(event_type)
            if first is None or mark < first:
                self._firsts[event_type] = mark
        return True

    def state(self, as_of: datetime, profile: Profile) -> ReferralState:
        """The referral as of ``as_of`` (an aware datetime) under ``profile``; to evaluate
        many referrals as of one moment, make one :class:`Evaluation` and call
        :meth:`evaluate`."""
        return self.evaluate(Evaluation.of(as_of, profile))

    def began_by(self, moment: datetime) -> bool:
        """Whether one of the referral's events occurred at or before ``moment`` (aware).

        A referral none of whose events had occurred by then does not exist yet as of that
        moment: it is not listed and counts nowhere. The earliest of all its events is the
        earliest of the ones the clock keeps (each kind's earliest, and every DNA)."""
        receipt = self._receipt
        if receipt is not None and receipt[0] <= moment:
            return True
        return any(mark[0] <= moment for mark in self._firsts.values()) or any(
            mark[0] <= moment for mark in self._dnas
        )

    def evaluate(self, evaluation: Evaluation) -> ReferralState:
        """The referral as of the evaluation's moment: its stages' completion dates, then
        the stages' states, then the referral's status."""
        moment = evaluation.moment
        dnas = self._dnas
        dna_count = sum(1 for mark in dnas if mark[0] <= moment) if dnas else 0
        receipt = self._receipt
        if receipt is None or receipt[0] > moment:
            return ReferralState(
                self.referral_id,
                None,
                None,
                _NO_RECEIPT,
                None,
                None,
                dna_count,
                (),
                dict.fromkeys(evaluation.stage_names),
                evaluation.as_of,
                (),
            )
        received_on = receipt[0].astimezone(evaluation.zone).date()
        received = received_on.toordinal()
        done_dates, flags, closed = self._completions(evaluation, received_on)
        states, at_risk, done_on, final_status = _stage_states(
            evaluation, received, done_dates, closed
        )
        if done_on is not None:
            met = final_status is _MET
            status = _SEEN_WITHIN_STANDARD if met else _SEEN_LATE
            days_waited = max(0, done_on.toordinal() - received)
        elif closed is not None:
            status = _CLOSED_BEFORE_INTERVENTION
            days_waited = closed - received
        else:
            late = final_status is _BREACHED
            status = _WAITING_BREACHED if late else _WAITING_WITHIN_STANDARD
            days_waited = evaluation.today - received
        return ReferralState(
            self.referral_id,
            self._team_id,
            self._school_id,
            status,
            received_on,
            days_waited,
            dna_count,
            flags,
            states,
            evaluation.as_of,
            at_risk,
        )

    def _completions(self, evaluation: Evaluation, received_on: date) -> _Completions:
        """Each stage's local completion date: its own earliest event or a later stage's,
        found walking the pathway backwards, each instant converted once; the flags; the
        closure date."""
        plan = evaluation.stages
        done_dates: list[date | None] = [None] * len(plan)
        flags: tuple[Flag, ...] = ()
        closed: int | None = None
        firsts = self._firsts
        if not firsts:
            return done_dates, flags, closed
        moment, zone = evaluation.moment, evaluation.zone
        completed_at: datetime | None = None
        completed_on: date | None = None
        for index in range(len(plan) - 1, -1, -1):
            mark = firsts.get(plan[index].completed_by)
            if (
                mark is not None
                and mark[0] <= moment
                and (completed_at is None or mark[0] < completed_at)
            ):
                completed_at = mark[0]
                completed_on = completed_at.astimezone(zone).date()
                if completed_on < received_on:
                    flags = (_STAGE_BEFORE_RECEIPT,)
            done_dates[index] = completed_on
        closure = firsts.get(_REFERRAL_CLOSED)
        if closure is not None and closure[0] <= moment:
            closed = closure[0].astimezone(zone).date().toordinal()
            received = received_on.toordinal()
            if closed < received:
                flags = (*flags, _CLOSED_BEFORE_RECEIPT)
                closed = received
        return done_dates, flags, closed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible snapshot, canonical (equal clocks give equal dicts).

        Shape: ``version``, ``referral_id``, ``event_ids`` (sorted), ``receipt``
        (``[occurred_at, event_id, team_id, school_id]`` or ``null``), ``firsts`` (event type
        to ``[occurred_at, event_id]``) and ``dnas`` (sorted ``[occurred_at, event_id]``),
        instants in UTC ISO 8601: :meth:`snapshot` through JSON.
        """
        data: dict[str, Any] = orjson.loads(orjson.dumps(self.snapshot()))
        return data

    def snapshot(self) -> dict[str, Any]:
        """:meth:`to_dict` with its instants as aware UTC datetimes and its pairs as tuples,
        for a serialiser that writes those as ISO 8601 strings and arrays: orjson writes the
        same JSON as :meth:`to_dict`'s, formatting the instants in C, not each in Python."""
        receipt = self._receipt
        return {
            "version": CLOCK_FORMAT_VERSION,
            "referral_id": self.referral_id,
            "event_ids": sorted(self._event_ids),
            "receipt": None
            if receipt is None
            else (receipt[0], receipt[1], self._team_id, self._school_id),
            "firsts": {
                _EVENT_TYPE_NAMES[event_type]: mark
                for event_type, mark in sorted(self._firsts.items())
            },
            "dnas": sorted(self._dnas),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ReferralClock":
        """Rebuild a clock from :meth:`to_dict`; ``ClockError`` if the snapshot is malformed."""
        try:
            if data["version"] != CLOCK_FORMAT_VERSION:
                raise ClockError(f"unsupported clock format version {data['version']!r}")
            clock = cls(_as_str(data["referral_id"]))
            clock._event_ids = {_as_str(event_id) for event_id in data["event_ids"]}
            receipt = data["receipt"]
            if receipt is not None:
                occurred_at, event_id, team_id, school_id = receipt
                clock._receipt = _mark_from_list([occurred_at, event_id])
                clock._team_id = None if team_id is None else _as_str(team_id)
                clock._school_id = None if school_id is None else _as_str(school_id)
            clock._firsts = {
                EventType(name): _mark_from_list(mark) for name, mark in data["firsts"].items()
            }
            clock._dnas = [_mark_from_list(mark) for mark in data["dnas"]]
        except ClockError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise ClockError(f"malformed clock snapshot: {error!r}") from None
        return clock


def _stage_states(
    evaluation: Evaluation, received: int, done_dates: list[date | None], closed: int | None
) -> _Stages:
    """Step two of an evaluation: each stage's due date and state, from its completion
    date, the closure and the evaluation's date; the pending stages whose warning day has
    come."""
    states: dict[str, StageState | None] = {}
    at_risk: tuple[str, ...] = ()
    stage_status = _PENDING
    done_on: date | None = None
    today, shared = evaluation.today, evaluation.stage_states
    for (name, _, target_days, at_risk_day), done_on in zip(
        evaluation.stages, done_dates, strict=True
    ):
        due = received + target_days
        # key identifies (due, done_on, stage_status) as one int (see Evaluation).
        if done_on is not None:
            done = done_on.toordinal()
            stage_status = _MET if done <= due else _BREACHED
            key = done * _ORDINAL_SPAN + due
        elif closed is not None:
            if closed <= due:
                stage_status, key = _NOT_APPLICABLE, -4 * due - 1
            else:
                stage_status, key = _BREACHED, -4 * due - 2
        elif today > due:
            stage_status, key = _BREACHED, -4 * due - 2
        else:
            stage_status, key = _PENDING, -4 * due - 3
            if at_risk_day is not None and today - received >= at_risk_day:
                at_risk = (*at_risk, name)
        stage_state = shared.get(key)
        if stage_state is None:
            stage_state = shared[key] = StageState(_fromordinal(due), done_on, stage_status)
        states[name] = stage_state
    return states, at_risk, done_on, stage_status


def existing_states(clocks: Iterable[ReferralClock], evaluation: Evaluation) -> list[ReferralState]:
    """The state as of the evaluation's moment of each referral that exists by then (one of
    whose events occurred at or before it), in the order given; the others are left out."""
    moment = evaluation.moment
    return [clock.evaluate(evaluation) for clock in clocks if clock.began_by(moment)]


def fold_events(clocks: dict[str, ReferralClock], events: Iterable[Event]) -> int:
    """Apply each event to its referral's clock in ``clocks``, adding a new clock for a
    referral not there yet; how many events were duplicates (their ``event_id`` already
    held by the clock).

    The one fold of many referrals' events: the store's refreshes and rebuild, and replay.
    """
    duplicates = 0
    get_clock = clocks.get
    for event in events:
        referral_id = event.referral_id
        clock = get_clock(referral_id)
        if clock is None:
            clock = clocks[referral_id] = ReferralClock(referral_id)
        if not clock._fold(event):
            duplicates += 1
    return duplicates


def _mark_from_list(raw: Any) -> _Mark:
    occurred_at, event_id = raw
    moment = datetime.fromisoformat(_as_str(occurred_at))
    if moment.utcoffset() is None:
        raise ClockError("malformed clock snapshot: instant without offset")
    return moment.astimezone(UTC), _as_str(event_id)


def _as_str(value: object) -> str:
    if not isinstance(value, str):
        raise ClockError(f"malformed clock snapshot: expected a string, got {type(value).__name__}")
    return value
