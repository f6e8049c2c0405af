"""create notes

Revision ID: 3f1c2a
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "3f1c2a"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("text", sa.String, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notes")
