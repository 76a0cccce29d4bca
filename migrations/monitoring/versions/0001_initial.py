"""monitoring store: decisions, outcomes, windows, references, policies, triggers, label
counters, processed events and the outbox

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("window_index", sa.Integer, nullable=False),
        sa.Column("route", sa.String(20), nullable=False),
        sa.Column("made_at", tz, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("decision", sa.String(40), nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
    )
    op.create_index("ix_decisions_window", "decisions", ["model", "version", "window_index"])
    op.create_index("ix_decisions_time", "decisions", ["model", "made_at"])
    op.create_table(
        "outcomes",
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("observed_at", tz, nullable=False),
        sa.Column("recorded_at", tz, nullable=False),
    )
    op.create_table(
        "windows",
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("index", sa.Integer, primary_key=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("start", tz, nullable=False),
        sa.Column("end", tz),
        sa.Column("decisions", sa.Integer, nullable=False),
        sa.Column("labelled", sa.Integer, nullable=False),
        sa.Column("closed_by", sa.String(10)),
        sa.Column("labels_seen", sa.Integer, nullable=False),
        sa.Column("report", sa.JSON),
    )
    op.create_index("ix_windows_state", "windows", ["state"])
    op.create_table(
        "references",
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("protected_attributes", sa.JSON, nullable=False),
        sa.Column("fetched_at", tz, nullable=False),
    )
    op.create_table(
        "policies",
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("updated_at", tz, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "triggers",
        sa.Column("workflow_id", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("input", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("detail", sa.String(1000)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", tz, nullable=False),
    )
    op.create_index("ix_triggers_status", "triggers", ["status"])
    op.create_table(
        "label_counters",
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("positives", sa.Integer, nullable=False),
    )
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("processed_at", tz, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("traceparent", sa.String(64)),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("sent_at", tz),
    )
    op.create_index("ix_outbox_unsent", "outbox", ["sent_at", "id"])


def downgrade() -> None:
    for table in ("outbox", "processed_events", "label_counters", "triggers", "policies",
                  "references", "windows", "outcomes", "decisions"):
        op.drop_table(table)
