"""`GET /api/v1/pipelines`: the workflow types this gateway runs, as graphs (DESIGN §10)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from stox_gateway.api.deps import current_caller, current_runtime
from stox_gateway.api.responses import JsonResponse
from stox_gateway.auth.guard import Caller
from stox_gateway.runtime import Runtime
from stox_gateway.schemas import ErrorResponse, PipelinesView

router = APIRouter(prefix="/api/v1", tags=["pipelines"])


@router.get(
    "/pipelines",
    response_model=PipelinesView,
    responses={code: {"model": ErrorResponse} for code in (401, 429, 503)},
)
async def pipelines(
    rt: Annotated[Runtime, Depends(current_runtime)],
    _who: Annotated[Caller, Depends(current_caller)],
) -> JsonResponse:
    """Every pipeline in configuration order, and the one an upload runs when it names none."""
    definitions = rt.engine.definitions
    return JsonResponse(
        {
            "default_type": definitions.default_type,
            "pipelines": [d.to_dict() for d in definitions],
        }
    )
