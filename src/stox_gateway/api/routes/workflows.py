"""`/api/v1/workflow/*`: upload, status, step-completed, step-progress, list (DESIGN §3,
§11), bulk retry and cancel; `/api/v1/workflows`: the paged, filtered, searchable list of
summaries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, Query, Request

from stox_gateway.api.deps import (
    correlation_id,
    current_caller,
    current_runtime,
    require_json,
    service_caller,
)
from stox_gateway.api.errors import ApiError
from stox_gateway.api.responses import JsonResponse
from stox_gateway.auth.guard import Caller
from stox_gateway.engine.models import WorkflowStatus
from stox_gateway.facade import BulkAction, completion_from_request, progress_from_request
from stox_gateway.runtime import Runtime
from stox_gateway.schemas import (
    BulkRequest,
    BulkResult,
    ErrorResponse,
    ProductUploadRequest,
    StepCompletedRequest,
    StepCompletedResponse,
    StepProgressRequest,
    StepProgressResponse,
    UploadAccepted,
    WorkflowPageView,
    WorkflowView,
    is_url,
)
from stox_gateway.store.port import WorkflowQuery
from stox_gateway.wire import workflow_summary_to_wire

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/api/v1/workflow", tags=["workflows"])
listing = APIRouter(prefix="/api/v1/workflows", tags=["workflows"])

RuntimeDep = Annotated[Runtime, Depends(current_runtime)]
CallerDep = Annotated[Caller, Depends(current_caller)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 415, 422, 429, 503)
}


@router.post(
    "/upload",
    status_code=202,
    response_model=UploadAccepted,
    responses=_ERRORS,
    dependencies=[Depends(require_json)],
)
async def upload(
    product: ProductUploadRequest,
    request: Request,
    rt: RuntimeDep,
    who: CallerDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
) -> JsonResponse:
    """Start a workflow of `workflow_type` (default: `workflow.default_type`, an unknown one is
    `422`); its progress is pushed on `/ws`.

    With an `Idempotency-Key` header, repeating the request returns the same workflow; the
    same key with another body is `422`.
    """
    # Asked of the media store, which may be the database rather than this machine's folder.
    media = rt.media
    missing = [
        ref
        for ref in product.images
        if media is not None and not is_url(ref) and await media.open(ref) is None
    ]
    if missing:
        names = ", ".join(f"`{ref}`" for ref in missing)
        raise ApiError(
            422,
            "image_not_found",
            f"not in the media folder: {names} (upload it with POST /api/v1/media, or give a URL)",
            details=[
                {
                    "field": f"images.{product.images.index(ref)}",
                    "message": "not in the media folder",
                    "type": "image_not_found",
                    "image": ref,
                }
                for ref in missing
            ],
        )
    fields = product.model_dump(mode="json", exclude={"workflow_type"})
    fields["currency"] = product.currency or rt.settings.shop.currency
    workflow = await rt.engine.create(
        fields,
        workflow_type=product.workflow_type,
        correlation_id=correlation_id(request) or None,
        owner=who.user_id,
        idempotency_key=idempotency_key,
    )
    log.info("workflow.accepted", workflow_id=workflow.id, correlation_id=workflow.correlation_id)
    return JsonResponse(
        UploadAccepted(workflow_id=workflow.id).model_dump(),
        status_code=202,
        headers={"Location": f"/api/v1/workflow/status?workflow_id={workflow.id}"},
    )


@router.get("/status", response_model=WorkflowView, responses=_ERRORS)
async def status(
    rt: RuntimeDep,
    who: CallerDep,
    workflow_id: Annotated[str | None, Query(max_length=64)] = None,
) -> JsonResponse:
    """One workflow as it stands (another user's is `404`, as if it did not exist)."""
    if not workflow_id:
        raise ApiError(400, "missing_parameter", "the query parameter workflow_id is required")
    return JsonResponse(rt.gateway.view(await rt.gateway.see(who, workflow_id)))


@router.post(
    "/step-completed",
    response_model=StepCompletedResponse,
    responses=_ERRORS,
    dependencies=[Depends(require_json), Depends(service_caller)],
)
async def step_completed(body: StepCompletedRequest, rt: RuntimeDep) -> StepCompletedResponse:
    """A service reports a step's outcome. A repeat of a recorded outcome is a 200 no-op."""
    with structlog.contextvars.bound_contextvars(workflow_id=body.workflow_id):
        outcome = await rt.gateway.complete(completion_from_request(body))
    if not outcome.applied:
        return StepCompletedResponse(message="Step completion already recorded")
    return StepCompletedResponse()


@router.post(
    "/step-progress",
    response_model=StepProgressResponse,
    responses=_ERRORS,
    dependencies=[Depends(require_json), Depends(service_caller)],
)
async def step_progress(body: StepProgressRequest, rt: RuntimeDep) -> StepProgressResponse:
    """A running step reports progress (DESIGN §11): `409` when the step is not running, the
    attempt is not current or the workflow ended; `partial` over 64 KiB is `413`. Above
    `workflow.progress_per_second` for the step, the report is held and the latest one is
    recorded when the next slot opens (`recorded: false`)."""
    with structlog.contextvars.bound_contextvars(workflow_id=body.workflow_id):
        recorded = await rt.gateway.report_progress(progress_from_request(body))
    if not recorded:
        return StepProgressResponse(
            recorded=False, message="Step progress held; the latest is recorded next"
        )
    return StepProgressResponse(recorded=True)


@router.get("/list", response_model=list[WorkflowView], responses=_ERRORS)
async def list_workflows(
    rt: RuntimeDep,
    who: CallerDep,
    status: WorkflowStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JsonResponse:
    """Workflows, newest first, optionally of one status."""
    workflows = await rt.gateway.list(who, status=status, limit=limit, offset=offset)
    return JsonResponse([rt.gateway.view(w) for w in workflows])


@listing.get("", response_model=WorkflowPageView, responses=_ERRORS)
async def find_workflows(
    rt: RuntimeDep,
    who: CallerDep,
    status: WorkflowStatus | None = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    q: Annotated[str | None, Query(max_length=200, description="words of name/category")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JsonResponse:
    """A page of workflow summaries, newest first, with the total that match: filtered by
    status, type and creation time (`created_from` inclusive, `created_to` exclusive), and
    searched by `q`: each word the start of a word of the product's name or category."""
    query = WorkflowQuery(
        status=status,
        type=type,
        created_from=_utc(created_from),
        created_to=_utc(created_to),
        search=q,
    )
    page = await rt.gateway.find(who, query, limit=limit, offset=offset)
    now = datetime.now(UTC)
    return JsonResponse(
        {
            "items": [workflow_summary_to_wire(w, now) for w in page.workflows],
            "total": page.total,
            "total_exact": page.exact,
            "limit": limit,
            "offset": offset,
        }
    )


async def _bulk(action: BulkAction, body: BulkRequest, rt: Runtime, who: Caller) -> JsonResponse:
    query = None
    if body.filter is not None:
        f = body.filter
        query = WorkflowQuery(
            status=WorkflowStatus(f.status) if f.status else None,
            type=f.type,
            created_from=_utc(f.created_from),
            created_to=_utc(f.created_to),
            search=f.search,
        )
    outcome = await rt.gateway.bulk(who, action, query=query, ids=body.ids)
    return JsonResponse(outcome.to_wire())


@router.post(
    "/bulk/retry",
    response_model=BulkResult,
    responses=_ERRORS,
    dependencies=[Depends(require_json)],
)
async def bulk_retry(body: BulkRequest, rt: RuntimeDep, who: CallerDep) -> JsonResponse:
    """Retry every failed workflow among `ids` or those `filter` matches, in bounded batches;
    the others are skipped and counted (`{"retried", "skipped", "not_found", ...}`)."""
    return await _bulk("retry", body, rt, who)


@router.post(
    "/bulk/cancel",
    response_model=BulkResult,
    responses=_ERRORS,
    dependencies=[Depends(require_json)],
)
async def bulk_cancel(body: BulkRequest, rt: RuntimeDep, who: CallerDep) -> JsonResponse:
    """Cancel every workflow among `ids` or those `filter` matches that has not ended; the
    ended ones are skipped and counted (`{"cancelled", "skipped", "not_found", ...}`)."""
    return await _bulk("cancel", body, rt, who)


def _utc(moment: datetime | None) -> datetime | None:
    """A time in UTC; one without a zone is taken as UTC (the API's times are UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # year 1 at +14:00: before any time there is
        raise ApiError(400, "invalid_parameter", f"{moment.isoformat()} is out of range") from None


@router.post("/{workflow_id}/cancel", response_model=WorkflowView, responses=_ERRORS)
async def cancel(workflow_id: str, rt: RuntimeDep, who: CallerDep) -> JsonResponse:
    """Stop a workflow that has not ended (`409` when it has); late reports are then refused."""
    await rt.gateway.see(who, workflow_id)
    return JsonResponse(rt.gateway.view(await rt.engine.cancel(workflow_id)))


@router.post(
    "/{workflow_id}/retry", status_code=202, response_model=WorkflowView, responses=_ERRORS
)
async def retry(workflow_id: str, rt: RuntimeDep, who: CallerDep) -> JsonResponse:
    """Resume a failed workflow from its failed step, keeping earlier results (`409` otherwise)."""
    await rt.gateway.see(who, workflow_id)
    workflow = await rt.engine.retry(workflow_id)
    return JsonResponse(rt.gateway.view(workflow), status_code=202)
