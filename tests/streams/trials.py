"""Alert trials on the real broker: a simulated stream published as its time passes, and an
audit of the alerts that came out against the events and when each reached Kafka.

The workers and the test share one simulated clock (anchored, :class:`SimulatedClock`), so a
message's Kafka timestamp (the topics stamp ``LogAppendTime``: the moment the broker
appended it) converts to the simulated moment it arrived. The broker stamps a message before
it moves the partition's high watermark past it, and until then no reader and no end-offsets
request sees it: an event counts as known :data:`VISIBLE_WITHIN_MS` after its stamp, or later
if a :class:`VisibilityProbe` asked the broker after that and was not shown it. The audit
needs nothing from the workers but their alerts:

* a referral's events, ordered by arrival, cut its time into windows; in each window the
  worker could know exactly the events arrived before it. A breach (or at-risk warning) is
  **justified** when, in some window, the engine says the stage is breached (at risk) as of
  that window's end given the events arrived by then;
* a withdrawal is **explained** when a breach was justified in one window and a later
  arrival made the stage met or not applicable (an upload that came after the breach
  moment, or, in a backfill, a later line of the same import), and that arrival reached
  Kafka after the moment the breach was decided as of (its ``detected_at``): the worker
  could not have read it;
* the breaches that happened are the stages ``replay`` of every event says are breached as
  of the audit's moment.

A tracker that decides from a partition with unread events raises breaches that are not
justified (their completion had already arrived), or that events arrived before the
decision disprove, and withdraws them: the audit counts them.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from mhst_tracker.domain.alerts import AlertKind
from mhst_tracker.domain.clock import ReferralClock, StageStatus
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import Event, parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.simulate import uploads
from mhst_tracker.timesource import SimulatedClock
from tests.streams.harness import Record

PROFILE: Final = TRAILBLAZER_4WW
DAY_PER_SECOND: Final = 86_400.0
"""The trials' clock speed: a simulated day per wall second."""
TICK: Final = timedelta(microseconds=1)
VISIBLE_WITHIN_MS: Final = 3
"""Wall milliseconds the audit allows from a message's append stamp to it being readable.

The gap is the broker's: it stamps the append time, writes the batch, then moves the high
watermark, and an end-offsets request answered in between does not include the message
(``bench/bench_visibility.py``: p99 0.7 ms, at most 4.5 ms in two minutes with nothing else
running; at most 23 ms beside a busy loop and alert trials). At a simulated day per wall
second 3 ms is 4.3 simulated minutes; longer gaps are seen by the :class:`VisibilityProbe`."""
PROBE_EVERY: Final = 0.002
"""Wall seconds between two end-offsets requests of the :class:`VisibilityProbe`."""

StageKey = tuple[str, str]
"""(referral_id, stage)"""


@dataclass(frozen=True)
class Upload:
    """A valid event of the simulated stream and the moment its source uploaded it."""

    at: datetime
    key: bytes
    value: bytes


def simulated_uploads(seed: int, start: date, referrals: int) -> list[Upload]:
    """The valid events of the simulator's stream (bad lines left out), in upload order."""
    valid = []
    for uploaded_at, line in uploads(seed, start, referrals=referrals):
        try:
            event = parse_event(line)
        except InvalidEvent:
            continue
        valid.append(Upload(uploaded_at, event.referral_id.encode(), line.encode()))
    return valid


def morning_after(moment: datetime) -> datetime:
    """06:00 local on the day after ``moment``'s local date."""
    day = moment.astimezone(PROFILE.timezone).date() + timedelta(days=1)
    return datetime.combine(day, clock_time(6), tzinfo=PROFILE.timezone)


def breach_moment(due_on: date) -> datetime:
    """00:00 local on the day after a stage's due date."""
    return datetime.combine(due_on + timedelta(days=1), clock_time(), tzinfo=PROFILE.timezone)


def arrived_at(clock: SimulatedClock, timestamp_ms: float) -> datetime:
    """The simulated moment of a wall-clock Kafka timestamp (milliseconds)."""
    return clock.start + timedelta(seconds=(timestamp_ms / 1000 - clock.anchor) * clock.speed)


