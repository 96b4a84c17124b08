"""Where "now" comes from: the wall clock, or a simulated clock for demos and tests.

The engine never reads the time itself; the stream workers ask a ``TimeSource``. A simulated
clock starts at a given moment and runs N times faster than the wall clock, so a demo or a
test can watch weeks of deadlines pass in seconds.

``MHST_CLOCK`` selects it: ``wall`` (the default) or ``simulated:START[@SPEED][/ANCHOR]``,
for example ``simulated:2026-09-01T08:00:00+01:00@86400`` (one simulated day per second).
Without an anchor the clock reads START when the process creates it; with ``/ANCHOR`` (a Unix
time in seconds) it reads START at that wall-clock moment, so several processes (workers, a
producer, a test) share one simulated time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol


class TimeSource(Protocol):
    """Gives the current moment as an aware UTC datetime."""

    def now(self) -> datetime:
        """The current moment."""
        ...

    def wall_seconds_until(self, moment: datetime) -> float:
        """Real seconds to wait until ``moment`` arrives on this clock (0 if past)."""
        ...


class WallClock:
    """The real clock."""

    def now(self) -> datetime:
        """The current moment."""
        return datetime.now(UTC)

    def wall_seconds_until(self, moment: datetime) -> float:
        """Real seconds until ``moment``."""
        return max(0.0, (moment - self.now()).total_seconds())


@dataclass(frozen=True)
class SimulatedClock:
    """A clock that starts at ``start`` when created and runs ``speed`` times faster."""

    start: datetime
    speed: float
    anchor: float
    """Unix time (wall clock) at which the simulated clock reads ``start``."""

    @classmethod
    def starting(
        cls, start: datetime, speed: float = 1.0, anchor: float | None = None
    ) -> SimulatedClock:
        """A simulated clock that reads ``start`` at wall time ``anchor`` (default: now)."""
        if start.tzinfo is None:
            raise ValueError("a simulated clock needs an aware start time (with an offset)")
        if speed <= 0:
            raise ValueError("a simulated clock's speed must be positive")
        return cls(start.astimezone(UTC), speed, time.time() if anchor is None else anchor)

    @property
    def spec(self) -> str:
        """The ``MHST_CLOCK`` value that gives another process this same clock."""
        return f"simulated:{self.start.isoformat()}@{self.speed:g}/{self.anchor:.6f}"

    def now(self) -> datetime:
        """The simulated current moment."""
        return self.start + timedelta(seconds=(time.time() - self.anchor) * self.speed)

    def wall_seconds_until(self, moment: datetime) -> float:
        """Real seconds until the simulated clock reaches ``moment``."""
        return max(0.0, (moment - self.now()).total_seconds() / self.speed)


@dataclass
class ManualClock:
    """A clock that reads ``moment`` until someone sets it again (replays, tests)."""

    moment: datetime

    def now(self) -> datetime:
        """The moment last set."""
        return self.moment

    def wall_seconds_until(self, moment: datetime) -> float:
        """Simulated seconds until ``moment``: this clock only moves when it is set."""
        return max(0.0, (moment - self.moment).total_seconds())


def parse_time_source(spec: str) -> TimeSource:
    """Build a time source from an ``MHST_CLOCK`` value; raises ValueError with the reason."""
    spec = spec.strip()
    if spec in ("", "wall"):
        return WallClock()
    if not spec.startswith("simulated:"):
        raise ValueError(f"MHST_CLOCK must be 'wall' or 'simulated:START[@SPEED]', not {spec!r}")
    body, _, anchor_text = spec.removeprefix("simulated:").partition("/")
    start_text, _, speed_text = body.partition("@")
    try:
        start = datetime.fromisoformat(start_text)
        speed = float(speed_text) if speed_text else 1.0
        anchor = float(anchor_text) if anchor_text else None
        return SimulatedClock.starting(start, speed, anchor)
    except ValueError as err:
        raise ValueError(f"MHST_CLOCK {spec!r}: {err}") from err
