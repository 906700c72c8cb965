"""What the engine refuses, and why. The API layer maps each to a status (see `api/errors.py`).

StoxError
├── WorkflowNotFound            404  unknown workflow
├── CompletionRejected          409  the completion does not fit the workflow's state
│   ├── StepMismatch                 a step id not of this workflow, or a wrong step type
│   ├── StaleAttempt                 a late completion from an earlier attempt
│   ├── StepNotRunning               the step is pending, or already has another outcome
│   ├── WorkflowEnded                the workflow completed, failed or was cancelled
│   └── WorkflowNotFailed            a retry of a workflow that has not failed
├── IdempotencyConflict         422  an Idempotency-Key reused with another body
├── UnknownWorkflowType         422
└── Unavailable                 503  the store or bus does not answer
"""

from __future__ import annotations


class StoxError(Exception):
    """Root of every error the gateway raises on purpose."""

    code = "internal_error"


class WorkflowNotFound(StoxError):
    code = "workflow_not_found"

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id} not found")
        self.workflow_id = workflow_id


class CompletionRejected(StoxError):
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


class IdempotencyConflict(StoxError):
    code = "idempotency_key_reused"


class UnknownWorkflowType(StoxError):
    code = "unknown_workflow_type"


class Unavailable(StoxError):
    code = "unavailable"
