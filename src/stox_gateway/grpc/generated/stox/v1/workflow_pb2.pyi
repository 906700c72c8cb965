from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CompleteStepRequest(_message.Message):
    __slots__ = ("workflow_id", "step_id", "step_type", "success", "result", "error", "attempt", "retryable", "progress")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_TYPE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    step_id: str
    step_type: str
    success: bool
    result: _struct_pb2.Struct
    error: str
    attempt: int
    retryable: bool
    progress: StepProgress
    def __init__(self, workflow_id: _Optional[str] = ..., step_id: _Optional[str] = ..., step_type: _Optional[str] = ..., success: _Optional[bool] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[str] = ..., attempt: _Optional[int] = ..., retryable: _Optional[bool] = ..., progress: _Optional[_Union[StepProgress, _Mapping]] = ...) -> None: ...

class StepProgress(_message.Message):
    __slots__ = ("fraction", "message", "partial")
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    message: str
    partial: _struct_pb2.Struct
    def __init__(self, fraction: _Optional[float] = ..., message: _Optional[str] = ..., partial: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CompleteStepResponse(_message.Message):
    __slots__ = ("success", "message", "applied")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    applied: bool
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., applied: _Optional[bool] = ...) -> None: ...

class ReportProgressRequest(_message.Message):
    __slots__ = ("workflow_id", "step_id", "step_type", "attempt", "fraction", "message", "partial")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    step_id: str
    step_type: str
    attempt: int
    fraction: float
    message: str
    partial: _struct_pb2.Struct
    def __init__(self, workflow_id: _Optional[str] = ..., step_id: _Optional[str] = ..., step_type: _Optional[str] = ..., attempt: _Optional[int] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ..., partial: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ReportProgressResponse(_message.Message):
    __slots__ = ("success", "message", "recorded")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    recorded: bool
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., recorded: _Optional[bool] = ...) -> None: ...

class GetWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id",)
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    def __init__(self, workflow_id: _Optional[str] = ...) -> None: ...

class WatchWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id", "since")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    since: int
    def __init__(self, workflow_id: _Optional[str] = ..., since: _Optional[int] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ("id", "type", "status", "attempts", "max_attempts", "started_at", "completed_at", "result", "error", "after", "deadline_at", "waiting_for", "progress")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_AT_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    status: str
    attempts: int
    max_attempts: int
    started_at: str
    completed_at: str
    result: _struct_pb2.Struct
    error: str
    after: _containers.RepeatedScalarFieldContainer[str]
    deadline_at: str
    waiting_for: WaitingFor
    progress: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., status: _Optional[str] = ..., attempts: _Optional[int] = ..., max_attempts: _Optional[int] = ..., started_at: _Optional[str] = ..., completed_at: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[str] = ..., after: _Optional[_Iterable[str]] = ..., deadline_at: _Optional[str] = ..., waiting_for: _Optional[_Union[WaitingFor, _Mapping]] = ..., progress: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class PipelineStep(_message.Message):
    __slots__ = ("type", "after", "timeout", "max_attempts", "retry_backoff")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    type: str
    after: _containers.RepeatedScalarFieldContainer[str]
    timeout: float
    max_attempts: int
    retry_backoff: float
    def __init__(self, type: _Optional[str] = ..., after: _Optional[_Iterable[str]] = ..., timeout: _Optional[float] = ..., max_attempts: _Optional[int] = ..., retry_backoff: _Optional[float] = ...) -> None: ...

class Pipeline(_message.Message):
    __slots__ = ("type", "version", "steps")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    type: str
    version: str
    steps: _containers.RepeatedCompositeFieldContainer[PipelineStep]
    def __init__(self, type: _Optional[str] = ..., version: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[PipelineStep, _Mapping]]] = ...) -> None: ...

class WaitingFor(_message.Message):
    __slots__ = ("service", "consumers", "ready", "message")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    service: str
    consumers: int
    ready: int
    message: str
    def __init__(self, service: _Optional[str] = ..., consumers: _Optional[int] = ..., ready: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Workflow(_message.Message):
    __slots__ = ("id", "type", "status", "product", "current_step", "steps", "created_at", "updated_at", "completed_at", "error", "correlation_id", "seq", "definition")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    status: str
    product: _struct_pb2.Struct
    current_step: str
    steps: _containers.RepeatedCompositeFieldContainer[Step]
    created_at: str
    updated_at: str
    completed_at: str
    error: str
    correlation_id: str
    seq: int
    definition: Pipeline
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., status: _Optional[str] = ..., product: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., current_step: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[Step, _Mapping]]] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., completed_at: _Optional[str] = ..., error: _Optional[str] = ..., correlation_id: _Optional[str] = ..., seq: _Optional[int] = ..., definition: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class Update(_message.Message):
    __slots__ = ("type", "workflow_id", "seq", "timestamp", "data")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    type: str
    workflow_id: str
    seq: int
    timestamp: str
    data: _struct_pb2.Struct
    def __init__(self, type: _Optional[str] = ..., workflow_id: _Optional[str] = ..., seq: _Optional[int] = ..., timestamp: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
