"""The Kafka topics of a deployment: their names, in one place for every process.

Public topics (``mhst.referral-events``, ``mhst.breach-alerts``, ``mhst.referral-events.dlq``)
and the workers' internal command topic ``mhst.referral-ticks``; ``MHST_TOPIC_PREFIX``
prefixes every name (and the consumer groups), so test runs can share a broker. The tick
topic must have as many partitions as the events topic: one agent reads both, and a tick
for a referral is sent to the partition that holds the referral's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

EVENTS_TOPIC: Final = "mhst.referral-events"
TICKS_TOPIC: Final = "mhst.referral-ticks"
ALERTS_TOPIC: Final = "mhst.breach-alerts"
DLQ_TOPIC: Final = "mhst.referral-events.dlq"


@dataclass(frozen=True)
class TopicNames:
    """Full topic names for one deployment (the prefix applied)."""

    events: str
    ticks: str
    alerts: str
    dlq: str

    @classmethod
    def with_prefix(cls, prefix: str) -> TopicNames:
        """The names of the four topics under ``prefix`` (``MHST_TOPIC_PREFIX``)."""
        return cls(
            events=f"{prefix}{EVENTS_TOPIC}",
            ticks=f"{prefix}{TICKS_TOPIC}",
            alerts=f"{prefix}{ALERTS_TOPIC}",
            dlq=f"{prefix}{DLQ_TOPIC}",
        )

    def all(self) -> tuple[str, ...]:
        """Every name, events first."""
        return (self.events, self.ticks, self.alerts, self.dlq)

    def stored(self) -> tuple[str, str, str]:
        """The topics the store keeps: events, alerts and dead letters."""
        return (self.events, self.alerts, self.dlq)
