"""What the engine refuses, and why; each derives from a kind of `stox_gateway.errors`, whose
table says how it leaves (HTTP status, gRPC code, WebSocket close code).

StoxError
├── WorkflowNotFound (NotFound)           404  unknown workflow
├── CompletionRejected (Conflict)         409  the completion does not fit the workflow's state
│   ├── StepMismatch                           a step id not of this workflow, or a wrong step type
│   ├── StaleAttempt                           a late completion from an earlier attempt
│   ├── StepNotRunning                         the step is pending, or already has another outcome
│   ├── WorkflowEnded                          the workflow completed, failed or was cancelled
│   └── WorkflowNotFailed                      a retry of a workflow that has not failed
├── PartialTooLarge (TooLarge)            413  a progress report's `partial` over 64 KiB
├── IdempotencyConflict (Unprocessable)   422  an Idempotency-Key reused with another body
├── UnknownWorkflowType (Unprocessable)   422
└── Unavailable                           503  the store or bus does not answer
"""

from __future__ import annotations

from stox_gateway.errors import (
    Conflict,
    NotFound,
    StoxError,
    TooLarge,
    Unavailable,
    Unprocessable,
)

__all__ = [
    "CompletionRejected",
    "IdempotencyConflict",
    "PartialTooLarge",
    "StaleAttempt",
    "StepMismatch",
    "StepNotRunning",
    "StoxError",
    "Unavailable",
    "UnknownWorkflowType",
    "WorkflowEnded",
    "WorkflowNotFailed",
    "WorkflowNotFound",
]


class WorkflowNotFound(NotFound):
    code = "workflow_not_found"

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id} not found")
        self.workflow_id = workflow_id


class CompletionRejected(Conflict):
    code = "completion_rejected"


class StepMismatch(CompletionRejected):
    code = "step_mismatch"


class StaleAttempt(CompletionRejected):
    code = "stale_attempt"


class StepNotRunning(CompletionRejected):
    code = "step_not_running"


class WorkflowEnded(CompletionRejected):
    code = "workflow_ended"


class WorkflowNotFailed(CompletionRejected):
    code = "workflow_not_failed"


class PartialTooLarge(TooLarge):
    code = "partial_too_large"


class IdempotencyConflict(Unprocessable):
    code = "idempotency_key_reused"


class UnknownWorkflowType(Unprocessable):
    code = "unknown_workflow_type"