async def stamp_on_append(bootstrap: str, topics: Iterable[str]) -> None:
    """Messages of ``topics`` get the broker's append time as their timestamp."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    topic,
                    configs={"message.timestamp.type": "LogAppendTime"},
                )
                for topic in topics
            ]
        )
    finally:
        await admin.close()


async def publish_as_time_passes(
    bootstrap: str, topic: str, stream: list[Upload], clock: SimulatedClock
) -> None:
    """Send each upload once ``clock`` has reached its moment (a source sending as it goes).

    The producer keeps trying for a minute, so uploads made while the broker is down reach
    it when it is back.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=2, request_timeout_ms=60_000, retry_backoff_ms=200
    )
    await producer.start()
    try:
        deliveries = []
        for upload in stream:
            wait = clock.wall_seconds_until(upload.at)
            if wait > 0:
                await asyncio.sleep(wait)
            deliveries.append(await producer.send(topic, key=upload.key, value=upload.value))
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


async def wait_until_simulated(clock: SimulatedClock, moment: datetime) -> None:
    """Sleep until ``clock`` reads ``moment``."""
    await asyncio.sleep(clock.wall_seconds_until(moment))


@dataclass(frozen=True)
class Arrival:
    """An event as it reached the events topic."""

    event: Event
    at: datetime
    """The simulated moment the broker appended it."""
    known_at: datetime
    """The simulated moment from which the audit counts it as readable."""
    partition: int
    offset: int
    timestamp: int
    """When the broker appended it (milliseconds since the epoch)."""
    known_ms: float
    """``known_at`` in wall-clock milliseconds since the epoch."""


