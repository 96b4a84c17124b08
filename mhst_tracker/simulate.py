"""Synthetic referral event streams for demos, tests and benchmarks, deterministic for a seed.

:func:`simulate` yields JSONL lines (version-1 events) in the order a broker would receive
them. What it models:

* **Teams and schools.** One MHST per ~2,500 referrals (3 to 100 teams; or ``teams=N``),
  each serving 6 to 14 schools (or ``schools_per_team``) with six-digit URNs, and each with
  its own pace: slower teams breach more.
* **Arrivals** day by day from ``start``, Poisson per team (mean ``rate`` on a Monday in
  term time), weighted by weekday (Monday busiest, few at weekends) and by term time
  (approximate English school holidays cut arrivals to a third, :func:`arrival_weight`), at
  local office hours with a few evening portal referrals.
* **Pathways.** Assessment on the receipt day for most, allocation a few days later,
  intervention about three weeks after receipt: roughly a fifth of interventions start
  after day 28. DNAs (each delays the intervention a week), closures before intervention
  (signposted, referred on, declined, ...) and discharges after it. A few referrals skip
  the assessment or allocation event (the later stage completes it), a few have a stage
  recorded before the receipt, a second receipt, or no receipt at all.
* **Delivery.** Most events are uploaded within the hour; about 3% are uploaded days late
  (so they arrive after events dated later), about 1% are delivered twice, and about 0.5%
  of lines are bad (no offset, unknown type, truncated JSON, missing fields, ...).
* **Offsets.** ``Z`` mostly, the local ``+00:00``/``+01:00`` offset often, fractional
  seconds sometimes.

With ``referrals=N`` the stream holds everything uploaded by the end of the day of the
N-th arrival (so recent referrals are still waiting); with ``events=N`` it is cut after
exactly N lines. :func:`uploads` gives each line with the moment it was uploaded, for a
producer that publishes the stream as time passes.
"""

import heapq
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson

from mhst_tracker.domain.events import CloseReason, EventType, Source

ZONE: Final = ZoneInfo("Europe/London")
REFERRALS_PER_TEAM: Final = 2500
EVENTS_PER_REFERRAL: Final = 4.6
TERM_WEEKDAY_RATE: Final = 3.0
"""Mean referrals per team on a Monday in term time."""
WEEKDAY_WEIGHTS: Final = (1.2, 1.1, 1.0, 1.0, 0.8, 0.1, 0.05)
HOLIDAY_WEIGHT: Final = 0.35
SCHOOL_HOLIDAYS: Final = (
    ((1, 1), (1, 4)),
    ((2, 15), (2, 21)),
    ((4, 1), (4, 14)),
    ((5, 25), (5, 31)),
    ((7, 22), (8, 31)),
    ((10, 23), (10, 31)),
    ((12, 20), (12, 31)),
)
"""Approximate English school holidays as inclusive (month, day) ranges."""

SOURCES: Final = (
    (Source.SCHOOL, 55),
    (Source.GP, 15),
    (Source.PARENT, 15),
    (Source.SELF, 7),
    (Source.SOCIAL_CARE, 5),
    (Source.OTHER, 3),
)
_SOURCE_VALUES: Final = [source for source, _ in SOURCES]
_SOURCE_WEIGHTS: Final = [weight for _, weight in SOURCES]
EARLY_CLOSE_REASONS: Final = (
    CloseReason.SIGNPOSTED,
    CloseReason.REFERRED_ON,
    CloseReason.DECLINED,
    CloseReason.NO_LONGER_REQUIRED,
    CloseReason.MOVED_AWAY,
    CloseReason.OTHER,
)
SHARE_CLOSED_EARLY: Final = 0.09
SHARE_DISCHARGED: Final = 0.55
SHARE_ASSESSED_LATER: Final = 0.07
SHARE_NO_ASSESSMENT_EVENT: Final = 0.04
SHARE_NO_ALLOCATION_EVENT: Final = 0.02
SHARE_STAGE_BEFORE_RECEIPT: Final = 0.003
SHARE_SECOND_RECEIPT: Final = 0.004
SHARE_NO_RECEIPT: Final = 0.002
SHARE_ONE_DNA: Final = 0.14
SHARE_TWO_DNAS: Final = 0.03
SHARE_LATE_UPLOAD: Final = 0.03
SHARE_DUPLICATE: Final = 0.01
SHARE_BAD_LINE: Final = 0.005
SHARE_EVENING_REFERRAL: Final = 0.03


@dataclass(frozen=True, slots=True)
class _Team:
    team_id: str
    schools: tuple[str, ...]
    pace: float


@dataclass(frozen=True, slots=True)
class Shape:
    """How many teams, how many schools each serves, how busy each is."""

    teams: int | None = None
    """``None``: one per ~2,500 referrals, 3 to 100."""
    schools_per_team: tuple[int, int] = (6, 14)
    """Inclusive range each team's school count is drawn from."""
    rate: float = TERM_WEEKDAY_RATE
    """Mean referrals per team on a Monday in term time."""


