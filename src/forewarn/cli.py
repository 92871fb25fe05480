"""The ``forewarn`` command line: a thin face over the library.

Example::

    forewarn report --since 2026-11-01
    forewarn simulate --runs 50000 --out history.csv
    forewarn import-runs history.csv
    forewarn backtest --json backtest.json
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from forewarn.errors import ForewarnError

app = typer.Typer(
    name="forewarn",
    help="Fault-tolerant Prefect flows that record every attempt and warn before they fail.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DbOption = Annotated[
    Optional[str],  # noqa: UP045 - typer reads the annotation at runtime on Python 3.10
    typer.Option("--db", help="Store URL; default FOREWARN_DB_URL.", show_default=False),
]


def _fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


def parse_time(value: str | None, option: str) -> datetime | None:
    """Parse an ISO-8601 option value; a value without offset is taken as UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO-8601 time such as 2026-11-01T00:00:00Z", param_hint=option
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def open_store(db: str | None):  # type: ignore[no-untyped-def]
    """Open the store named by ``--db`` or the settings, turning errors into a clean exit."""
    from forewarn.store import TelemetryStore

    try:
        return TelemetryStore(db)
    except ForewarnError as exc:
        raise _fail(exc) from None


_REPORT_COLUMNS = {  # report column -> header; narrow enough for an 80-column terminal
    "runs": "runs",
    "success_rate": "success",
    "runs_with_fault": "faulted",
    "ER": "ER",
    "retries_per_run": "retries/run",
    "fallback_rate": "fallbacks",
}


def _cell(column: str, value: float) -> str:
    if value != value:  # NaN: undefined, e.g. ER with no faulted run
        return "-"
    if column in ("success_rate", "ER", "fallback_rate"):
        return f"{value:.1%}"
    if column == "retries_per_run":
        return f"{value:.2f}"
    return f"{int(value):,}"


def print_report(report, title: str = "forewarn reliability report") -> None:  # type: ignore[no-untyped-def]
    """Render :func:`forewarn.report.reliability_report` as a table."""
    table = Table(title=title)
    table.add_column("flow", overflow="fold")
    for header in _REPORT_COLUMNS.values():
        table.add_column(header, justify="right", no_wrap=True)
    for name, row in report.iterrows():
        table.add_row(str(name), *(_cell(column, row[column]) for column in _REPORT_COLUMNS))
    console.print(table)
    console.print("ER = runs that met a failed attempt and still completed / runs that met a failed attempt")


@app.command()
def report(
    db: DbOption = None,
    flow_name: Annotated[Optional[str], typer.Option("--flow", help="Only this flow.")] = None,  # noqa: UP045
    since: Annotated[Optional[str], typer.Option(help="Runs started at or after (ISO-8601).")] = None,  # noqa: UP045
    until: Annotated[Optional[str], typer.Option(help="Runs started before (ISO-8601).")] = None,  # noqa: UP045
) -> None:
    """Runs, success rate, ER, retries and fallbacks per flow, from the telemetry store."""
    from forewarn.report import reliability_report

    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    store = open_store(db)
    runs = store.runs(flow_name=flow_name, since=start, until=end)
    if runs.empty:
        console.print(f"No runs in {store.url} for this selection.")
        raise typer.Exit(code=0)
    # Attempts of the selected runs, even those that ended after --until (the report filters by run).
    attempts = store.attempts(flow_name=flow_name, since=start)
    print_report(reliability_report(runs, attempts))
    console.print(f"store: {store.url}")


@app.command()
def info() -> None:
    """Show the settings in force (passwords masked) and where the store and models are."""
    from forewarn import __version__
    from forewarn.redaction import mask_url
    from forewarn.settings import get_settings

    try:
        settings = get_settings()
    except ForewarnError as exc:
        raise _fail(exc) from None
    console.print(f"forewarn {__version__}")
    for name, value in settings.model_dump().items():
        shown = mask_url(value) if name == "db_url" else value
        console.print(f"  FOREWARN_{name.upper()} = {shown}")


def main() -> None:
    """Entry point for ``python -m forewarn``."""
    app()


__all__ = ["app", "main"]
