"""DESIGN §7: in `environment: production` the gateway refuses insecure settings."""

from __future__ import annotations

from urllib.parse import urlsplit

from stox_gateway.config.settings import DEV_JWT_SECRET, Settings


class InsecureSettings(ValueError):
    """The settings are not safe for production; the message says what to change."""


MIN_SECRET_BYTES = 32


def secret_problem(settings: Settings) -> str | None:
    """Why the JWT secret cannot sign tokens anyone relies on (None: it can)."""
    secret = settings.auth.jwt_secret.get_secret_value()
    if secret == DEV_JWT_SECRET or len(secret.encode()) < MIN_SECRET_BYTES:
        return (
            f"auth.jwt_secret is the public default or shorter than {MIN_SECRET_BYTES} bytes: "
            "set STOX_AUTH__JWT_SECRET to a long random value (e.g. `openssl rand -hex 32`)"
        )
    return None


def production_problems(settings: Settings) -> list[str]:
    """What must change before this configuration may run in production (empty: nothing)."""
    problems: list[str] = []
    weak_secret = secret_problem(settings)
    if weak_secret:
        problems.append(weak_secret)
    if (
        settings.auth.service_token is None
        or len(settings.auth.service_token.get_secret_value()) < 16
    ):
        problems.append(
            "auth.service_token is unset or shorter than 16 characters: services must "
            "authenticate their reports (STOX_AUTH__SERVICE_TOKEN)"
        )
    if settings.event_bus == "memory":
        problems.append(
            "event_bus is the in-memory bus, which loses messages on restart and cannot be "
            "shared by replicas: set event_bus: rabbitmq (STOX_EVENT_BUS=rabbitmq)"
        )
    if settings.database.url.get_secret_value().startswith("sqlite"):
        problems.append(
            "database.url is SQLite, which one process only can use: set a "
            "postgresql+asyncpg:// URL (STOX_DATABASE__URL)"
        )
    if settings.event_bus == "rabbitmq":
        if _guest_credentials(settings.rabbitmq.url.get_secret_value()):
            problems.append(
                "rabbitmq.url uses the broker's guest:guest account: create a user of the "
                "gateways' own (STOX_RABBITMQ__URL)"
            )
        key = settings.rabbitmq.update_signing_key
        if key is None or len(key.get_secret_value().encode()) < MIN_SECRET_BYTES:
            problems.append(
                "rabbitmq.update_signing_key is unset or shorter than 32 bytes: anyone who may "
                "publish to the exchange could forge updates (STOX_RABBITMQ__UPDATE_SIGNING_KEY)"
            )
    if settings.media.store == "local" and settings.media.shared_path is None:
        problems.append(
            "media.store is the local folder, which other machines' gateways cannot serve: "
            "set media.store: database (STOX_MEDIA__STORE=database), or declare the folder "
            "every gateway and worker mounts in media.shared_path (STOX_MEDIA__SHARED_PATH)"
        )
    if "*" in settings.server.cors_origins or "*" in settings.websocket.allowed_origins:
        problems.append("server.cors_origins / websocket.allowed_origins must not contain '*'")
    return problems


def _guest_credentials(url: str) -> bool:
    parts = urlsplit(url)
    # No user in the URL means aio-pika's default, which is guest:guest as well.
    return parts.username in (None, "guest") and parts.password in (None, "guest")


def enforce(settings: Settings) -> Settings:
    """Production: refuse insecure settings and force auth on. Other environments: as given."""
    if settings.auth.required and settings.auth.service_token is None:
        raise InsecureSettings(
            "auth.required is on but auth.service_token is unset: services could report steps "
            "without credentials. Set STOX_AUTH__SERVICE_TOKEN."
        )
    if settings.auth.required:
        # Anyone can read the default secret in the source: with it, tokens can be forged.
        weak_secret = secret_problem(settings)
        if weak_secret:
            raise InsecureSettings(f"auth.required is on but {weak_secret}")
    if settings.auth.access_token_ttl > settings.auth.max_token_lifetime:
        raise InsecureSettings(
            "auth.access_token_ttl is longer than auth.max_token_lifetime: the gateway would "
            "refuse its own tokens; shorten STOX_AUTH__ACCESS_TOKEN_TTL"
        )
    if not settings.is_production:
        return settings
    problems = production_problems(settings)
    if problems:
        raise InsecureSettings("refusing to start in production:\n  - " + "\n  - ".join(problems))
    auth = settings.auth.model_copy(update={"required": True})
    return settings.model_copy(update={"auth": auth})
