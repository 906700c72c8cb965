"""Prometheus metrics of one gateway process, on a registry of its own (no globals).

Counted where the facts are: the engine reports every committed transition, the relay every
publish, the hub its connections, a middleware every HTTP request. `/metrics` renders them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stox_gateway.bus.port import QueueCounts
from stox_gateway.engine.models import UpdateType
from stox_gateway.engine.transition import Transition

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_STEPS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.workflows_started = Counter(
            "stox_workflows_started_total", "Workflows started", ["type"], registry=registry
        )
        self.workflows_completed = Counter(
            "stox_workflows_completed_total", "Workflows completed", ["type"], registry=registry
        )
        self.workflows_failed = Counter(
            "stox_workflows_failed_total", "Workflows failed", ["type"], registry=registry
        )
        self.workflows_cancelled = Counter(
            "stox_workflows_cancelled_total", "Workflows cancelled", ["type"], registry=registry
        )
        self.step_duration = Histogram(
            "stox_step_duration_seconds",
            "From a step's (last) start to its completion",
            ["step_type"],
            buckets=_STEPS,
            registry=registry,
        )
        self.step_retries = Counter(
            "stox_step_retries_total", "Step attempts retried", ["step_type"], registry=registry
        )
        self.refused_reports = Counter(
            "stox_reports_refused_total",
            "Service reports and progress refused for a missing or wrong service token",
            registry=registry,
        )
        self.late_reports = Counter(
            "stox_late_reports_total",
            "Step reports for an attempt already over (after a timeout, a failure or a cancel)",
            ["step_type"],
            registry=registry,
        )
        self.outbox_backlog = Gauge(
            "stox_outbox_backlog", "Outbox rows not yet published", registry=registry
        )
        self.outbox_oldest_age = Gauge(
            "stox_outbox_oldest_age_seconds",
            "Age of the oldest due outbox row",
            registry=registry,
        )
        self.bus_publish = Histogram(
            "stox_bus_publish_seconds",
            "Publish until the broker's confirm",
            buckets=_FAST,
            registry=registry,
        )
        self.websocket_connections = Gauge(
            "stox_websocket_connections",
            "Open WebSocket and WatchWorkflow streams",
            registry=registry,
        )
        self.websocket_dropped = Counter(
            "stox_websocket_dropped_slow_total",
            "Subscribers dropped for reading too slowly",
            registry=registry,
        )
        self.updates_received = Counter(
            "stox_bus_updates_received",
            "gateway.update messages this replica received (only those its clients follow)",
            registry=registry,
        )
        self.update_bindings = Gauge(
            "stox_bus_update_bindings",
            "Update buckets this replica's update queue is bound to",
            registry=registry,
        )
        self.http_requests = Histogram(
            "stox_http_request_duration_seconds",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            buckets=_FAST,
            registry=registry,
        )

        self.step_queue_ready = Gauge(
            "stox_step_queue_ready",
            "Step messages waiting in the step type's queue (not yet delivered)",
            ["step_type"],
            registry=registry,
        )
        self.step_queue_consumers = Gauge(
            "stox_step_queue_consumers",
            "Consumers (service workers) on the step type's queue",
            ["step_type"],
            registry=registry,
        )

    def observe_queues(self, counts: Mapping[str, QueueCounts]) -> None:
        for step_type, found in counts.items():
            self.step_queue_ready.labels(step_type).set(found.ready)
            self.step_queue_consumers.labels(step_type).set(found.consumers)

    def observe(self, transition: Transition, now: datetime) -> None:
        """Count what a committed transition did."""
        wf = transition.workflow
        for update in transition.updates:
            kind = update.type
            if kind is UpdateType.WORKFLOW_STARTED:
                self.workflows_started.labels(wf.type).inc()
            elif kind is UpdateType.WORKFLOW_COMPLETED:
                self.workflows_completed.labels(wf.type).inc()
            elif kind is UpdateType.WORKFLOW_FAILED:
                self.workflows_failed.labels(wf.type).inc()
            elif kind is UpdateType.WORKFLOW_CANCELLED:
                self.workflows_cancelled.labels(wf.type).inc()
            elif kind is UpdateType.STEP_RETRYING:
                self.step_retries.labels(update.data.get("step_type", "")).inc()
            elif kind is UpdateType.STEP_COMPLETED:
                step = wf.step(update.data.get("step_id", ""))
                if step is not None and step.started_at is not None:
                    elapsed = (now - step.started_at).total_seconds()
                    self.step_duration.labels(step.type).observe(max(elapsed, 0.0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
