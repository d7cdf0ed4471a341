"""feature drift: reference distributions, live counts, windows and statistics

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 10:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _version_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["version_id"],
        ["model_versions.id"],
        name=op.f(f"fk_{table}_version_id_model_versions"),
    )


def upgrade():
    op.create_table(
        "drift_references",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _version_fk("drift_references"),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_drift_references")),
    )
    op.create_table(
        "drift_counts",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("feature", sa.Integer(), nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        _version_fk("drift_counts"),
        sa.PrimaryKeyConstraint(
            "version_id", "hour", "feature", "bin", name=op.f("pk_drift_counts")
        ),
    )
    op.create_table(
        "drift_windows",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("computed", sa.BigInteger(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        _version_fk("drift_windows"),
        sa.PrimaryKeyConstraint(
            "version_id", "kind", "start", name=op.f("pk_drift_windows")
        ),
    )
    op.create_table(
        "drift_stats",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("feature", sa.Integer(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("psi", sa.Double(), nullable=False),
        sa.Column("pvalue", sa.Double(), nullable=True),
        sa.Column("test", sa.String(length=8), nullable=False),
        _version_fk("drift_stats"),
        sa.PrimaryKeyConstraint(
            "version_id", "kind", "start", "feature", name=op.f("pk_drift_stats")
        ),
    )


def downgrade():
    op.drop_table("drift_stats")
    op.drop_table("drift_windows")
    op.drop_table("drift_counts")
    op.drop_table("drift_references")
