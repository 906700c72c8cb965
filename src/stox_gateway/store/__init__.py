"""Durable state: workflows, steps, the event log and the outbox (SQLite or PostgreSQL)."""

from stox_gateway.store.port import OutboxRow, WorkflowStore

__all__ = ["OutboxRow", "WorkflowStore"]
