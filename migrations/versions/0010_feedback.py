"""Feedback on predictions; request logs keep what was predicted

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 10:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("request_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("predictions", sa.JSON(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_request_logs_request_id"), ["request_id"], unique=False
        )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("label", sa.JSON(), nullable=True),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint(
            "model_name", "request_id", "row", name=op.f("uq_feedback_model_name")
        ),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_feedback_created_at"), ["created_at"], unique=False
        )


def downgrade():
    op.drop_table("feedback")
    with op.batch_alter_table("request_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_logs_request_id"))
        batch_op.drop_column("predictions")
