"""gRPC: the WorkflowService the gateway serves, and the client of the AuthService.

Generated code lives in `generated/` (made by `scripts/generate_protos.sh`); no `*_pb2` type
leaves this package: the servers and clients here convert at the edge.
"""
