"""The referrals' clock snapshot as ``json``, not ``jsonb``, on PostgreSQL.

``clock`` is written whole at every refresh of a referral and read whole by the store (it
is the input of every "as of" answer); no query looks inside it. ``jsonb`` parsed each
snapshot (about 700 bytes) into its binary form on the way in and printed it back to text
on the way out, which cost PostgreSQL more than the rest of the row; ``json`` keeps the
text as written, after checking it is JSON. The columns that dashboards and analysts query
by field (the events' ``payload``, the referrals' ``flags``, ``stages`` and
``at_risk_stages``) stay ``jsonb``. SQLite stores JSON as text either way.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """``jsonb`` to ``json`` (PostgreSQL only)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column(
        "referrals", "clock", type_=sa.JSON(), existing_type=JSONB(), postgresql_using="clock::json"
    )


def downgrade() -> None:
    """``json`` back to ``jsonb`` (PostgreSQL only)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column(
        "referrals",
        "clock",
        type_=JSONB(),
        existing_type=sa.JSON(),
        postgresql_using="clock::jsonb",
    )
