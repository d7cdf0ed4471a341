"""Prediction deadline per model

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 13:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("predict_timeout_seconds", sa.Double(), nullable=True)
        )


def downgrade():
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("predict_timeout_seconds")
