"""The reference auth service: users, argon2id passwords, JWT access and rotated refresh tokens.

It is served over gRPC (`AuthService`, `server.py`); the gateway only ever calls it through
`stox_gateway.grpc.auth_client`, whether it runs in process (the embedded default) or apart
(`stox-gateway auth-service`).
"""
