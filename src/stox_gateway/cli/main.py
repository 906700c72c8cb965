"""`stox-gateway serve | worker <step> | demo`."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer

from stox_gateway import __version__
from stox_gateway.cli.dead_letters import dead_letters_app
from stox_gateway.cli.operator import config_app, db_app, workflows_app
from stox_gateway.cli.settings import ConfigOption, load_cli_settings
from stox_gateway.engine.definitions import NAME, STEP_TYPES, load_definitions
from stox_gateway.errors import Misconfigured

_R = TypeVar("_R")

app = typer.Typer(
    name="stox-gateway",
    help="Workflow orchestration for product listings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _add_operator_commands() -> None:
    app.add_typer(workflows_app, name="workflows")
    app.add_typer(db_app, name="db")
    app.add_typer(config_app, name="config")
    app.add_typer(dead_letters_app, name="dead-letters")


_settings = load_cli_settings


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="overrides server.host")] = None,
    port: Annotated[int | None, typer.Option(help="overrides server.port")] = None,
    reload: Annotated[bool, typer.Option(help="restart on code changes (development)")] = False,
    handler: Annotated[
        list[str] | None,
        typer.Option(
            help="TYPE=package.module:function: a handler the gateway runs itself for that "
            "step type (as workers.handlers); repeatable"
        ),
    ] = None,
) -> None:
    """Run the gateway: HTTP API, WebSocket, engine, outbox relay and (embedded) services."""
    import uvicorn

    from stox_gateway.cli.handlers import with_handlers

    settings = _settings(config)
    try:
        settings = with_handlers(settings, handler or [])
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if settings.workers.embedded and not settings.workers.noop:
        from stox_gateway.sdk.runner import embedded_handlers

        try:
            embedded_handlers(settings)  # an import error ends the command with one line
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
    server = settings.server.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    settings = settings.model_copy(update={"server": server})
    from stox_gateway.api.server import uvicorn_options
    from stox_gateway.cli.ports import taken_ports

    taken = taken_ports(
        [
            (settings.server.host, settings.server.port, "STOX_SERVER__PORT (or --port)"),
            (settings.grpc.host, settings.grpc.port, "STOX_GRPC__PORT"),
        ]
    )
    if taken:
        for line in taken:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2)
    options = uvicorn_options(settings)
    if reload:
        # Reload needs an import string; the factory reads the same config from the environment.
        # The reloader starts a child process, which cannot be handed a protocol class made
        # here: it serves with uvicorn's own (no header deadline, fine in development).
        options.pop("http")
        uvicorn.run("stox_gateway.cli.asgi:create", factory=True, reload=True, **options)
        return
    from stox_gateway.api.app import create_app
    from stox_gateway.api.server import GatewayServer

    app_ = create_app(settings)
    try:
        GatewayServer(uvicorn.Config(app_, **options), app_).run()
    finally:
        # uvicorn exits (status 3) when the start-up failed; a refusal says why, once.
        if app_.state.startup_refusal:
            typer.echo(f"error: {app_.state.startup_refusal}", err=True)
            raise typer.Exit(2)


@app.command()
def worker(
    step: Annotated[
        str, typer.Argument(help=f"a step type of a pipeline; built in: {', '.join(STEP_TYPES)}")
    ],
    config: ConfigOption = None,
    handler: Annotated[
        str | None,
        typer.Option(
            help="the async handler(ctx) -> dict to run, as package.module:function "
            "(default: the step type's reference service)"
        ),
    ] = None,
    noop: Annotated[bool, typer.Option(help="answer every step at once with {}")] = False,
) -> None:
    """Serve one step type against the configured bus (RabbitMQ)."""
    from stox_gateway.sdk.runner import default_handler, load_handler, run_worker

    if not NAME.fullmatch(step):
        typer.echo(f"error: malformed step type {step!r}: use [a-z][a-z0-9_]{{0,63}}", err=True)
        raise typer.Exit(2)
    settings = _settings(config)
    if settings.event_bus == "memory":
        typer.echo(
            "error: a worker process needs a shared broker; set event_bus: rabbitmq "
            "(STOX_EVENT_BUS=rabbitmq). With the in-memory bus the gateway embeds its services.",
            err=True,
        )
        raise typer.Exit(2)
    try:
        if handler is not None:
            chosen = load_handler(handler)
        elif not (noop or settings.workers.noop):
            chosen = default_handler(settings, step)
        else:
            chosen = None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if step not in load_definitions(settings).step_types:
        # Not an error: the gateways may run another configuration than this worker.
        typer.echo(f"warning: no pipeline in this configuration has a step {step!r}", err=True)
    try:
        status = run_on_fast_loop(run_worker(step, chosen, settings=settings, noop=noop))
    except Misconfigured as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if status:
        raise typer.Exit(status)


def run_on_fast_loop(main: Coroutine[Any, Any, _R]) -> _R:
    """`asyncio.run` on uvloop where it is installed (uvicorn[standard] brings it on Linux and
    macOS; uvicorn runs the gateway on it too): a service spends its time in socket I/O."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


@app.command("auth-service")
def auth_service(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "0.0.0.0",
    port: Annotated[int | None, typer.Option(help="overrides services.auth.port")] = None,
) -> None:
    """Run the reference AuthService (gRPC) against the configured database."""
    settings = _settings(config)
    from stox_gateway.auth.server import auth_server

    async def main() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        bound = settings.services.auth.port if port is None else port
        async with auth_server(settings, host=host, port=bound):
            await stop.wait()

    asyncio.run(main())


@app.command()
def demo(
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=10_000)] = 10,
    url: Annotated[
        str | None,
        typer.Option(help="a running gateway; by default one is started in process"),
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for all to finish")] = 120.0,
) -> None:
    """Upload N sample products and show their progress until all have finished."""
    from stox_gateway.cli.demo import run_demo

    raise typer.Exit(asyncio.run(run_demo(count, url, timeout)))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


_add_operator_commands()
