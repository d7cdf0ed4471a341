"""ONNX runtime: verdict, speed-up and runtime override per version; ONNX bytes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 06:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "runtime", sa.String(length=16), server_default="auto", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "runtime_verdict",
                sa.String(length=32),
                server_default="unchecked",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("runtime_reason", sa.Text(), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("runtime_report", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("onnx_speedup", sa.Double(), nullable=True))
        batch_op.add_column(
            sa.Column("onnx_sha256", sa.String(length=64), nullable=True)
        )
    with op.batch_alter_table("model_artifacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("onnx", sa.LargeBinary(), nullable=True))


def downgrade():
    with op.batch_alter_table("model_artifacts", schema=None) as batch_op:
        batch_op.drop_column("onnx")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("onnx_sha256")
        batch_op.drop_column("onnx_speedup")
        batch_op.drop_column("runtime_report")
        batch_op.drop_column("runtime_reason")
        batch_op.drop_column("runtime_verdict")
        batch_op.drop_column("runtime")