def simulate(
    seed: int,
    start: date,
    *,
    referrals: int | None = None,
    events: int | None = None,
    shape: Shape = Shape(),
) -> Iterator[str]:
    """Yield a synthetic event stream as JSONL lines (without newlines).

    Give exactly one of ``referrals`` (how many referrals arrive) or ``events`` (how many
    lines to produce). The same arguments always give the same lines.
    """
    for _uploaded_at, line in uploads(seed, start, referrals=referrals, events=events, shape=shape):
        yield line


def arrival_weight(day: date) -> float:
    """The day's arrivals as a share of a Monday's in term time, before the Monday weight."""
    return WEEKDAY_WEIGHTS[day.weekday()] * (HOLIDAY_WEIGHT if _is_holiday(day) else 1.0)


def uploads(
    seed: int,
    start: date,
    *,
    referrals: int | None = None,
    events: int | None = None,
    shape: Shape = Shape(),
) -> Iterator[tuple[datetime, str]]:
    """:func:`simulate`'s lines, each with the moment (UTC) it was uploaded, in that order."""
    if (referrals is None) == (events is None):
        raise ValueError("give exactly one of referrals or events")
    size = referrals if referrals is not None else events
    assert size is not None
    if size < 0:
        raise ValueError("the size must not be negative")
    rng = random.Random(seed)
    expected_referrals = referrals or math.ceil(size / EVENTS_PER_REFERRAL)
    teams = _make_teams(rng, expected_referrals, shape)
    stream = _Stream(rng)
    produced = 0
    arrived = 0
    day = start
    while True:
        day_start = _local_midnight(day)
        for uploaded in stream.uploaded_before(day_start):
            if events is not None and produced == events:
                return
            produced += 1
            yield uploaded
        if referrals is not None and arrived == referrals:
            return
        mean = shape.rate * arrival_weight(day)
        for team in teams:
            for _ in range(_poisson(rng, mean)):
                if referrals is not None and arrived == referrals:
                    break
                arrived += 1
                stream.add_referral(f"R{arrived:07d}", team, day)
        if referrals is not None and arrived == referrals:
            stream.close_at(_local_midnight(day + timedelta(days=1)))
        day += timedelta(days=1)


def _make_teams(rng: random.Random, expected_referrals: int, shape: Shape) -> list[_Team]:
    count = shape.teams or min(100, max(3, round(expected_referrals / REFERRALS_PER_TEAM)))
    school_counts = [rng.randint(*shape.schools_per_team) for _ in range(count)]
    urns = iter(rng.sample(range(100000, 150000), sum(school_counts)))
    return [
        _Team(
            team_id=f"MHST{index + 1:03d}",
            schools=tuple(str(next(urns)) for _ in range(schools)),
            pace=0.85 + 0.5 * (index * 0.618034 % 1),
        )
        for index, schools in enumerate(school_counts)
    ]


