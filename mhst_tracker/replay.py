"""Replay: the engine without Kafka, from a sequence of JSONL lines to states and measures.

The same parse, fold and measures the stream workers use, so replaying a topic's history
gives the states the workers hold. Invalid lines are listed with their line number and
reason and never stop the replay; lines holding only white space are not events and are
skipped without a report.

Python's cyclic garbage collector is paused while lines are folded and states computed:
a replay allocates millions of long-lived objects, none of them in reference cycles, and
each full collection would walk them all again (about a third of the replay time).
"""

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from mhst_tracker.domain.clock import ReferralClock, ReferralState, fold_events
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import (
    _REFERRAL_RECEIVED,
    _WIRE_ERRORS,
    SCHEMA_VERSION,
    _decode_wire,
    _fast_timestamp,
    parse_event,
)
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
    """Folds lines into referral clocks; ask :meth:`result` for any moment afterwards."""

    def __init__(self) -> None:
        self.clocks: dict[str, ReferralClock] = {}
        self.rejected: list[RejectedLine] = []
        self.duplicates = 0
        self.lines = 0

    def feed(self, lines: Iterable[bytes | str]) -> None:
        """Parse and apply each line; line numbers continue across calls."""
        with cyclic_gc_paused():
            self._feed(lines)

    def _feed(self, lines: Iterable[bytes | str]) -> None:
        clocks = self.clocks
        get_clock = clocks.get
        decode = _decode_wire
        fast_timestamp = _fast_timestamp
        number = self.lines
        for number, line in enumerate(lines, start=self.lines + 1):
            # Most lines take parse_event's fast path, written out here (it is parse_fast,
            # without two calls per line) and folded straight into the clock without
            # building an Event. It must accept exactly what parse_fast accepts; the rest
            # (blank lines too: the decoder rejects them) go through parse_event itself.
            try:
                wire = decode(line)
            except _WIRE_ERRORS:
                wire = None
            if wire is not None:
                occurred_at = fast_timestamp(wire.occurred_at)
                team_id = wire.team_id
                school_id = wire.school_id
                event_type = wire.type
                if (
                    occurred_at is not None
                    and team_id != ""
                    and school_id != ""
                    and (team_id is not None or event_type is not _REFERRAL_RECEIVED)
                    and wire.schema_version == SCHEMA_VERSION
                ):
                    referral_id = wire.referral_id
                    clock = get_clock(referral_id)
                    if clock is None:
                        clock = clocks[referral_id] = ReferralClock(referral_id)
                    if not clock.fold(wire.event_id, event_type, occurred_at, team_id, school_id):
                        self.duplicates += 1
                    continue
            if not line or line.isspace():
                continue
            try:
                event = parse_event(line)
            except InvalidEvent as error:
                self.rejected.append(RejectedLine(number, error.reason))
                continue
            self.duplicates += fold_events(clocks, (event,))
        self.lines = number

    def result(self, as_of: datetime, profile: Profile) -> ReplayResult:
        """States of all referrals as of ``as_of``, sorted by referral id, and the measures."""
        with cyclic_gc_paused():
            states = tuple(self.clocks[key].state(as_of, profile) for key in sorted(self.clocks))
            summary = summarise(states, profile, rejected_events=len(self.rejected))
        return ReplayResult(
            as_of=as_of,
            profile=profile,
            referrals=states,
            rejected=tuple(self.rejected),
            duplicates=self.duplicates,
            summary=summary,
        )


def replay(lines: Iterable[bytes | str], as_of: datetime, profile: Profile) -> ReplayResult:
    """Replay ``lines`` (JSONL, one event per line) and evaluate every referral as of ``as_of``."""
    replayer = Replayer()
    replayer.feed(lines)
    return replayer.result(as_of, profile)


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building or rendering a large replay."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
