"""A test scenario from the engine's simulator, and what the engine says should come out.

The worker's simulated clock starts at ``start`` (06:00 local on the day after the last
simulated event) and reaches the next local midnight, ``midnight``, 18 s of wall time later
at speed 3600 (36 s at 1800). Every deadline is a local midnight, so every decision taken between
``start`` and ``midnight`` is the same, and so is every decision between ``midnight`` and
the midnight after: the expected alerts are the engine's decisions at those two moments.

Each referral's events are sent with its stage events before its receipts (earliest
receipt first), so the worker sees no clock until the receipt and then the whole history:
its decision at ingest is the engine's decision on the complete history (the state is
order-independent; this removes transient alerts that depend on arrival timing).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Final

from mhst_tracker.domain.alerts import decide_alerts
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import Event, EventType, event_to_json, parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import Replayer
from mhst_tracker.simulate import simulate

PROFILE: Final = TRAILBLAZER_4WW
SPEED: Final = 3600.0
SIM_START_DATE: Final = date(2026, 5, 1)
_REFERRAL_ID: Final = re.compile(rb'"referral_id"\s*:\s*"([^"]+)"')

AlertKey = tuple[str, str, str]
"""(referral_id, stage, kind)"""
Body = dict[str, Any]


@dataclass
class Scenario:
    """Messages to send (key, value) in order, and the engine's expectations."""

    messages: list[tuple[bytes | None, bytes]]
    start: datetime
    midnight: datetime
    invalid: int
    replayer: Replayer = field(default_factory=Replayer)
    speed: float = SPEED

    @property
    def clock_spec(self) -> str:
        """``MHST_CLOCK`` for the workers."""
        return f"simulated:{self.start.isoformat()}@{self.speed:g}"

    @property
    def first_half(self) -> list[tuple[bytes | None, bytes]]:
        """The first half of :attr:`messages`."""
        return self.messages[: len(self.messages) // 2]

    @property
    def second_half(self) -> list[tuple[bytes | None, bytes]]:
        """The messages after :attr:`first_half`."""
        return self.messages[len(self.messages) // 2 :]

    def alerts_by_midnight(self) -> dict[AlertKey, Body]:
        """Every alert of :meth:`expected_alerts`, at ingest and at midnight."""
        at_ingest, at_midnight = self.expected_alerts()
        return at_ingest | at_midnight

    def expected_alerts(self) -> tuple[dict[AlertKey, Body], dict[AlertKey, Body]]:
        """The engine's alerts before midnight (at ingest) and at midnight.

        Bodies are the alert messages without ``detected_at``.
        """
        at_ingest: dict[AlertKey, Body] = {}
        at_midnight: dict[AlertKey, Body] = {}
        for referral_id, clock in self.replayer.clocks.items():
            raised: set[tuple[str, str]] = set()
            for moment, bucket in (
                (self.start, at_ingest),
                (self.midnight + timedelta(minutes=1), at_midnight),
            ):
                for alert in decide_alerts(clock, PROFILE, moment, raised):
                    raised.add((alert.stage, alert.kind.value))
                    bucket[(referral_id, alert.stage, alert.kind.value)] = without_time(
                        alert.to_dict()
                    )
        return at_ingest, at_midnight


def without_time(body: Body) -> Body:
    """An alert body without ``detected_at``."""
    return {name: value for name, value in body.items() if name != "detected_at"}


def alert_key(body: Body) -> AlertKey:
    """(referral_id, stage, kind) of an alert body."""
    return (body["referral_id"], body["stage"], body["kind"])


def build(seed: int, referrals: int, speed: float = SPEED) -> Scenario:
    """The simulator's stream for ``referrals`` referrals, arranged as the module says.

    A slower ``speed`` leaves more wall time before midnight, for tests that restart or
    rebalance workers before it.
    """
    lines = [line.encode() for line in simulate(seed, SIM_START_DATE, referrals=referrals)]
    replayer = Replayer()
    replayer.feed(lines)
    by_referral: dict[bytes, list[tuple[int, datetime, bytes]]] = defaultdict(list)
    invalid: list[tuple[bytes | None, bytes]] = []
    last_day = SIM_START_DATE
    for line in lines:
        try:
            event = parse_event(line)
        except InvalidEvent:
            match = _REFERRAL_ID.search(line)
            invalid.append((match.group(1) if match else None, line))
            continue
        rank = 1 if event.type is EventType.REFERRAL_RECEIVED else 0
        by_referral[event.referral_id.encode()].append((rank, event.occurred_at, line))
        last_day = max(last_day, event.occurred_at.astimezone(PROFILE.timezone).date())
    messages: list[tuple[bytes | None, bytes]] = []
    for key, items in by_referral.items():
        items.sort(key=lambda item: (item[0], item[1]))
        messages.extend((key, line) for _, _, line in items)
    start = datetime.combine(last_day + timedelta(days=1), time(6), tzinfo=PROFILE.timezone)
    midnight = datetime.combine(start.date() + timedelta(days=1), time(), tzinfo=PROFILE.timezone)
    return Scenario(
        messages=messages + invalid,
        start=start,
        midnight=midnight,
        invalid=len(invalid),
        replayer=replayer,
        speed=speed,
    )


def late_allocations(scenario: Scenario, breached: set[AlertKey], limit: int) -> list[Event]:
    """``allocated`` events dated within target for referrals whose allocation breached.

    Uploaded late, they disprove the breach: the engine then withdraws it.
    """
    events: list[Event] = []
    for referral_id, stage, kind in sorted(breached):
        if stage != "allocation" or kind != "breach" or len(events) == limit:
            continue
        clock = scenario.replayer.clocks[referral_id]
        received_on = clock.state(scenario.start, PROFILE).received_on
        assert received_on is not None
        moment = datetime.combine(received_on + timedelta(days=2), time(10), PROFILE.timezone)
        event = Event(
            event_id=f"late-allocation-{referral_id}",
            type=EventType.ALLOCATED,
            referral_id=referral_id,
            occurred_at=moment,
        )
        scenario.replayer.feed([event_to_json(event)])
        events.append(event)
    return events
