"""The Kafka topics of a deployment: their names, in one place for every process.

Public topics (``mhst.referral-events``, ``mhst.breach-alerts``, ``mhst.referral-events.dlq``)
and the workers' internal command topic ``mhst.referral-ticks``; ``MHST_TOPIC_PREFIX``
prefixes every name (and the consumer groups), so test runs can share a broker. The tick
topic must have as many partitions as the events topic: one agent reads both, and a tick
for a referral is sent to the partition that holds the referral's clock.

The workers are one Faust app, ``mhst-tracker`` (prefixed): its id names their consumer
group and prefixes the changelog topic of their table ``referral-clocks``, which Faust
creates (compacted, co-partitioned with the events topic). ``mhst-tracker rebuild`` writes
that changelog and moves that group's offsets without Faust, so both names live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

EVENTS_TOPIC: Final = "mhst.referral-events"
TICKS_TOPIC: Final = "mhst.referral-ticks"
ALERTS_TOPIC: Final = "mhst.breach-alerts"
DLQ_TOPIC: Final = "mhst.referral-events.dlq"
WORKER_APP: Final = "mhst-tracker"
REFERRAL_TABLE: Final = "referral-clocks"


@dataclass(frozen=True)
class TopicNames:
    """Full topic names for one deployment (the prefix applied)."""

    events: str
    ticks: str
    alerts: str
    dlq: str
    workers: str
    """The workers' Faust app id: their consumer group, and their changelogs' prefix."""
    referral_changelog: str
    """The changelog topic of the workers' table ``referral-clocks`` (Faust creates it)."""

    @classmethod
    def with_prefix(cls, prefix: str) -> TopicNames:
        """The names of the four topics under ``prefix`` (``MHST_TOPIC_PREFIX``), and the
        workers' group and table changelog."""
        workers = f"{prefix}{WORKER_APP}"
        return cls(
            events=f"{prefix}{EVENTS_TOPIC}",
            ticks=f"{prefix}{TICKS_TOPIC}",
            alerts=f"{prefix}{ALERTS_TOPIC}",
            dlq=f"{prefix}{DLQ_TOPIC}",
            workers=workers,
            referral_changelog=f"{workers}-{REFERRAL_TABLE}-changelog",
        )

    def all(self) -> tuple[str, ...]:
        """The four topics ``topics create`` makes, events first."""
        return (self.events, self.ticks, self.alerts, self.dlq)

    def stored(self) -> tuple[str, str, str]:
        """The topics the store keeps: events, alerts and dead letters."""
        return (self.events, self.alerts, self.dlq)