class VisibilityProbe:
    """Asks the broker for a topic's end offsets every :data:`PROBE_EVERY` seconds while a
    trial runs, so that the audit knows, for each message, the last moment the broker still
    did not show it (a gap longer than :data:`VISIBLE_WITHIN_MS`). Requests that fail (the
    broker stopped) are skipped."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self._sent: list[float] = []
        """When each answered request was sent (seconds since the epoch)."""
        self._ends: dict[int, list[int]] = defaultdict(list)
        """Per partition, each answered request's end offset (in step with ``_sent``)."""
        self._client: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> VisibilityProbe:
        self._client = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, request_timeout_ms=5000
        )
        await self._client.start()
        tps = [TopicPartition(self.topic, partition) for partition in range(self.partitions)]
        self._task = asyncio.create_task(self._run(tps))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        assert self._client is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._client.stop()

    async def _run(self, partitions: list[TopicPartition]) -> None:
        assert self._client is not None
        while True:
            sent = time.time()
            try:
                async with asyncio.timeout(5):
                    ends = await self._client.end_offsets(partitions)
            except (KafkaError, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            self._sent.append(sent)
            for tp, end in ends.items():
                self._ends[tp.partition].append(end)
            await asyncio.sleep(PROBE_EVERY)

    def unseen_at(self, partition: int, offset: int) -> float | None:
        """When the last request that did not show the message at ``offset`` was sent
        (seconds since the epoch), if any did not."""
        index = bisect.bisect_right(self._ends[partition], offset)
        return self._sent[index - 1] if index else None


def known_ms(timestamp: int, partition: int, offset: int, probe: VisibilityProbe | None) -> float:
    """When the audit counts a message stamped ``timestamp`` as readable (milliseconds)."""
    known = float(timestamp + VISIBLE_WITHIN_MS)
    unseen = None if probe is None else probe.unseen_at(partition, offset)
    return known if unseen is None else max(known, unseen * 1000)


def arrivals(
    records: Iterable[Record], clock: SimulatedClock, probe: VisibilityProbe | None = None
) -> dict[str, list[Arrival]]:
    """Each referral's events in the order they reached Kafka (offset order in its partition),
    each known from :func:`known_ms` (with what ``probe`` saw, if given)."""
    by_referral: dict[str, list[Arrival]] = defaultdict(list)
    for record in records:
        assert record.value is not None
        event = parse_event(record.value)
        known = known_ms(record.timestamp, record.partition, record.offset, probe)
        by_referral[event.referral_id].append(
            Arrival(
                event,
                arrived_at(clock, record.timestamp),
                arrived_at(clock, known),
                record.partition,
                record.offset,
                record.timestamp,
                known,
            )
        )
    for events in by_referral.values():
        events.sort(key=lambda arrival: arrival.offset)
    return by_referral


@dataclass
class History:
    """What could be known of each stage as its events arrived, up to ``as_of``."""

    breach_justified: set[StageKey] = field(default_factory=set)
    at_risk_justified: set[StageKey] = field(default_factory=set)
    breached: set[StageKey] = field(default_factory=set)
    """Stages breached as of ``as_of`` with every event (what ``replay`` says)."""
    disproved_by: dict[StageKey, tuple[Arrival, int]] = field(default_factory=dict)
    """For each stage justified as breached and later met or not applicable: the arrival
    that disproved the breach, and the offset of the first arrival after which the breach
    was justified."""


def history(by_referral: dict[str, list[Arrival]], as_of: datetime) -> History:
    """Walk each referral's arrivals and record what each window justified.

    With its events fixed, a stage only moves from pending to at risk to breached as time
    passes: a breach is justified if the stage is breached at a window's end, a warning if
    it is at risk at the window's last moment before the stage's breach moment.
    """
    known = History()
    for referral_id, events in by_referral.items():
        clock = ReferralClock(referral_id)
        breached_after: dict[str, int] = {}
        for index, arrival in enumerate(events):
            clock.apply(arrival.event)
            following = events[index + 1].known_at if index + 1 < len(events) else as_of + TICK
            window_end = min(following, as_of + TICK) - TICK
            state = clock.state(window_end, PROFILE)
            for stage in PROFILE.stages:
                stage_state = state.stages[stage.name]
                if stage_state is None:
                    continue
                key = (referral_id, stage.name)
                if stage_state.state is StageStatus.BREACHED:
                    known.breach_justified.add(key)
                    breached_after.setdefault(stage.name, arrival.offset)
                    last_pending = max(arrival.known_at, breach_moment(stage_state.due_on) - TICK)
                    if (
                        last_pending < window_end
                        and stage.name in clock.state(last_pending, PROFILE).at_risk_stages
                    ):
                        known.at_risk_justified.add(key)
                elif (
                    stage_state.state in (StageStatus.MET, StageStatus.NOT_APPLICABLE)
                    and stage.name in breached_after
                    and key not in known.disproved_by
                ):
                    known.disproved_by[key] = (arrival, breached_after[stage.name])
                if stage.name in state.at_risk_stages:
                    known.at_risk_justified.add(key)
        final = clock.state(as_of, PROFILE)
        for stage in PROFILE.stages:
            stage_state = final.stages[stage.name]
            if stage_state is not None and stage_state.state is StageStatus.BREACHED:
                known.breached.add((referral_id, stage.name))
    return known


@dataclass
class Audit:
    """The alerts of a trial against what the events justified."""

    sends: dict[str, int]
    """Alert messages sent, by kind (re-sends with the same ``alert_id`` included)."""
    raised: dict[str, set[StageKey]]
    """Distinct alerts by kind (one ``alert_id`` per referral, stage and kind)."""
    breach_decided: dict[StageKey, int]
    """When each breach raised was first decided as of (its ``detected_at``, in wall-clock
    milliseconds)."""
    known: History
    timeline: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)
    """Each referral's arrivals and alerts, by the simulated moment each reached Kafka."""
    readable_after_ms: list[float] = field(default_factory=list)
    """For each event the probe saw unreadable later than ``VISIBLE_WITHIN_MS`` after its
    stamp: how long after its stamp it was last unseen."""

    def story(self, keys: Iterable[StageKey]) -> str:
        """The timelines of the referrals of ``keys``, for a failure message."""
        referrals = sorted({referral for referral, _stage in keys})
        return "\n".join(
            f"{ref}:\n"
            + "\n".join(f"  {at.isoformat()} {what}" for at, what in sorted(self.timeline[ref]))
            for ref in referrals
            if ref in self.timeline
        )

    @property
    def missing(self) -> set[StageKey]:
        """Breaches that happened and were never raised."""
        return self.known.breached - self.raised[AlertKind.BREACH]

    @property
    def unjustified(self) -> set[StageKey]:
        """Breaches raised that no arrived events ever showed."""
        return self.raised[AlertKind.BREACH] - self.known.breach_justified

    @property
    def explained(self) -> set[StageKey]:
        """Withdrawals of a breach justified when decided, disproved by an event that reached
        Kafka after the breach was decided (counted from when it was readable: :func:`known_ms`)."""
        return {
            key
            for key in self.raised[AlertKind.BREACH_WITHDRAWN]
            if key in self.known.disproved_by
            and key in self.breach_decided
            and self.known.disproved_by[key][0].known_ms >= self.breach_decided[key]
        }

    @property
    def unexplained(self) -> set[StageKey]:
        """Withdrawals that no later arrival explains."""
        return self.raised[AlertKind.BREACH_WITHDRAWN] - self.explained

    @property
    def at_risk_unjustified(self) -> set[StageKey]:
        """At-risk warnings raised that no arrived events ever showed."""
        return self.raised[AlertKind.AT_RISK] - self.known.at_risk_justified

    def later_lines(self) -> list[tuple[int, int, int]]:
        """For each explained withdrawal: the partition, the offset after which the breach
        was justified and the offset of the event that disproved it."""
        return sorted(
            (arrival.partition, justified_after, arrival.offset)
            for arrival, justified_after in (self.known.disproved_by[key] for key in self.explained)
        )

    def figures(self) -> dict[str, Any]:
        """The trial's figures, for its report."""
        return {
            "breaches that happened": len(self.known.breached),
            "breaches raised": len(self.raised[AlertKind.BREACH]),
            "breaches withdrawn": len(self.raised[AlertKind.BREACH_WITHDRAWN]),
            "withdrawn, explained by a later arrival": len(self.explained),
            "withdrawn, not explained": len(self.unexplained),
            "breaches raised without cause": len(self.unjustified),
            "breaches missing": len(self.missing),
            "at-risk warnings raised": len(self.raised[AlertKind.AT_RISK]),
            "at-risk warnings without cause": len(self.at_risk_unjustified),
            "messages sent by kind": dict(self.sends),
            f"events still unreadable {VISIBLE_WITHIN_MS} ms after their stamp": len(
                self.readable_after_ms
            ),
            "longest of those waits (ms)": round(max(self.readable_after_ms, default=0.0), 1),
        }