class _Stream:
    """Events waiting to be uploaded, released in upload-time order."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._heap: list[tuple[float, int, str]] = []
        self._sequence = 0
        self._horizon: float | None = None

    def uploaded_before(self, moment: datetime) -> Iterator[tuple[datetime, str]]:
        limit = moment.timestamp()
        if self._horizon is not None:
            limit = min(limit, self._horizon)
        heap = self._heap
        while heap and heap[0][0] < limit:
            upload, _sequence, line = heapq.heappop(heap)
            yield datetime.fromtimestamp(upload, UTC), line
        if self._horizon is not None:
            heap.clear()

    def close_at(self, moment: datetime) -> None:
        """Nothing uploaded at or after ``moment`` will be released."""
        self._horizon = moment.timestamp()

    def add_referral(self, referral_id: str, team: _Team, day: date) -> None:
        rng = self._rng
        received_at = _arrival_time(rng, day)
        source = rng.choices(_SOURCE_VALUES, _SOURCE_WEIGHTS)[0]
        school_id = None
        if source is Source.SCHOOL or rng.random() < 0.5:
            school_id = rng.choice(team.schools)
        common = {"referral_id": referral_id, "team_id": team.team_id}
        if school_id is not None:
            common["school_id"] = school_id

        if rng.random() >= SHARE_NO_RECEIPT:
            self._add(received_at, EventType.REFERRAL_RECEIVED, common, source=source.value)
        if rng.random() < SHARE_SECOND_RECEIPT:
            again = received_at + timedelta(days=rng.randint(1, 5))
            self._add(again, EventType.REFERRAL_RECEIVED, common, source=source.value)

        assessed = 0 if rng.random() >= SHARE_ASSESSED_LATER else rng.randint(1, 4)
        allocated = assessed + round(rng.gammavariate(1.6, 2.5 * team.pace))
        started = allocated + round(rng.gammavariate(3.0, 5.4 * team.pace))
        dnas = 2 if rng.random() < SHARE_TWO_DNAS else int(rng.random() < SHARE_ONE_DNA)
        dna_days = sorted(rng.randint(allocated, started + 7 * index) for index in range(dnas))
        started += 7 * dnas
        close_day: int | None = None
        close_reason = CloseReason.NO_LONGER_REQUIRED
        if rng.random() < SHARE_CLOSED_EARLY:
            close_day = rng.randint(0, 40)
            close_reason = rng.choice(EARLY_CLOSE_REASONS)
        if close_day is None or close_day > started:
            if rng.random() < SHARE_DISCHARGED:
                close_day = started + rng.randint(28, 120)
                close_reason = rng.choice((CloseReason.NO_LONGER_REQUIRED, CloseReason.OTHER))
            else:
                close_day = None

        stage_days = []
        if rng.random() >= SHARE_NO_ASSESSMENT_EVENT:
            stage_days.append((EventType.ASSESSMENT_COMPLETED, assessed))
        if rng.random() >= SHARE_NO_ALLOCATION_EVENT:
            stage_days.append((EventType.ALLOCATED, allocated))
        stage_days.append((EventType.INTERVENTION_STARTED, started))
        stage_days.extend((EventType.APPOINTMENT_DNA, dna_day) for dna_day in dna_days)
        for event_type, offset in stage_days:
            if close_day is not None and offset >= close_day and close_day < started:
                continue
            self._add(_stage_time(rng, received_at, offset), event_type, common)
        if close_day is not None:
            closed_at = _stage_time(rng, received_at, close_day)
            self._add(closed_at, EventType.REFERRAL_CLOSED, common, reason=close_reason.value)

    def _add(
        self,
        occurred_at: datetime,
        event_type: EventType,
        common: dict[str, str],
        **extra: str,
    ) -> None:
        rng = self._rng
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "type": event_type.value,
            "referral_id": common["referral_id"],
            "occurred_at": _render_time(rng, occurred_at),
            **{key: value for key, value in common.items() if key != "referral_id"},
            **extra,
        }
        if rng.random() < 0.5:
            event["schema_version"] = 1
        upload = occurred_at.timestamp() + rng.expovariate(1 / 1800)
        if rng.random() < SHARE_LATE_UPLOAD:
            upload += rng.uniform(1, 21) * 86400
        line = orjson.dumps(event).decode()
        self._push(upload, line)
        if rng.random() < SHARE_DUPLICATE:
            self._push(upload + rng.uniform(60, 3 * 86400), line)
        if rng.random() < SHARE_BAD_LINE:
            self._push(upload + rng.uniform(1, 600), _corrupt(rng, event, line))

    def _push(self, upload: float, line: str) -> None:
        self._sequence += 1
        heapq.heappush(self._heap, (upload, self._sequence, line))


def _corrupt(rng: random.Random, event: dict[str, Any], line: str) -> str:
    """A broken copy of an event, as a faulty sender might produce it."""
    broken = dict(event)
    damage = rng.randrange(7)
    if damage == 0:
        return line[: len(line) // 2]
    if damage == 1:
        broken["occurred_at"] = broken["occurred_at"][:19]
    elif damage == 2:
        broken["type"] = "referral_recieved"
    elif damage == 3:
        del broken["event_id"]
    elif damage == 4:
        broken["referral_id"] = "X" * 65
    elif damage == 5:
        broken["type"] = EventType.REFERRAL_RECEIVED.value
        broken.pop("team_id", None)
    else:
        broken["occurred_at"] = datetime.fromisoformat(broken["occurred_at"]).strftime(
            "%d/%m/%Y %H:%M"
        )
    return orjson.dumps(broken).decode()


def _arrival_time(rng: random.Random, day: date) -> datetime:
    evening = rng.random() < SHARE_EVENING_REFERRAL
    hour = rng.randint(18, 23) if evening else rng.randint(8, 17)
    local = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)), tzinfo=ZONE)
    return local.astimezone(UTC)


def _stage_time(rng: random.Random, received_at: datetime, offset_days: int) -> datetime:
    if rng.random() < SHARE_STAGE_BEFORE_RECEIPT:
        return received_at - timedelta(days=rng.randint(1, 3))
    if offset_days == 0:
        return received_at + timedelta(seconds=rng.randint(300, 7200))
    day = received_at.astimezone(ZONE).date() + timedelta(days=offset_days)
    local = datetime.combine(day, time(rng.randint(9, 17), rng.randrange(60)), tzinfo=ZONE)
    return local.astimezone(UTC)


def _render_time(rng: random.Random, moment: datetime) -> str:
    choice = rng.random()
    if choice < 0.7:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if choice < 0.95:
        return moment.astimezone(ZONE).isoformat()
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=ZONE).astimezone(UTC)


def _is_holiday(day: date) -> bool:
    key = (day.month, day.day)
    return any(first <= key <= last for first, last in SCHOOL_HOLIDAYS)


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method; fine for the small means used here."""
    limit = math.exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
