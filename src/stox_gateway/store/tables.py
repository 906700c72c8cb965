"""The schema, in SQLAlchemy Core. The same tables serve SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, whatever the database keeps (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC-aware ones")
        # SQLite's DATETIME keeps the wall time and drops the zone: UTC it is, everywhere.
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("product", Json, nullable=False),
    sa.Column("correlation_id", sa.String(128), nullable=False),
    sa.Column("owner", sa.String(128), nullable=True),
    sa.Column("seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("completed_at", UTCDateTime, nullable=True),
    # The definition it started with (`WorkflowDefinition.to_dict()`); a migration filled
    # the rows from before; written for every new one.
    sa.Column("definition", Json, nullable=True),
    sa.Index(None, "created_at"),
    sa.Index(None, "status", "created_at"),
    sa.Index(None, "owner", "created_at"),
)

steps = sa.Table(
    "workflow_steps",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "workflow_id",
        sa.String(36),
        sa.ForeignKey("workflows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("timeout_seconds", sa.Float, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("completed_at", UTCDateTime, nullable=True),
    sa.Column("deadline_at", UTCDateTime, nullable=True),
    sa.Column("result", Json, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # The running attempt's latest progress report (DESIGN §11), for the status answer.
    sa.Column("progress", Json, nullable=True),
    sa.UniqueConstraint("workflow_id", "position"),
    sa.Index(None, "deadline_at"),
)

# The event log: every WebSocket update, so a client can catch up from any `seq`.
workflow_events = sa.Table(
    "workflow_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "workflow_id",
        sa.String(36),
        sa.ForeignKey("workflows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("timestamp", UTCDateTime, nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.UniqueConstraint("workflow_id", "seq"),
)

# The outbox: bus messages committed with the state change that caused them (DESIGN §5).
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(36), nullable=False, unique=True),
    sa.Column("routing_key", sa.String(128), nullable=False),
    sa.Column("correlation_id", sa.String(128), nullable=True),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("headers", Json, nullable=False),
    sa.Column("mandatory", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("available_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    # A step message's attempt (`step_id`, `attempt` of its body), for the relay's deadlines.
    sa.Column("step_id", sa.String(36), nullable=True),
    sa.Column("attempt", sa.Integer, nullable=True),
    # PostgreSQL: a relay publishing the row holds it until then (its claim is committed).
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Index(
        "ix_outbox_unsent",
        "available_at",
        sqlite_where=sa.text("sent_at IS NULL"),
        postgresql_where=sa.text("sent_at IS NULL"),
    ),
    # The relay's claim (unsent, oldest id first): without it SQLite scans the whole table in
    # id order on every claim, a cost that grows with every row ever sent.
    sa.Index(
        "ix_outbox_unsent_id",
        "id",
        sqlite_where=sa.text("sent_at IS NULL"),
        postgresql_where=sa.text("sent_at IS NULL"),
    ),
)

# The list's search index is no table of this metadata: it differs by database, and each
# store adapter makes its own (`search_index_ddl`, migration 0008). Comparisons of the schema
# with this metadata (autogenerate, tests) leave these names alone.
SEARCH_INDEX_NAMES = ("ix_workflows_search", "workflow_search")


def outside_metadata(name: str | None, kind: str, *_: Any) -> bool:
    """Alembic's `include_name`: False for the search index's objects (FTS5's shadow tables
    included), which this metadata does not declare."""
    return not (name and name.startswith(SEARCH_INDEX_NAMES))


# Idempotency-Key of uploads: the same key and body give the same workflow.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("scope", sa.String(128), primary_key=True),  # the owner, or "" when anonymous
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column(
        "workflow_id",
        sa.String(36),
        sa.ForeignKey("workflows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# -- the reference auth service ---------------------------------------------------------------

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("first_name", sa.String(100), nullable=False),
    sa.Column("last_name", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Refresh tokens are kept as hashes; one family per login, rotated on every use.
refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("family_id", sa.String(36), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Index(None, "family_id"),
)

# -- media (media.store: database) and coordination --------------------------------------------

# A stored file by name (`thumbnails/<workflow>_0_<hash>.jpg`, an upload's fresh name); its
# bytes are chunks of one blob, so a replaced file's readers never see the new and old mixed.
media_objects = sa.Table(
    "media_objects",
    metadata,
    sa.Column("name", sa.String(512), primary_key=True),
    sa.Column("blob_id", sa.String(36), nullable=False, unique=True),
    sa.Column("workflow_id", sa.String(36), nullable=True),  # owner: pruned with it
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("chunks", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "workflow_id"),
)

media_chunks = sa.Table(
    "media_chunks",
    metadata,
    sa.Column("blob_id", sa.String(36), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

# A job one replica at a time runs (retention): a row, not a session lock, so it holds
# through PgBouncer's transaction pooling; it lapses when its holder stops renewing it.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

# Retention finds ended workflows by status and end time, and deletes their idempotency keys
# (and PostgreSQL checks the foreign key of each deleted workflow) by workflow id.
sa.Index("ix_workflows_status_completed_at", workflows.c.status, workflows.c.completed_at)
sa.Index("ix_idempotency_keys_workflow_id", idempotency_keys.c.workflow_id)
