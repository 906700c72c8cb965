"""The systems measured side by side, in table order; `make(key, ctx, trial)` builds one."""

from __future__ import annotations

from bench.variants.base import Context, Variant

LABELS = {
    "stox-rmq-sqlite": "Stox on RabbitMQ, SQLite",
    "stox-rmq-pg": "Stox on RabbitMQ, PostgreSQL",
    "stox-embedded": "Stox embedded (memory bus, SQLite)",
    "stox-rmq-sqlite-progress": "Stox on RabbitMQ, SQLite, 3 progress reports per step",
    "stox-embedded-progress": "Stox embedded, 3 progress reports per step",
    "stox-embedded-ref": "Stox embedded, reference services",
    "stox-embedded-ref-quiet": "Stox embedded, reference services, progress off",
    "celery": "Celery 5 chain",
    "dramatiq": "Dramatiq pipeline",
    "raw-aio-pika": "Raw aio-pika floor",
    "dbos-sqlite": "DBOS Transact, SQLite (in process)",
    "dbos-pg": "DBOS Transact, PostgreSQL (in process)",
}
VARIANTS = tuple(LABELS)
BASELINE = "celery"
# Progress reports per step in the `-progress` variants: as many as the reference AI service
# sends (the image service sends one per image, SEO two), each with a small partial.
PROGRESS = 3


def make(key: str, ctx: Context, trial: str) -> Variant:
    from bench.variants.dbos import DbosVariant
    from bench.variants.frameworks import CeleryVariant, DramatiqVariant
    from bench.variants.rawpika import RawPikaVariant
    from bench.variants.stox import StoxVariant

    variant: Variant
    if key == "stox-rmq-sqlite":
        variant = StoxVariant(ctx, trial, bus="rabbitmq", database="sqlite")
    elif key == "stox-rmq-pg":
        variant = StoxVariant(ctx, trial, bus="rabbitmq", database="postgresql")
    elif key == "stox-embedded":
        variant = StoxVariant(ctx, trial, bus="memory", database="sqlite")
    elif key == "stox-rmq-sqlite-progress":
        variant = StoxVariant(ctx, trial, bus="rabbitmq", database="sqlite", progress=PROGRESS)
    elif key == "stox-embedded-progress":
        variant = StoxVariant(ctx, trial, bus="memory", database="sqlite", progress=PROGRESS)
    elif key in ("stox-embedded-ref", "stox-embedded-ref-quiet"):
        variant = StoxVariant(
            ctx, trial, bus="memory", database="sqlite", reference=True,
            report_progress=key == "stox-embedded-ref",
        )
    elif key == "celery":
        variant = CeleryVariant(ctx, trial)
    elif key == "dramatiq":
        variant = DramatiqVariant(ctx, trial)
    elif key == "raw-aio-pika":
        variant = RawPikaVariant(ctx, trial)
    elif key == "dbos-sqlite":
        variant = DbosVariant(ctx, trial, database="sqlite")
    elif key == "dbos-pg":
        variant = DbosVariant(ctx, trial, database="postgresql")
    else:
        raise KeyError(f"unknown variant {key!r}; choose from {', '.join(VARIANTS)}")
    variant.key, variant.label = key, LABELS[key]
    return variant
