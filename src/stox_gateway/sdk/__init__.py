"""The worker SDK: write a step service as one async function.

A service needs nothing but the step message; the SDK consumes it from the bus, calls the
handler, reports the outcome to the gateway (over the bus, HTTP or, later, gRPC) and acks only
after the report was accepted. It imports neither FastAPI nor SQLAlchemy.

    from stox_gateway.sdk import StepContext, Worker

    async def handle(ctx: StepContext) -> dict:
        return {"echo": ctx.product["name"]}
"""

from stox_gateway.sdk.context import StepContext, current_step
from stox_gateway.sdk.errors import NonRetryable, Retry, StepError

__all__ = ["NonRetryable", "Retry", "StepContext", "StepError", "current_step"]