def alert_moment(body: dict[str, Any]) -> datetime:
    """The moment an alert is about: its stage's breach moment, or its warning day's start."""
    due_on = date.fromisoformat(body["due_on"])
    if body["kind"] != AlertKind.AT_RISK:
        return breach_moment(due_on)
    (stage,) = [stage for stage in PROFILE.stages if stage.name == body["stage"]]
    assert stage.at_risk_day is not None
    warning_day = due_on - timedelta(days=stage.target_days - stage.at_risk_day)
    return datetime.combine(warning_day, clock_time(), tzinfo=PROFILE.timezone)


def wall_milliseconds(clock: SimulatedClock, moment: datetime) -> int:
    """The wall-clock millisecond in which ``clock`` read ``moment``."""
    return math.floor((clock.anchor + (moment - clock.start).total_seconds() / clock.speed) * 1000)


def audit(
    alert_records: Iterable[Record],
    by_referral: dict[str, list[Arrival]],
    as_of: datetime,
    clock: SimulatedClock,
) -> Audit:
    """Audit the alerts about breach and warning moments up to ``as_of``.

    Alerts about a moment after ``as_of`` are left out: the workers go on deciding the
    deadlines that come after it.
    """
    sends: dict[str, int] = defaultdict(int)
    ids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    decided: dict[StageKey, int] = {}
    timeline: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for referral_id, referral_arrivals in by_referral.items():
        timeline[referral_id].extend(
            (arrival.at, f"event {arrival.event.type.value} p{arrival.partition}@{arrival.offset}")
            for arrival in referral_arrivals
        )
    for record in alert_records:
        assert record.value is not None
        body = orjson.loads(record.value)
        if alert_moment(body) > as_of:
            continue
        timeline[body["referral_id"]].append(
            (
                arrived_at(clock, record.timestamp),
                f"alert {body['kind']} {body['stage']} detected_at={body['detected_at']}",
            )
        )
        sends[body["kind"]] += 1
        key = (body["referral_id"], body["stage"])
        ids[(*key, body["kind"])].add(body["alert_id"])
        if body["kind"] == AlertKind.BREACH:
            moment = wall_milliseconds(clock, datetime.fromisoformat(body["detected_at"]))
            decided[key] = min(moment, decided.get(key, moment))
    assert all(len(alert_ids) == 1 for alert_ids in ids.values())
    raised: dict[str, set[StageKey]] = {kind: set() for kind in AlertKind}
    for referral_id, stage, kind in ids:
        raised[kind].add((referral_id, stage))
    late = [
        arrival.known_ms - arrival.timestamp
        for referral_arrivals in by_referral.values()
        for arrival in referral_arrivals
        if arrival.known_ms > arrival.timestamp + VISIBLE_WITHIN_MS
    ]
    return Audit(sends, raised, decided, history(by_referral, as_of), dict(timeline), late)
