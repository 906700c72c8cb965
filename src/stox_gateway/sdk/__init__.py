"""The worker SDK: write a step service as one async function.

A service needs nothing but the step message; the SDK consumes it from the bus, calls the
handler, reports the outcome to the gateway (over the bus, HTTP or gRPC) and acks only after
the report was accepted. It imports neither FastAPI nor SQLAlchemy.

The handler gets a `StepContext` (the product, the results of the steps before it by type)
and returns the step's result; raising `Retry` fails this attempt (retried with backoff),
`NonRetryable` fails the step for good; both take a sentence for people and an optional
`detail=` (the technical text, shown folded away). An attempt whose deadline passed before it
was received is skipped, not run. Serve it with `run_worker` in a process of its own, or
with `stox-gateway worker translation --handler translation:translate`:

    import asyncio

    from stox_gateway.sdk import NonRetryable, StepContext, run_worker


    async def translate(ctx: StepContext) -> dict:
        name = ctx.product.get("name")
        if not name:
            raise NonRetryable("the product has no name to translate")
        return {"name_fr": f"{name} (fr)", "after": sorted(ctx.results)}


    if __name__ == "__main__":
        asyncio.run(run_worker("translation", translate))
"""

from stox_gateway.sdk.context import StepContext, current_step
from stox_gateway.sdk.errors import NonRetryable, Retry, StepError
from stox_gateway.sdk.runner import run_worker
from stox_gateway.sdk.worker import StepHandler, Worker

__all__ = [
    "NonRetryable",
    "Retry",
    "StepContext",
    "StepError",
    "StepHandler",
    "Worker",
    "current_step",
    "run_worker",
]
