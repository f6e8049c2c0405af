"""products

Revision ID: a1b2c3d4e5f6
Revises:
Create Date: 2026-10-02 09:14:11.020311

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "a1b2c3d4e5f6"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():  # type: ignore[no-untyped-def]
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade():  # type: ignore[no-untyped-def]
    op.drop_table("products")
