"""sealed params

Revision ID: 5e41ed9a7c3b
Revises: 237cb568d8e2
Create Date: 2026-12-05 18:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e41ed9a7c3b"
down_revision: str | Sequence[str] | None = "237cb568d8e2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed_params", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("sealed_params")
