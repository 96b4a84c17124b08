"""The store's tables, as SQLAlchemy 2 declarative models (PostgreSQL and SQLite).

* ``events``: every valid event ever received, append-only, unique by ``event_id``, with the
  raw payload, when the tracker received it (the Kafka message time or the import time), when
  it was recorded, and where it came from (topic/partition/offset or file/line).
* ``referrals``: the engine's :class:`~mhst_tracker.domain.clock.ReferralState` of each
  referral as of ``as_of`` (the moment of its last refresh), with the clock snapshot it was
  computed from. Columns the queries filter or sort on are promoted; the stage details are a
  JSON object in the replay shape.
* ``alerts``: every alert read from the alerts topic, unique by ``alert_id``, with its
  delivery status.
* ``rejected_events``: input that broke the event contract, with the reason, the raw bytes
  and where it came from; ``reject_key`` makes re-reading the same input idempotent.
* ``deliveries`` and ``digests``: the notifier's delivery ledger (one row per alert and
  recipient, one per recipient's digest of a day), written by
  :mod:`~mhst_tracker.adapters.store.ledger`.
* ``api_tokens``: the ingestion API's tokens, one per source system: the SHA-256 of the
  token (never the token), the source's name, the teams it may send events for, and when it
  was created and revoked.

Times are stored in UTC (:class:`UTCDateTime` gives aware datetimes back on both databases).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC; SQLite keeps no offset, so it is restored on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError("the store only takes timezone-aware datetimes")
        moment = value.astimezone(UTC)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json = JSON().with_variant(JSONB(), "postgresql")
"""A JSON document to query by field: JSONB on PostgreSQL, JSON text on SQLite."""

JsonText = JSON()
"""A JSON document written and read whole: ``json`` on PostgreSQL (the text as written,
checked to be JSON: no parsing into ``jsonb`` on the way in nor printing on the way out),
JSON text on SQLite."""

Key = BigInteger().with_variant(Integer(), "sqlite")
"""A surrogate key (SQLite only autoincrements ``INTEGER PRIMARY KEY``)."""


class Base(DeclarativeBase):
    """The store's declarative base and metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class EventRow(Base):
    """One valid event (append-only)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    referral_id: Mapped[str] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    team_id: Mapped[str | None] = mapped_column(String(64))
    school_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(256))
    source_partition: Mapped[int | None] = mapped_column(Integer)
    source_offset: Mapped[int | None] = mapped_column(BigInteger)
    source_line: Mapped[int | None] = mapped_column(Integer)


class ReferralRow(Base):
    """The engine's state of one referral as of ``as_of``, and the clock it came from."""

    __tablename__ = "referrals"
    __table_args__ = (
        Index("ix_referrals_team_status_next_due", "team_id", "status", "next_due_on"),
        Index("ix_referrals_team_received_on", "team_id", "received_on"),
        Index("ix_referrals_team_off_list_on", "team_id", "off_list_on"),
        Index("ix_referrals_school_received_on", "school_id", "received_on"),
    )

    referral_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str | None] = mapped_column(String(64))
    school_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    received_on: Mapped[date | None] = mapped_column(Date)
    days_waited: Mapped[int | None] = mapped_column(Integer)
    dna_count: Mapped[int] = mapped_column(Integer)
    flags: Mapped[list[str]] = mapped_column(Json)
    stages: Mapped[dict[str, Any]] = mapped_column(Json)
    at_risk_stages: Mapped[list[str]] = mapped_column(Json)
    next_stage: Mapped[str | None] = mapped_column(String(64))
    next_due_on: Mapped[date | None] = mapped_column(Date)
    next_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    off_list_on: Mapped[date | None] = mapped_column(Date)
    profile: Mapped[str] = mapped_column(String(64))
    clock: Mapped[dict[str, Any]] = mapped_column(JsonText)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertRow(Base):
    """One alert, as published on the alerts topic, and what became of it."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_team_detected_at", "team_id", "detected_at"),
        Index("ix_alerts_delivery_status", "delivery_status"),
    )

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(64))
    referral_id: Mapped[str] = mapped_column(String(64), index=True)
    team_id: Mapped[str | None] = mapped_column(String(64))
    school_id: Mapped[str | None] = mapped_column(String(64))
    due_on: Mapped[date] = mapped_column(Date)
    days_waited: Mapped[int] = mapped_column(Integer)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivery_status: Mapped[str] = mapped_column(String(16))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(256))
    source_partition: Mapped[int | None] = mapped_column(Integer)
    source_offset: Mapped[int | None] = mapped_column(BigInteger)


class RejectedEventRow(Base):
    """Input that broke the event contract, kept with its reason and raw bytes."""

    __tablename__ = "rejected_events"
    __table_args__ = (Index("ix_rejected_events_rejected_at", "rejected_at"),)

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    reject_key: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(256))
    source_partition: Mapped[int | None] = mapped_column(Integer)
    source_offset: Mapped[int | None] = mapped_column(BigInteger)
    source_line: Mapped[int | None] = mapped_column(Integer)
    rejected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeliveryRow(Base):
    """The delivery ledger: what became of one alert for one recipient of the notifier.

    Unique by (``alert_id``, ``recipient``): a re-sent or re-read alert finds its row and
    is not delivered again. ``alert`` is the alert's message body (the retries and digests
    render from it); ``message_id`` is the message that carried it (the delivery's own id,
    or its digest's); ``corrects`` is the breach a withdrawal corrects.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "recipient", name="uq_deliveries_alert_id_recipient"),
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_deliveries_recipient_status_detected_at", "recipient", "status", "detected_at"),
    )

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    team_id: Mapped[str | None] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(64))
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    alert: Mapped[dict[str, Any]] = mapped_column(JsonText)
    corrects: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    digest_on: Mapped[date | None] = mapped_column(Date)
    last_error: Mapped[str | None] = mapped_column(String(256))


class DigestRow(Base):
    """One recipient's digest of one local date, sent once."""

    __tablename__ = "digests"
    __table_args__ = (
        UniqueConstraint("recipient", "local_date", name="uq_digests_recipient_local_date"),
    )

    id: Mapped[int] = mapped_column(Key, primary_key=True, autoincrement=True)
    recipient: Mapped[str] = mapped_column(String(64))
    local_date: Mapped[date] = mapped_column(Date)
    message_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    alerts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(256))


class ApiTokenRow(Base):
    """One ingestion API token: its hash, source system and teams."""

    __tablename__ = "api_tokens"

    token_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(64))
    teams: Mapped[list[str]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
