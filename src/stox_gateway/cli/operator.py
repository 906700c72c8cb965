"""Operator commands: `workflows list|show|cancel|retry|bulk-retry|bulk-cancel`,
`db upgrade|prune`, `config check` (`dead-letters …` are in `dead_letters.py`).

They work on the configured database directly (no gateway needs to be up); a cancel or retry
writes its bus messages to the outbox, which a running gateway relays. A workflow is named by
its id or by an unambiguous start of it (`list` prints the first 8 characters). They print
their answer only: the store's and engine's logs stay below WARNING.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
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
from stox_gateway.engine.errors import StoxError, WorkflowNotFound
from stox_gateway.engine.models import Workflow, WorkflowStatus
from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.errors import InvalidInput
from stox_gateway.facade import BulkAction, bulk_act
from stox_gateway.observability.logging import configure_logging
from stox_gateway.store.port import WorkflowQuery
from stox_gateway.store.sql import SqlStore
from stox_gateway.wire import one_line, workflow_to_wire

T = TypeVar("T")

workflows_app = typer.Typer(
    help="Look at and act on workflows in the database.", no_args_is_help=True
)
db_app = typer.Typer(help="The database: schema and retention.", no_args_is_help=True)
config_app = typer.Typer(help="The configuration.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")]


SHORT_ID = 8  # characters of an id in `list`; any unambiguous start names a workflow


def _load(config: Path | None) -> Settings:
    settings = load_cli_settings(config, enforce_production=False)
    level = settings.logging.level.upper()
    if level in ("DEBUG", "INFO"):  # an operator reads answers, not the engine's progress
        configure_logging(
            settings.logging.model_copy(update={"level": "WARNING"}), settings.server.environment
        )
    return settings


async def resolve(engine: WorkflowEngine, ref: str) -> Workflow:
    """The workflow whose id is `ref` or starts with it; several: an error saying how many."""
    ref = ref.strip().lower()
    if not ref:
        raise InvalidInput("give a workflow id or the start of one")
    page = await engine.find_workflows(WorkflowQuery(id_prefix=ref), limit=1)
    if page.total > 1:
        found = await engine.find_ids(WorkflowQuery(id_prefix=ref), limit=5)
        shown = ", ".join(i[:12] for i in found) + (", …" if page.total > len(found) else "")
        raise InvalidInput(
            f"{ref!r} is ambiguous: {page.total} workflows start with it ({shown}); "
            "give more characters"
        )
    if not page.workflows:
        raise WorkflowNotFound(ref)
    return page.workflows[0]


@asynccontextmanager
async def _engine(settings: Settings) -> AsyncIterator[WorkflowEngine]:
    store = SqlStore(settings.database.url.get_secret_value(), **settings.database.store_options())
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
    workflow_type: Annotated[str | None, typer.Option("--type", help="only this type")] = None,
    search: Annotated[str | None, typer.Option(help="words of the name or category")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """Workflows, newest first (ids cut short: any unambiguous start names one)."""
    query = WorkflowQuery(status=status, type=workflow_type, search=search)
    page = _run(_load(config), lambda e: e.find_workflows(query, limit=limit, offset=offset))
    if as_json:
        for workflow in page.workflows:
            typer.echo(codec.dumps_str(workflow_to_wire(workflow)))
        return
    table = Table("id", "status", "current step", "product", "created", title_justify="left")
    for w in page.workflows:
        current = w.current_step.type if w.current_step and not w.status.ended else "-"
        table.add_row(
            w.id[:SHORT_ID],
            str(w.status),
            current,
            str(w.product.get("name", "")),
            f"{w.created_at:%Y-%m-%d %H:%M:%S}",
        )
    table.caption = f"{len(page.workflows)} of {page.total}"
    Console().print(table)


@workflows_app.command("show")
def show(
    workflow_id: Annotated[str, typer.Argument(help="the id, or an unambiguous start of it")],
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="the whole workflow as JSON")] = False,
) -> None:
    """One workflow: a table of its steps (or JSON)."""
    workflow = _run(_load(config), lambda e: resolve(e, workflow_id))
    if as_json:
        typer.echo(codec.dumps(workflow_to_wire(workflow)).decode())
        return
    console = Console(width=max(Console().width, 100))
    name = workflow.product.get("name", "")
    console.print(f"[bold]{name}[/bold]  {workflow.id}", highlight=False)
    console.print(
        f"{workflow.type} · {workflow.status} · created {workflow.created_at:%Y-%m-%d %H:%M:%S}"
        f" UTC · took {_took(workflow.created_at, workflow.completed_at)}",
        highlight=False,
    )
    if workflow.error:
        console.print(f"error: {one_line(workflow.error)}", highlight=False)
    table = Table("#", "step", "status", "attempts", "started", "took", "error")
    for index, step in enumerate(workflow.steps, 1):
        table.add_row(
            str(index),
            step.type,
            str(step.status),
            f"{step.attempts}/{step.max_attempts}",
            f"{step.started_at:%H:%M:%S}" if step.started_at else "-",
            _took(step.started_at, step.completed_at) if step.started_at else "-",
            one_line(step.error, 80) or "",
        )
    console.print(table)


def _took(start: datetime, end: datetime | None) -> str:
    seconds = ((end or datetime.now(UTC)) - start).total_seconds()
    text = f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}min"
    return text if end else f"{text} so far"


def _act(config: Path | None, ref: str, action: str) -> None:
    async def act(engine: WorkflowEngine) -> tuple[Workflow, Workflow]:
        before = await resolve(engine, ref)
        after = await (engine.cancel if action == "cancel" else engine.retry)(before.id)
        return before, after

    before, after = _run(_load(config), act)
    name = before.product.get("name", "")
    typer.echo(f"{after.id[:SHORT_ID]} {name!r}: {before.status} → {after.status}")


@workflows_app.command("cancel")
def cancel(
    workflow_id: Annotated[str, typer.Argument(help="the id, or an unambiguous start of it")],
    config: ConfigOption = None,
) -> None:
    """Cancel a workflow that has not ended."""
    _act(config, workflow_id, "cancel")


@workflows_app.command("retry")
def retry(
    workflow_id: Annotated[str, typer.Argument(help="the id, or an unambiguous start of it")],
    config: ConfigOption = None,
) -> None:
    """Resume a failed workflow from its failed step."""
    _act(config, workflow_id, "retry")


def _bulk(
    config: Path | None,
    action: BulkAction,
    ids: list[str] | None,
    query: WorkflowQuery,
) -> None:
    settings = _load(config)

    async def act(engine: WorkflowEngine) -> str:
        named: list[str] = []
        if ids:
            named = [(await resolve(engine, ref)).id for ref in ids]
        outcome = await bulk_act(
            engine,
            action,
            WorkflowQuery(ids=tuple(named)) if ids else query,
            named=named,
            batch_size=settings.workflow.bulk_batch_size,
            max_items=settings.workflow.bulk_max,
        )
        counts = outcome.to_wire()
        done = "retried" if action == "retry" else "cancelled"
        line = f"{done} {counts[done]}, skipped {outcome.skipped} (their own rules)"
        if outcome.limited:
            line += f"; stopped at {outcome.matched}: run it again for the rest"
        return line

    typer.echo(_run(settings, act))


IdsOption = Annotated[
    list[str] | None, typer.Option("--id", help="a workflow (id or start); repeatable")
]
StatusOption = Annotated[WorkflowStatus | None, typer.Option(help="only this status")]
TypeOption = Annotated[str | None, typer.Option("--type", help="only this type")]
SearchOption = Annotated[str | None, typer.Option(help="words of the name or category")]


@workflows_app.command("bulk-retry")
def bulk_retry(
    config: ConfigOption = None,
    ids: IdsOption = None,
    status: StatusOption = WorkflowStatus.FAILED,
    workflow_type: TypeOption = None,
    search: SearchOption = None,
) -> None:
    """Retry every failed workflow the filters match (or the `--id`s); the rest are skipped."""
    _bulk(config, "retry", ids, WorkflowQuery(status=status, type=workflow_type, search=search))


@workflows_app.command("bulk-cancel")
def bulk_cancel(
    config: ConfigOption = None,
    ids: IdsOption = None,
    status: StatusOption = None,
    workflow_type: TypeOption = None,
    search: SearchOption = None,
) -> None:
    """Cancel the `--id`s (or every workflow the filters match) that have not ended."""
    if not ids and status is None and workflow_type is None and search is None:
        typer.echo(
            "error: name workflows with --id, or filter (--status, --type, --search)", err=True
        )
        raise typer.Exit(2)
    _bulk(config, "cancel", ids, WorkflowQuery(status=status, type=workflow_type, search=search))


@db_app.command("upgrade")
def upgrade(config: ConfigOption = None) -> None:
    """Apply the database migrations (the gateway also does this at start-up)."""
    settings = _load(config)

    async def main() -> None:
        store = SqlStore(
            settings.database.url.get_secret_value(), **settings.database.store_options()
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
