"""OpenTelemetry traces across HTTP, the bus, the services and gRPC.

HTTP server spans come from FastAPI's own OpenTelemetry support; this module adds the spans
of the bus (publish), the services (handle) and completions (AMQP and gRPC).

Off unless `tracing.otlp_endpoint` is set: the API's tracer is then a no-op and costs next to
nothing. The trace context travels in W3C `traceparent` headers: from an HTTP request into the
outbox rows its commit writes, from there onto the bus messages, into the service's handling,
back with its report, and into the next step's messages, so one workflow is one trace. Every
span carries the workflow's `stox.correlation_id`, so logs and traces join.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind

from stox_gateway.config.settings import TracingSettings

TRACER_NAME = "stox_gateway"

# Whether this process installed a tracer provider. Until it does, `span` and
# `trace_headers` return at once: the hot path does not pay for a no-op tracer.
_enabled = False


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def setup_tracing(settings: TracingSettings, exporter: Any = None) -> Callable[[], None]:
    """Install the SDK's tracer provider when an endpoint (or, in tests, an exporter) is given.

    Returns the function that flushes and stops it. OpenTelemetry allows one provider per
    process: the first call wins.
    """
    if exporter is None and not settings.otlp_endpoint:
        return lambda: None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        id_generator=_private_id_generator(),
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
        )
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    global _enabled
    _enabled = True
    return provider.shutdown


def _private_id_generator() -> Any:
    """Span and trace ids from a generator of their own. The SDK's default draws them from the
    `random` module's shared state, which other code in the process (a seeded simulation, a
    test's Hypothesis) must not see move."""
    import random

    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class PrivateRandomIdGenerator(IdGenerator):
        def __init__(self) -> None:
            self._random = random.Random()

        def generate_span_id(self) -> int:
            return self._random.getrandbits(64) or 1  # 0 is the invalid span id

        def generate_trace_id(self) -> int:
            return self._random.getrandbits(128) or 1

        def is_trace_id_random(self) -> bool:
            return True

    return PrivateRandomIdGenerator()


def trace_headers() -> dict[str, str]:
    """The current trace context as headers (empty when there is no active trace)."""
    carrier: dict[str, str] = {}
    if not _enabled:
        return carrier
    propagate.inject(carrier)
    return carrier


@contextlib.contextmanager
def span(
    name: str,
    *,
    headers: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    **attributes: Any,
) -> Iterator[Span]:
    """A span, continuing the trace carried by `headers` when given."""
    if not _enabled:
        yield trace.INVALID_SPAN
        return
    token = None
    if headers:
        carrier = {k: str(v) for k, v in headers.items() if isinstance(v, str | bytes)}
        token = otel_context.attach(propagate.extract(carrier))
    try:
        with tracer().start_as_current_span(name, kind=kind) as current:
            for key, value in attributes.items():
                if value is not None:
                    current.set_attribute(f"stox.{key}", value)
            yield current
    finally:
        if token is not None:
            otel_context.detach(token)
