"""Micro-batching settings per model

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 08:45:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_max_rows", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("batch_max_wait_ms", sa.Double(), nullable=True))


def downgrade():
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("batch_max_wait_ms")
        batch_op.drop_column("batch_max_rows")
