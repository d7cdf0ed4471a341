"""CSV prediction jobs shared by every worker

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 05:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "prediction_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("done_rows", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("result", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_prediction_jobs_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_jobs")),
    )
    with op.batch_alter_table("prediction_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_prediction_jobs_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_prediction_jobs_user_id"), ["user_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("prediction_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prediction_jobs_user_id"))
        batch_op.drop_index(batch_op.f("ix_prediction_jobs_created_at"))

    op.drop_table("prediction_jobs")
