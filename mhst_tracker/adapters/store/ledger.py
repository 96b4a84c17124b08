"""The notifier's delivery ledger in the store: one row per (alert, recipient), one per digest.

A delivery moves through these statuses (``deliveries.status``)::

    queued ──(its digest sent)──────────────────────────────► delivered
    sending ─(sent)─────────────────────────────────────────► delivered
       │    └(refused or no answer)─► pending ─(due: sending again)
       │                              └(attempts used up)──► failed ─(notify retry)─► pending
       └(notifier stopped mid-way; after the claim timeout: sending again, counted as a re-send)
    queued, pending, failed ─(the breach withdrawn before it was delivered)─► cancelled

The row is written **before** anything is sent (:meth:`Ledger.claim`, ``sending``) and its
outcome after (:meth:`Ledger.record`), and the notifier commits the alert's Kafka offset
only after that. So an alert read again (re-sent by a worker, re-read after a rebalance or a
crash) finds its row and is not sent again; the one window left (sent, then stopped before
the outcome was written) leaves a ``sending`` row, which is sent again after the claim
timeout with the same message id, and reported as a re-send so the count is known.

Both databases run the same statements (SQLAlchemy Core; ``INSERT ... ON CONFLICT DO
NOTHING RETURNING`` in each dialect's spelling); the contract tests run on both.
Times here are the wall clock's (when an attempt was made, when to try again); the alert's
``detected_at`` and a digest's local date are the tracker's clock's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import Table, and_, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mhst_tracker.adapters.store.backend import chunks
from mhst_tracker.adapters.store.database import check_current, create_engine
from mhst_tracker.adapters.store.models import DeliveryRow, DigestRow
from mhst_tracker.adapters.store.records import alert_from_dict
from mhst_tracker.domain.alerts import Alert

DELIVERIES: Final[Table] = DeliveryRow.__table__  # type: ignore[assignment]
DIGESTS: Final[Table] = DigestRow.__table__  # type: ignore[assignment]
CHUNK: Final = 500
"""Rows per multi-row statement (well under SQLite's limit of bound parameters)."""
ERROR_LENGTH: Final = 256


class Status:
    """Values of ``deliveries.status`` and ``digests.status``."""

    QUEUED = "queued"
    SENDING = "sending"
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EMPTY = "empty"
    """A digest with nothing to say to a recipient who did not ask for empty ones."""


@dataclass(frozen=True, slots=True)
class Job:
    """A delivery to make: an alert for a recipient, by its channel and mode."""

    alert: Alert
    recipient: str
    channel: str
    mode: str
    message_id: str
    corrects: str | None = None
    """For a correction, the id of the message that carried the breach it withdraws."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery this notifier now holds and must send, then :meth:`Ledger.record`."""

    id: int
    alert: Alert
    recipient: str
    message_id: str
    attempts: int
    """Attempts recorded before this one."""
    resent: bool
    """An earlier attempt may have gone out (a notifier stopped before writing its outcome):
    this one is a re-send of the same message id."""
    corrects: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt of a claimed delivery came to."""

    id: int
    error: str | None = None
    """``None``: delivered. Otherwise why not (a kind of failure, never a value)."""
    retry_at: datetime | None = None
    """When to try again after an error; ``None`` after an error: failed for good."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """A ledger row as a withdrawal sees it."""

    id: int
    alert_id: str
    recipient: str
    mode: str
    status: str
    message_id: str


@dataclass(frozen=True, slots=True)
class DigestClaim:
    """A digest this notifier now holds and must send, then :meth:`Ledger.record_digest`."""

    id: int
    recipient: str
    day: date
    message_id: str
    attempts: int
    resent: bool


class Ledger:
    """The delivery ledger on a store's engine (PostgreSQL or SQLite)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    @classmethod
    async def open(cls, url: str) -> Ledger:
        """The ledger of the store at ``url``;
        :class:`~mhst_tracker.adapters.store.database.StoreNotMigrated` if ``db upgrade``
        has not been run."""
        engine = create_engine(url)
        try:
            await check_current(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        """Release the engine's connections."""
        await self.engine.dispose()

    async def claim(
        self, jobs: Sequence[Job], now: datetime, stale_before: datetime
    ) -> list[Claim]:
        """Claim immediate deliveries to send now: those with no row yet, and those left
        ``sending`` (claimed before ``stale_before``) by a notifier that stopped. A job
        whose row exists otherwise (delivered, pending a retry, failed, cancelled, or in
        another notifier's hands) is not claimed: it is a duplicate."""
        if not jobs:
            return []
        by_key = {(job.alert.alert_id, job.recipient): job for job in jobs}
        claims: list[Claim] = []
        async with self.engine.begin() as connection:
            new = await self._insert_rows(connection, by_key.values(), Status.SENDING, now)
            for row_id, key in new.items():
                job = by_key[key]
                claims.append(
                    Claim(row_id, job.alert, job.recipient, job.message_id, 0, False, job.corrects)
                )
            claimed = set(new.values())
            others = [key for key in by_key if key not in claimed]
            for part in chunks(others, CHUNK):
                result = await connection.execute(
                    update(DELIVERIES)
                    .where(
                        tuple_(DELIVERIES.c.alert_id, DELIVERIES.c.recipient).in_(part),
                        _stale(stale_before),
                    )
                    .values(claimed_at=now)
                    .returning(
                        DELIVERIES.c.id,
                        DELIVERIES.c.alert,
                        DELIVERIES.c.recipient,
                        DELIVERIES.c.message_id,
                        DELIVERIES.c.attempts,
                        DELIVERIES.c.corrects,
                    )
                )
                claims.extend(_claim(row, resent=True) for row in result)
        return claims

    async def queue(self, jobs: Sequence[Job], now: datetime) -> int:
        """Queue deliveries for their recipients' digests; how many were new."""
        if not jobs:
            return 0
        async with self.engine.begin() as connection:
            return len(await self._insert_rows(connection, jobs, Status.QUEUED, now))

    async def _insert_rows(
        self, connection: AsyncConnection, jobs: Iterable[Job], status: str, now: datetime
    ) -> dict[int, tuple[str, str]]:
        """Insert a row per job that has none, in key order; the new rows' ids and keys."""
        rows = [
            {
                "alert_id": job.alert.alert_id,
                "recipient": job.recipient,
                "channel": job.channel,
                "mode": job.mode,
                "kind": job.alert.kind.value,
                "team_id": job.alert.team_id,
                "stage": job.alert.stage,
                "detected_at": job.alert.detected_at,
                "alert": job.alert.to_dict(),
                "corrects": job.corrects,
                "message_id": job.message_id,
                "status": status,
                "attempts": 0,
                "created_at": now,
                "claimed_at": now if status == Status.SENDING else None,
            }
            for job in sorted(jobs, key=lambda job: (job.alert.alert_id, job.recipient))
        ]
        new: dict[int, tuple[str, str]] = {}
        for part in chunks(rows, CHUNK):
            statement = (
                self._insert(DELIVERIES)
                .values(list(part))
                .on_conflict_do_nothing(index_elements=["alert_id", "recipient"])
                .returning(DELIVERIES.c.id, DELIVERIES.c.alert_id, DELIVERIES.c.recipient)
            )
            for row in await connection.execute(statement):
                new[row.id] = (row.alert_id, row.recipient)
        return new

    async def record(self, outcomes: Sequence[Outcome], now: datetime) -> None:
        """Write what the attempts of claimed deliveries came to, in one transaction."""
        if not outcomes:
            return
        delivered = [outcome.id for outcome in outcomes if outcome.error is None]
        failed = [outcome for outcome in outcomes if outcome.error is not None]
        async with self.engine.begin() as connection:
            for part in chunks(delivered, CHUNK):
                await connection.execute(
                    update(DELIVERIES)
                    .where(DELIVERIES.c.id.in_(part))
                    .values(
                        status=Status.DELIVERED,
                        attempts=DELIVERIES.c.attempts + 1,
                        delivered_at=now,
                        last_attempt_at=now,
                        claimed_at=None,
                        next_attempt_at=None,
                        last_error=None,
                    )
                )
            for outcome in failed:
                assert outcome.error is not None
                await connection.execute(
                    update(DELIVERIES)
                    .where(DELIVERIES.c.id == outcome.id)
                    .values(
                        status=Status.FAILED if outcome.retry_at is None else Status.PENDING,
                        attempts=DELIVERIES.c.attempts + 1,
                        last_attempt_at=now,
                        claimed_at=None,
                        next_attempt_at=outcome.retry_at,
                        last_error=outcome.error[:ERROR_LENGTH],
                    )
                )

    async def due(self, now: datetime, stale_before: datetime, limit: int) -> list[Claim]:
        """Claim up to ``limit`` deliveries to send again: those pending whose retry is due,
        and those left ``sending`` before ``stale_before`` by a notifier that stopped."""
        waiting = and_(DELIVERIES.c.status == Status.PENDING, DELIVERIES.c.next_attempt_at <= now)
        condition = or_(waiting, _stale(stale_before))
        async with self.engine.begin() as connection:
            found = await connection.execute(
                select(DELIVERIES.c.id, DELIVERIES.c.status)
                .where(condition)
                .order_by(DELIVERIES.c.id)
                .limit(limit)
            )
            was_sending = {row.id: row.status == Status.SENDING for row in found}
            if not was_sending:
                return []
            result = await connection.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.id.in_(list(was_sending)), condition)
                .values(status=Status.SENDING, claimed_at=now)
                .returning(
                    DELIVERIES.c.id,
                    DELIVERIES.c.alert,
                    DELIVERIES.c.recipient,
                    DELIVERIES.c.message_id,
                    DELIVERIES.c.attempts,
                    DELIVERIES.c.corrects,
                )
            )
            return sorted(
                (_claim(row, resent=was_sending[row.id]) for row in result),
                key=lambda claim: claim.id,
            )

    async def reopen_failed(self, now: datetime) -> int:
        """Make every failed delivery and digest due again, its attempts counted afresh
        (``notify retry``); how many deliveries and digests."""
        async with self.engine.begin() as connection:
            reopened = 0
            for table in (DELIVERIES, DIGESTS):
                result = await connection.execute(
                    update(table)
                    .where(table.c.status == Status.FAILED)
                    .values(status=Status.PENDING, attempts=0, next_attempt_at=now)
                )
                reopened += int(result.rowcount)
        return reopened

    async def deliveries_of(self, alert_ids: Sequence[str]) -> list[Delivered]:
        """The rows of these alerts, for every recipient."""
        rows: list[Delivered] = []
        async with self.engine.connect() as connection:
            for part in chunks(sorted(set(alert_ids)), CHUNK):
                result = await connection.execute(
                    select(
                        DELIVERIES.c.id,
                        DELIVERIES.c.alert_id,
                        DELIVERIES.c.recipient,
                        DELIVERIES.c.mode,
                        DELIVERIES.c.status,
                        DELIVERIES.c.message_id,
                    ).where(DELIVERIES.c.alert_id.in_(part))
                )
                rows.extend(Delivered(*row) for row in result)
        return rows

    async def cancel(self, ids: Sequence[int]) -> int:
        """Cancel deliveries not delivered (queued, pending or failed); how many."""
        cancelled = 0
        async with self.engine.begin() as connection:
            for part in chunks(list(ids), CHUNK):
                result = await connection.execute(
                    update(DELIVERIES)
                    .where(
                        DELIVERIES.c.id.in_(part),
                        DELIVERIES.c.status.in_((Status.QUEUED, Status.PENDING, Status.FAILED)),
                    )
                    .values(status=Status.CANCELLED, next_attempt_at=None)
                )
                cancelled += int(result.rowcount)
        return cancelled

    async def queued(self, recipient: str, before: datetime) -> list[tuple[int, Alert]]:
        """The deliveries queued for ``recipient``'s digest, of alerts detected before
        ``before``, oldest first."""
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(DELIVERIES.c.id, DELIVERIES.c.alert)
                .where(
                    DELIVERIES.c.recipient == recipient,
                    DELIVERIES.c.status == Status.QUEUED,
                    DELIVERIES.c.detected_at < before,
                )
                .order_by(DELIVERIES.c.id)
            )
            return [(row.id, alert_from_dict(row.alert)) for row in result]

    async def claim_digest(
        self, recipient: str, day: date, message_id: str, now: datetime, stale_before: datetime
    ) -> DigestClaim | None:
        """Claim ``recipient``'s digest of ``day`` to send now: if it has no row yet, if a
        retry is due, or if it was left ``sending`` by a notifier that stopped; else
        ``None`` (sent, empty, failed, or not due)."""
        async with self.engine.begin() as connection:
            inserted = await connection.execute(
                self._insert(DIGESTS)
                .values(
                    recipient=recipient,
                    local_date=day,
                    message_id=message_id,
                    status=Status.SENDING,
                    attempts=0,
                    alerts=0,
                    created_at=now,
                    claimed_at=now,
                )
                .on_conflict_do_nothing(index_elements=["recipient", "local_date"])
                .returning(DIGESTS.c.id)
            )
            row_id = inserted.scalar()
            if row_id is not None:
                return DigestClaim(row_id, recipient, day, message_id, 0, False)
            key = and_(DIGESTS.c.recipient == recipient, DIGESTS.c.local_date == day)
            stale = and_(DIGESTS.c.status == Status.SENDING, DIGESTS.c.claimed_at < stale_before)
            waiting = and_(DIGESTS.c.status == Status.PENDING, DIGESTS.c.next_attempt_at <= now)
            found = (
                await connection.execute(
                    select(DIGESTS.c.id, DIGESTS.c.status, DIGESTS.c.attempts).where(
                        key, or_(stale, waiting)
                    )
                )
            ).first()
            if found is None:
                return None
            updated = await connection.execute(
                update(DIGESTS)
                .where(DIGESTS.c.id == found.id, DIGESTS.c.status == found.status)
                .values(status=Status.SENDING, claimed_at=now)
            )
            if not updated.rowcount:
                return None
            resent = found.status == Status.SENDING
            return DigestClaim(found.id, recipient, day, message_id, found.attempts, resent)

    async def record_digest(
        self,
        claim: DigestClaim,
        included: Sequence[int],
        now: datetime,
        *,
        sent: bool,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """Write what a claimed digest came to: ``sent`` (its ``included`` deliveries are
        then delivered, carried by its message), empty (not sent, nothing to say), or an
        ``error`` with the next try (``None``: failed for good)."""
        async with self.engine.begin() as connection:
            if error is None:
                status = Status.DELIVERED if sent else Status.EMPTY
                values: dict[str, Any] = {"status": status, "sent_at": now if sent else None}
            else:
                status = Status.FAILED if retry_at is None else Status.PENDING
                values = {"status": status, "last_error": error[:ERROR_LENGTH]}
            await connection.execute(
                update(DIGESTS)
                .where(DIGESTS.c.id == claim.id)
                .values(
                    attempts=DIGESTS.c.attempts + (1 if sent or error else 0),
                    alerts=len(included),
                    claimed_at=None,
                    next_attempt_at=retry_at,
                    **values,
                )
            )
            if not sent:
                return
            for part in chunks(list(included), CHUNK):
                await connection.execute(
                    update(DELIVERIES)
                    .where(DELIVERIES.c.id.in_(part), DELIVERIES.c.status == Status.QUEUED)
                    .values(
                        status=Status.DELIVERED,
                        attempts=DELIVERIES.c.attempts + 1,
                        delivered_at=now,
                        last_attempt_at=now,
                        digest_on=claim.day,
                        message_id=claim.message_id,
                    )
                )

    async def counts(self) -> dict[tuple[str, str], int]:
        """Rows of ``deliveries`` per (recipient, status): the ledger's size."""
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(DELIVERIES.c.recipient, DELIVERIES.c.status, func.count()).group_by(
                    DELIVERIES.c.recipient, DELIVERIES.c.status
                )
            )
            return {(row[0], row[1]): int(row[2]) for row in result}


def _stale(stale_before: datetime) -> Any:
    return and_(DELIVERIES.c.status == Status.SENDING, DELIVERIES.c.claimed_at < stale_before)


def _claim(row: Any, *, resent: bool) -> Claim:
    return Claim(
        id=row.id,
        alert=alert_from_dict(row.alert),
        recipient=row.recipient,
        message_id=row.message_id,
        attempts=row.attempts,
        resent=resent,
        corrects=row.corrects,
    )
