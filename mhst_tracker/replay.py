"""Replay: the engine without Kafka, from a sequence of JSONL lines to states and measures.

The same reader (:func:`~mhst_tracker.domain.events.parse_event`), fold
(:func:`~mhst_tracker.domain.clock.fold_events`) and measures the stream workers and the
store use, so replaying a topic's history gives the states the workers hold. Invalid lines
are listed with their line number and reason and never stop the replay; lines holding only
white space are not events and are skipped without a report. A referral none of whose
events occurred at or before the as-of moment does not exist yet then: it is not listed and
counts nowhere.

A replay allocates millions of long-lived objects, none of them in reference cycles; the
command that runs one pauses the cyclic garbage collector around it
(:func:`mhst_tracker.commands.running.cyclic_gc_paused`), a choice for the process, not
this module.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from mhst_tracker.domain.clock import (
    Evaluation,
    ReferralClock,
    ReferralState,
    existing_states,
    fold_events,
)
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import MAX_EVENT_BYTES, Event, parse_event
from mhst_tracker.domain.measures import Summary, summarise
from mhst_tracker.domain.profile import Profile


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """An input line that is not a valid event, numbered from 1."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Every referral's state as of one moment, the rejected lines, duplicates, measures."""

    as_of: datetime
    profile: Profile
    referrals: tuple[ReferralState, ...]
    rejected: tuple[RejectedLine, ...]
    duplicates: int
    summary: Summary

    def to_dict(self) -> dict[str, Any]:
        """The replay output object of the domain page."""
        return self._document([state.to_dict() for state in self.referrals])

    def to_json(self) -> bytes:
        """The output of ``replay --format json``: :meth:`to_dict` as JSON indented by two
        spaces, without a trailing newline.

        Byte for byte ``orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)``, but
        several times faster on a large replay: each referral becomes one small dict of its
        own field values, and orjson writes the rest natively exactly as ``to_dict`` spells
        it (a ``date`` as ``YYYY-MM-DD``, an enum member as its value, a tuple as an array,
        a :class:`~mhst_tracker.domain.clock.StageState` dataclass as ``due_on``,
        ``done_on``, ``state`` in field order), so no date is formatted and no dict is built
        per stage in Python. A test compares both on a simulated stream.
        """
        referrals = [
            {
                "referral_id": state.referral_id,
                "team_id": state.team_id,
                "school_id": state.school_id,
                "status": state.status,
                "received_on": state.received_on,
                "days_waited": state.days_waited,
                "dna_count": state.dna_count,
                "flags": state.flags,
                "stages": stages if type(stages := state.stages) is dict else dict(stages),
            }
            for state in self.referrals
        ]
        return orjson.dumps(self._document(referrals), option=orjson.OPT_INDENT_2)

    def _document(self, referrals: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "profile": self.profile.name,
            "referrals": referrals,
            "rejected": [{"line": item.line, "reason": item.reason} for item in self.rejected],
            "duplicates": self.duplicates,
            "summary": self.summary.to_dict(),
        }


class Replayer:
    """Folds lines into referral clocks; ask :meth:`result` for any moment afterwards.

    ``max_bytes`` is the largest event accepted (``MHST_MAX_EVENT_BYTES``, as the workers
    apply it)."""

    def __init__(self, max_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_bytes = max_bytes
        self.clocks: dict[str, ReferralClock] = {}
        self.rejected: list[RejectedLine] = []
        self.duplicates = 0
        self.lines = 0

    def feed(self, lines: Iterable[bytes | str]) -> None:
        """Read and fold each line; line numbers continue across calls."""
        self.duplicates += fold_events(self.clocks, self._events(lines))

    def _events(self, lines: Iterable[bytes | str]) -> Iterator[Event]:
        """The events of ``lines``, the rejected lines noted with their numbers."""
        max_bytes = self.max_bytes
        rejected = self.rejected
        last = self.lines
        try:
            for last, line in enumerate(lines, start=self.lines + 1):
                try:
                    yield parse_event(line, max_bytes)
                except InvalidEvent as error:
                    if line and not line.isspace():
                        rejected.append(RejectedLine(last, error.reason))
        finally:
            self.lines = last

    def result(self, as_of: datetime, profile: Profile) -> ReplayResult:
        """States of the referrals that exist as of ``as_of``, sorted by referral id, and
        the measures."""
        clocks = self.clocks
        states = tuple(
            existing_states((clocks[key] for key in sorted(clocks)), Evaluation.of(as_of, profile))
        )
        summary = summarise(states, profile, rejected_events=len(self.rejected))
        return ReplayResult(
            as_of=as_of,
            profile=profile,
            referrals=states,
            rejected=tuple(self.rejected),
            duplicates=self.duplicates,
            summary=summary,
        )


def replay(
    lines: Iterable[bytes | str],
    as_of: datetime,
    profile: Profile,
    max_bytes: int = MAX_EVENT_BYTES,
) -> ReplayResult:
    """Replay ``lines`` (JSONL, one event per line) and evaluate every referral as of ``as_of``."""
    replayer = Replayer(max_bytes)
    replayer.feed(lines)
    return replayer.result(as_of, profile)
