"""The notifier's delivery ledger: ``deliveries`` and ``digests``.

One row per (alert, recipient) and one per (recipient, local date) of a digest, so an
alert re-sent by a worker, re-read after a rebalance or redelivered after a crash is
recognised and not delivered again.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from mhst_tracker.adapters.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the two ledger tables and their indexes."""
    op.create_table(
        "deliveries",
        sa.Column("id", _KEY, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("team_id", sa.String(64), nullable=True),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("detected_at", UTCDateTime(), nullable=False),
        sa.Column("alert", sa.JSON(), nullable=False),
        sa.Column("corrects", sa.String(64), nullable=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("digest_on", sa.Date(), nullable=True),
        sa.Column("last_error", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("alert_id", "recipient", name="uq_deliveries_alert_id_recipient"),
    )
    op.create_index(
        "ix_deliveries_status_next_attempt_at", "deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_deliveries_recipient_status_detected_at",
        "deliveries",
        ["recipient", "status", "detected_at"],
    )
    op.create_table(
        "digests",
        sa.Column("id", _KEY, primary_key=True, autoincrement=True),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("alerts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_digests"),
        sa.UniqueConstraint("recipient", "local_date", name="uq_digests_recipient_local_date"),
    )


def downgrade() -> None:
    """Drop the ledger."""
    op.drop_table("digests")
    op.drop_table("deliveries")
