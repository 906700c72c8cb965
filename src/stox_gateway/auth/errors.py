"""What the auth service refuses; `server.py` maps each to a gRPC status (DESIGN §6).

AuthError
├── InvalidArgument   INVALID_ARGUMENT   400
├── AlreadyExists     ALREADY_EXISTS     409
├── Unauthenticated   UNAUTHENTICATED    401
└── NotFound          NOT_FOUND          404
"""


class AuthError(Exception):
    code = "auth_error"


class InvalidArgument(AuthError):
    code = "invalid_argument"


class AlreadyExists(AuthError):
    code = "already_exists"


class Unauthenticated(AuthError):
    code = "unauthenticated"


class NotFound(AuthError):
    code = "not_found"
