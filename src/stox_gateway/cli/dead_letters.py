"""`stox-gateway dead-letters list|show|requeue|purge`: the dead-letter queues on RabbitMQ.

Every queue the gateway declares with a dead-letter queue is looked at: the step queues of
every pipeline's step types and the completion queue (names from `routing.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from stox_gateway import routing
from stox_gateway.bus.port import BusUnavailable
from stox_gateway.cli.operator import ConfigOption, _load
from stox_gateway.config.settings import Settings
from stox_gateway.engine.definitions import load_definitions
from stox_gateway.wire import one_line

if TYPE_CHECKING:  # the adapter (aio-pika) is imported when a command runs
    from stox_gateway.bus.rabbitmq_dead_letters import DeadLetterQueues, DeadMessage

T = TypeVar("T")

dead_letters_app = typer.Typer(
    help="The dead-letter queues on RabbitMQ: what a queue could not process, and why.",
    no_args_is_help=True,
)
QueueOption = Annotated[
    str | None,
    typer.Option("--queue", "-q", help="only this queue, e.g. stox.step.seo_generation"),
]


def queues(settings: Settings) -> list[str]:
    """The queues that have a dead-letter queue (`<queue>.dead`)."""
    prefix = settings.rabbitmq.queue_prefix
    steps = load_definitions(settings).step_types
    return sorted(
        {routing.completion_queue(prefix)} | {routing.step_queue(prefix, s) for s in steps}
    )


def _run(config: Path | None, action: Callable[[DeadLetterQueues], Awaitable[T]]) -> T:
    from stox_gateway.bus.rabbitmq_dead_letters import DeadLetterQueues

    settings = _load(config)
    if settings.event_bus != "rabbitmq":
        typer.echo(
            "error: event_bus is 'memory': dead letters live only inside a running gateway "
            "(set event_bus: rabbitmq to use a broker)",
            err=True,
        )
        raise typer.Exit(1)

    async def main() -> T:
        async with DeadLetterQueues(
            settings.rabbitmq.url.get_secret_value(), queues(settings)
        ) as dead:
            return await action(dead)

    try:
        return asyncio.run(main())
    except (BusUnavailable, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@dead_letters_app.command("list")
def list_dead(
    config: ConfigOption = None,
    queue: QueueOption = None,
    limit: Annotated[int, typer.Option(min=1, help="messages shown per queue")] = 20,
) -> None:
    """Each dead-letter queue's count, and its oldest messages with their reasons."""

    async def look(dead: DeadLetterQueues) -> tuple[dict[str, int | None], list[DeadMessage]]:
        return await dead.counts(), await dead.peek(queue)

    counts, messages = _run(config, look)
    console = Console(width=max(Console().width, 120))
    summary = Table("queue", "dead letters")
    for name, count in counts.items():
        if queue is None or name == queue:
            summary.add_row(
                f"{routing.dead_letter_queue(name)}", "-" if count is None else str(count)
            )
    console.print(summary)
    if not messages:
        return
    table = Table("queue", "message id", "routing key", "reason")
    shown: dict[str, int] = {}
    for m in messages:
        shown[m.queue] = shown.get(m.queue, 0) + 1
        if shown[m.queue] <= limit:
            table.add_row(m.queue, m.message_id, m.routing_key, one_line(m.reason, 120) or "")
    console.print(table)


@dead_letters_app.command("show")
def show_dead(
    message_id: Annotated[str, typer.Argument(help="the message id (from `list`)")],
    config: ConfigOption = None,
    queue: QueueOption = None,
) -> None:
    """One dead message: where it came from, why, its headers and body."""

    async def look(dead: DeadLetterQueues) -> list[DeadMessage]:
        return await dead.peek(queue)

    found = [m for m in _run(config, look) if m.message_id == message_id]
    if not found:
        typer.echo(f"error: no dead message {message_id!r}", err=True)
        raise typer.Exit(1)
    m = found[0]
    typer.echo(f"queue:        {m.queue} (dead letters in {routing.dead_letter_queue(m.queue)})")
    typer.echo(f"message id:   {m.message_id}")
    typer.echo(f"routing key:  {m.routing_key}")
    typer.echo(f"correlation:  {m.correlation_id or '-'}")
    typer.echo(f"reason:       {m.reason}")
    for key, value in sorted(m.headers.items()):
        typer.echo(f"header {key}: {value}")
    typer.echo(m.body_text())


@dead_letters_app.command("requeue")
def requeue(
    config: ConfigOption = None,
    queue: QueueOption = None,
    message_id: Annotated[
        str | None, typer.Option("--id", help="only this message (default: every one)")
    ] = None,
) -> None:
    """Send dead messages back to their own queue, to be processed again."""

    async def move(dead: DeadLetterQueues) -> int:
        return await dead.requeue(queue, message_id)

    moved = _run(config, move)
    if message_id is not None and not moved:
        typer.echo(f"error: no dead message {message_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"requeued {moved} message{'s' if moved != 1 else ''}")


@dead_letters_app.command("purge")
def purge(
    config: ConfigOption = None,
    queue: QueueOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="yes, delete them for good")] = False,
) -> None:
    """Delete the dead messages for good (asks for --yes)."""
    if not yes:
        typer.echo("error: purging deletes the messages for good; add --yes to do it", err=True)
        raise typer.Exit(2)

    async def delete(dead: DeadLetterQueues) -> int:
        return await dead.purge(queue)

    purged = _run(config, delete)
    typer.echo(f"purged {purged} message{'s' if purged != 1 else ''}")
