"""What the auth service refuses; each is also a kind of `stox_gateway.errors`, whose table
maps it to a gRPC status and, at the gateway, an HTTP status (DESIGN §6).

AuthError
├── InvalidArgument (InvalidInput)      INVALID_ARGUMENT   400
├── AlreadyExists (AlreadyExists)       ALREADY_EXISTS     409
├── Unauthenticated (Unauthenticated)   UNAUTHENTICATED    401
└── NotFound (NotFound)                 NOT_FOUND          404
"""

from stox_gateway import errors


class AuthError(errors.StoxError):
    code = "auth_error"


class InvalidArgument(AuthError, errors.InvalidInput):
    code = "invalid_argument"


class AlreadyExists(AuthError, errors.AlreadyExists):
    code = "already_exists"


class Unauthenticated(AuthError, errors.Unauthenticated):
    code = "unauthenticated"


class NotFound(AuthError, errors.NotFound):
    code = "not_found"
