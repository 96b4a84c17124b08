"""The initial store: events, referrals, alerts and rejected events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from mhst_tracker.adapters.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the four tables and their indexes."""
    op.create_table(
        "events",
        sa.Column("id", _KEY, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("referral_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("team_id", sa.String(64), nullable=True),
        sa.Column("school_id", sa.String(64), nullable=True),
        sa.Column("payload", _JSON, nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("source_partition", sa.Integer(), nullable=True),
        sa.Column("source_offset", sa.BigInteger(), nullable=True),
        sa.Column("source_line", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    )
    op.create_index("ix_events_referral_id", "events", ["referral_id"])

    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.String(64), nullable=False),
        sa.Column("team_id", sa.String(64), nullable=True),
        sa.Column("school_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=True),
        sa.Column("days_waited", sa.Integer(), nullable=True),
        sa.Column("dna_count", sa.Integer(), nullable=False),
        sa.Column("flags", _JSON, nullable=False),
        sa.Column("stages", _JSON, nullable=False),
        sa.Column("at_risk_stages", _JSON, nullable=False),
        sa.Column("next_stage", sa.String(64), nullable=True),
        sa.Column("next_due_on", sa.Date(), nullable=True),
        sa.Column("next_deadline", UTCDateTime(), nullable=True),
        sa.Column("off_list_on", sa.Date(), nullable=True),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("clock", _JSON, nullable=False),
        sa.Column("as_of", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("referral_id", name="pk_referrals"),
    )
    op.create_index(
        "ix_referrals_team_status_next_due", "referrals", ["team_id", "status", "next_due_on"]
    )
    op.create_index("ix_referrals_team_received_on", "referrals", ["team_id", "received_on"])
    op.create_index("ix_referrals_team_off_list_on", "referrals", ["team_id", "off_list_on"])
    op.create_index("ix_referrals_school_received_on", "referrals", ["school_id", "received_on"])

    op.create_table(
        "alerts",
        sa.Column("id", _KEY, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("referral_id", sa.String(64), nullable=False),
        sa.Column("team_id", sa.String(64), nullable=True),
        sa.Column("school_id", sa.String(64), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("days_waited", sa.Integer(), nullable=False),
        sa.Column("detected_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("delivery_status", sa.String(16), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("source_partition", sa.Integer(), nullable=True),
        sa.Column("source_offset", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("alert_id", name="uq_alerts_alert_id"),
    )
    op.create_index("ix_alerts_referral_id", "alerts", ["referral_id"])
    op.create_index("ix_alerts_team_detected_at", "alerts", ["team_id", "detected_at"])
    op.create_index("ix_alerts_delivery_status", "alerts", ["delivery_status"])

    op.create_table(
        "rejected_events",
        sa.Column("id", _KEY, primary_key=True, autoincrement=True),
        sa.Column("reject_key", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("source_partition", sa.Integer(), nullable=True),
        sa.Column("source_offset", sa.BigInteger(), nullable=True),
        sa.Column("source_line", sa.Integer(), nullable=True),
        sa.Column("rejected_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rejected_events"),
        sa.UniqueConstraint("reject_key", name="uq_rejected_events_reject_key"),
    )
    op.create_index("ix_rejected_events_rejected_at", "rejected_events", ["rejected_at"])


def downgrade() -> None:
    """Drop everything the upgrade created."""
    for table in ("rejected_events", "alerts", "referrals", "events"):
        op.drop_table(table)
