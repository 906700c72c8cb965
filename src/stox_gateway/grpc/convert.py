"""Between the wire dicts of `stox_gateway.wire` and the protobuf messages."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from stox_gateway import codec
from stox_gateway.grpc.generated.stox.v1 import workflow_pb2


def to_struct(value: dict[str, Any] | None) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    if value:
        struct.update(codec.loads(codec.dumps(value)))  # JSON-safe: times become strings
    return struct


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    return dict(json_format.MessageToDict(struct))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def workflow_message(wire: dict[str, Any]) -> workflow_pb2.Workflow:
    data = codec.loads(codec.dumps(wire))
    return workflow_pb2.Workflow(
        id=data["id"],
        type=data["type"],
        status=data["status"],
        product=to_struct(data["product"]),
        current_step=_text(data["current_step"]),
        steps=[
            workflow_pb2.Step(
                id=s["id"],
                type=s["type"],
                status=s["status"],
                attempts=s["attempts"],
                max_attempts=s["max_attempts"],
                started_at=_text(s["started_at"]),
                completed_at=_text(s["completed_at"]),
                result=to_struct(s["result"]),
                error=_text(s["error"]),
                after=s.get("after", []),
                deadline_at=_text(s.get("deadline_at")),
                waiting_for=_waiting_for(s.get("waiting_for")),
                progress=to_struct(s.get("progress")),
            )
            for s in data["steps"]
        ],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        completed_at=_text(data["completed_at"]),
        error=_text(data["error"]),
        correlation_id=data["correlation_id"],
        seq=data["seq"],
        definition=_pipeline_message(data["definition"]),
    )


def _pipeline_message(definition: dict[str, Any]) -> workflow_pb2.Pipeline:
    return workflow_pb2.Pipeline(
        type=definition["type"],
        version=definition["version"],
        steps=[workflow_pb2.PipelineStep(**step) for step in definition["steps"]],
    )


def _waiting_for(value: dict[str, Any] | None) -> workflow_pb2.WaitingFor | None:
    if not value:
        return None
    return workflow_pb2.WaitingFor(
        service=value["service"],
        consumers=value["consumers"],
        ready=value["ready"],
        message=value["message"],
    )


def update_message(frame: bytes | str) -> workflow_pb2.Update:
    data = codec.loads(frame)
    return workflow_pb2.Update(
        type=data["type"],
        workflow_id=_text(data["workflow_id"]),
        seq=data["seq"],
        timestamp=data["timestamp"],
        data=to_struct(data["data"]),
    )
