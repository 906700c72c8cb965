"""Operator commands: `workflows list|show|cancel|retry`, `db upgrade|prune`, `config check`.

They work on the configured database directly (no gateway needs to be up); a cancel or retry
writes its bus messages to the outbox, which a running gateway relays.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from stox_gateway import codec
from stox_gateway.cli.settings import load_cli_settings
from stox_gateway.config.safety import production_problems
from stox_gateway.config.settings import Settings
from stox_gateway.engine.definitions import load_definitions
from stox_gateway.engine.errors import StoxError
from stox_gateway.engine.models import WorkflowStatus
from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.store.sql import SqlStore
from stox_gateway.wire import workflow_to_wire

T = TypeVar("T")

workflows_app = typer.Typer(
    help="Look at and act on workflows in the database.", no_args_is_help=True
)
db_app = typer.Typer(help="The database: schema and retention.", no_args_is_help=True)
config_app = typer.Typer(help="The configuration.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")]


def _load(config: Path | None) -> Settings:
    return load_cli_settings(config, enforce_production=False)


@asynccontextmanager
async def _engine(settings: Settings) -> AsyncIterator[WorkflowEngine]:
    store = SqlStore(settings.database.url.get_secret_value(), schema=settings.database.schema_name)
    await store.start()
    try:
        yield WorkflowEngine(store, load_definitions(settings))
    finally:
        await store.close()


def _run(settings: Settings, action: Callable[[WorkflowEngine], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _engine(settings) as engine:
            return await action(engine)

    try:
        return asyncio.run(main())
    except StoxError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@workflows_app.command("list")
def list_workflows(
    config: ConfigOption = None,
    status: Annotated[WorkflowStatus | None, typer.Option(help="only this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """Workflows, newest first."""
    workflows = _run(_load(config), lambda e: e.list_workflows(status=status, limit=limit))
    if as_json:
        for workflow in workflows:
            typer.echo(codec.dumps_str(workflow_to_wire(workflow)))
        return
    table = Table("id", "status", "current step", "product", "created")
    for w in workflows:
        current = w.current_step.type if w.current_step and not w.status.ended else "-"
        table.add_row(
            w.id, str(w.status), current, str(w.product.get("name", "")), w.created_at.isoformat()
        )
    Console().print(table)


@workflows_app.command("show")
def show(workflow_id: str, config: ConfigOption = None) -> None:
    """One workflow, as JSON."""
    workflow = _run(_load(config), lambda e: e.get(workflow_id))
    typer.echo(codec.dumps(workflow_to_wire(workflow)).decode())


@workflows_app.command("cancel")
def cancel(workflow_id: str, config: ConfigOption = None) -> None:
    """Cancel a workflow that has not ended."""
    workflow = _run(_load(config), lambda e: e.cancel(workflow_id))
    typer.echo(f"{workflow.id} {workflow.status}")


@workflows_app.command("retry")
def retry(workflow_id: str, config: ConfigOption = None) -> None:
    """Resume a failed workflow from its failed step."""
    workflow = _run(_load(config), lambda e: e.retry(workflow_id))
    typer.echo(f"{workflow.id} {workflow.status}")


@db_app.command("upgrade")
def upgrade(config: ConfigOption = None) -> None:
    """Apply the database migrations (the gateway also does this at start-up)."""
    settings = _load(config)

    async def main() -> None:
        store = SqlStore(
            settings.database.url.get_secret_value(), schema=settings.database.schema_name
        )
        await store.start()  # migrates
        await store.close()

    asyncio.run(main())
    typer.echo("database is at the newest migration")


@db_app.command("prune")
def prune(
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only count what would be deleted")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Delete what is past retention.* now (ended workflows with their rows and media, sent
    outbox rows), in batches; with --dry-run, show what would be deleted."""
    from stox_gateway.media import media_store
    from stox_gateway.store.retention import Retention

    settings = _load(config)

    async def main() -> dict[str, Any]:
        store = SqlStore(
            settings.database.url.get_secret_value(), schema=settings.database.schema_name
        )
        await store.start()
        media = media_store(settings, store)
        try:
            retention = Retention(store, media, settings.retention)
            return (await retention.prune(dry_run=dry_run)).to_dict()
        finally:
            await media.close()
            await store.close()

    try:
        report = asyncio.run(main())
    except StoxError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(codec.dumps_str(report))
        return
    typer.echo(_prune_text(report))


def _prune_text(report: dict[str, Any]) -> str:
    cutoffs = report["cutoffs"]

    def before(key: str) -> str:
        return f"before {cutoffs[key]}" if cutoffs[key] else "kept forever"

    lines = [
        "would delete (dry run):" if report["dry_run"] else "deleted:",
        *(f"  {table:<18}{count:>10}" for table, count in report["counts"].items()),
        f"completed workflows ended {before('completed_before')}",
        f"failed and cancelled workflows ended {before('failed_before')}",
        f"outbox rows sent {before('outbox_sent_before')}; unsent rows and running "
        "workflows are never deleted",
    ]
    return "\n".join(lines)


@config_app.command("check")
def check(config: ConfigOption = None) -> None:
    """Validate the configuration and print what it resolves to (secrets masked), then each
    pipeline as a graph; a bad pipeline is refused with the one line that names its key."""
    from stox_gateway.cli.pipeline_text import pipelines_text

    settings = _load(config)  # a bad pipeline ends here, with its one line (exit status 2)
    definitions = load_definitions(settings)
    resolved: dict[str, Any] = settings.model_dump(mode="json")
    # Addresses are worth seeing; their passwords are not.
    resolved["database"]["url"] = _without_password(settings.database.url.get_secret_value())
    resolved["rabbitmq"]["url"] = _without_password(settings.rabbitmq.url.get_secret_value())
    typer.echo(yaml.safe_dump(resolved, sort_keys=False).rstrip())
    typer.echo("\n" + pipelines_text(definitions, definitions.default_type))
    problems = production_problems(settings)
    if settings.is_production and problems:
        typer.echo("\nnot fit for production:\n  - " + "\n  - ".join(problems), err=True)
        raise typer.Exit(1)
    typer.echo("\nconfiguration is valid")


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "**********"
