"""approval revocation

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('approvals', sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('approvals', sa.Column('revoked_by', sa.String(length=200), nullable=True))
    op.add_column('approvals', sa.Column('revoke_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('approvals') as batch:
        batch.drop_column('revoke_reason')
        batch.drop_column('revoked_by')
        batch.drop_column('revoked_at')
