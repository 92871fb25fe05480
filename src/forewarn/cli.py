"""The ``forewarn`` command line: a thin face over the library.

Example::

    forewarn report --since 2026-11-01
    forewarn simulate --runs 50000 --out history.csv
    forewarn import-runs history.csv
    forewarn backtest --json backtest.json
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
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


def _fail(exc: Exception, url: str | None = None) -> typer.Exit:
    """Print ``exc`` (with the secrets of the store ``url`` it may quote masked) and exit with code 2."""
    from forewarn.masking import mask_url_secrets

    message = mask_url_secrets(str(exc), url or os.environ.get("FOREWARN_DB_URL"))
    # escaped: a message may quote another program's text (a table name, a path) that rich would read as markup
    err_console.print(f"[bold red]error:[/] {escape(message)}")
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


def open_store(db: str | None, *, create: bool = True):  # type: ignore[no-untyped-def]
    """Open the store named by ``--db`` or the settings, turning errors into a clean exit.

    Commands that only read pass ``create=False``: a mistyped path is then "no forewarn store at PATH",
    not a new empty store and "No runs".
    """
    from forewarn.store import TelemetryStore

    try:
        return TelemetryStore(db, create=create)
    except ForewarnError as exc:
        raise _fail(exc, db) from None


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


_UNBOUNDED_WIDTH = 10_000  # wide enough to measure any report table at its natural width
_FOLDED_HEADER_MIN = 4  # a folded header keeps at least this many characters a line, e.g. "succ" / "ess"


def print_report(report, title: str = "forewarn reliability report") -> None:  # type: ignore[no-untyped-def]
    """Render :func:`forewarn.learning.report.reliability_report` as a table.

    The flow names are what a reader looks up, so on a terminal too narrow for the whole table the headers
    of the figures fold onto more lines first (the figures themselves stay whole) and the names keep the
    room that is left; names longer than that fold too.
    """
    rows = [(str(name), [_cell(column, row[column]) for column in _REPORT_COLUMNS]) for name, row in report.iterrows()]
    table = _report_table(rows, title, fold_headers=False)
    unbounded = console.options.update_width(_UNBOUNDED_WIDTH)  # the table's own width, not the terminal's
    if Measurement.get(console, unbounded, table).maximum > console.width:
        table = _report_table(rows, title, fold_headers=True)
    console.print(table)
    console.print("ER = runs that met a failed attempt and still completed / runs that met a failed attempt")


def _report_table(rows: list[tuple[str, list[str]]], title: str, fold_headers: bool) -> Table:
    """The report table; with ``fold_headers`` each figure column is only as wide as its widest figure."""
    table = Table(title=title)
    table.add_column("flow", overflow="fold")
    for index, header in enumerate(_REPORT_COLUMNS.values()):
        widest = max((len(cells[index]) for _, cells in rows), default=0)
        width = max(widest, _FOLDED_HEADER_MIN) if fold_headers else None
        table.add_column(header, justify="right", no_wrap=not fold_headers, overflow="fold", max_width=width)
    for name, cells in rows:
        table.add_row(name, *cells)
    return table


@app.command()
def report(
    db: DbOption = None,
    flow_name: Annotated[Optional[str], typer.Option("--flow", help="Only this flow.")] = None,  # noqa: UP045
    since: Annotated[Optional[str], typer.Option(help="Runs started at or after (ISO-8601).")] = None,  # noqa: UP045
    until: Annotated[Optional[str], typer.Option(help="Runs started before (ISO-8601).")] = None,  # noqa: UP045
) -> None:
    """Runs, success rate, ER, retries and fallbacks per flow, from the telemetry store."""
    from forewarn.learning.report import reliability_report

    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    store = open_store(db, create=False)
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
    from forewarn._version import __version__
    from forewarn.redaction import mask_url
    from forewarn.settings import get_settings

    try:
        settings = get_settings()
    except ForewarnError as exc:
        raise _fail(exc) from None
    console.print(f"forewarn {__version__}")
    for name, value in settings.model_dump().items():
        # every value through mask_url: a URL with a password can sit in any setting, not only db_url
        shown = mask_url(str(value))
        console.print(f"  FOREWARN_{name.upper()} = {escape(shown)}", soft_wrap=True)


# --- the failure-warning model -------------------------------------------------------------------------


def _progress_bar(description: str):  # type: ignore[no-untyped-def]
    """A rich progress bar and a ``progress(done, total)`` callback that drives it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    job = bar.add_task(description, total=None)

    def progress(done: int, total: int) -> None:
        bar.update(job, completed=done, total=total)

    return bar, progress


def _history(db: str | None):  # type: ignore[no-untyped-def]
    store = open_store(db, create=False)
    runs, attempts = store.history()
    if runs.empty:
        raise _fail(
            ForewarnError(
                f"no runs in {store.url}: run flows, `forewarn import-runs`, or "
                "`forewarn simulate` + `forewarn import-runs` first"
            )
        )
    return store, runs, attempts


@app.command()
def train(
    db: DbOption = None,
    model_dir: Annotated[Optional[str], typer.Option(help="Default FOREWARN_MODEL_DIR.")] = None,  # noqa: UP045
    family: Annotated[str, typer.Option(help="hgb (gradient boosting) or logreg.")] = "hgb",
    folds: Annotated[int, typer.Option(min=1, help="Walk-forward test windows for the manifest's figures.")] = 5,
) -> None:
    """Backtest, then fit and save the failure-warning model on the store's history."""
    from forewarn.learning.summary import metrics_rows
    from forewarn.learning.training import train_and_save
    from forewarn.scoring import configured_model_key
    from forewarn.settings import get_settings

    _, runs, attempts = _history(db)
    target = model_dir or str(get_settings().model_dir)
    bar, progress = _progress_bar("backtest folds")
    try:
        key = configured_model_key(create=True)
        with bar:
            result = train_and_save(
                runs, attempts, model_dir=target, key=key, family=family, n_folds=folds, progress=progress
            )
    except ForewarnError as exc:
        raise _fail(exc) from None
    manifest = result.manifest
    print_metrics(metrics_rows(manifest.backtest_metrics or {}), "walk-forward backtest (held-out runs)")
    console.print(
        f"saved model [bold]{manifest.version}[/] to {result.path} "
        f"(threshold {manifest.threshold:.3f}, {manifest.n_train_runs:,} runs, "
        f"{manifest.n_train_failures:,} failures)"
    )
    console.print(
        "Next: forewarn.flow runs now score themselves before they start; "
        "`forewarn forecast` scores the scheduled runs of the next 24 h."
    )


# Compact headers so the table fits an 80-column terminal; the JSON and markdown carry the full names.
_METRIC_HEADERS = ("system", "PR-AUC", "ROC-AUC", "Brier", "WR", "prec.", "FAR", "lead")
_WARNINGS_CELL = 7  # the warning count is in the JSON; the table keeps the rates


def print_metrics(rows: list[list[str]], title: str) -> None:
    """Print backtest metric rows (from :func:`forewarn.learning.summary.metrics_rows`) as one table.

    Example::

        >>> from forewarn.learning.summary import metrics_rows
        >>> print_metrics(metrics_rows({}), "walk-forward backtest")  # doctest: +SKIP
    """
    from rich import box

    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        caption="WR = warned failures / failures; prec. = true "
        "warnings / warnings; FAR = false alarms / non-failures; lead = median warning lead time",
    )
    for header in _METRIC_HEADERS:
        table.add_column(header, justify="left" if header == "system" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(cell for i, cell in enumerate(row) if i != _WARNINGS_CELL))
    console.print(table)


@app.command()
def backtest(
    db: DbOption = None,
    folds: Annotated[int, typer.Option(min=1, help="Consecutive test windows.")] = 5,
    family: Annotated[str, typer.Option(help="hgb (gradient boosting) or logreg.")] = "hgb",
    lead_minutes: Annotated[float, typer.Option(help="Score each run this long before its start.")] = 0.0,
    json_path: Annotated[Optional[str], typer.Option("--json", help="Write all figures as one JSON object.")] = None,  # noqa: UP045
    predictions_out: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Write every scored run: run_id, flow_name, scheduled_start, fold, risk, threshold, warned, failed."
        ),
    ] = None,
) -> None:
    """Walk-forward backtest: WR, precision, PR-AUC, lead time and ER against two baselines."""
    import json
    from datetime import timedelta

    from forewarn.learning.backtest import PREDICTION_COLUMNS, walk_forward_backtest
    from forewarn.learning.summary import metrics_rows

    _, runs, attempts = _history(db)
    bar, progress = _progress_bar("backtest folds")
    try:
        with bar:
            result = walk_forward_backtest(
                runs, attempts, n_folds=folds, family=family, lead=timedelta(minutes=lead_minutes), progress=progress
            )
    except ForewarnError as exc:
        raise _fail(exc) from None
    print_metrics(metrics_rows(result.overall), f"walk-forward backtest, {folds} folds")
    escape = result.overall.get("escape") or {}
    if escape.get("ER") is not None:
        console.print(
            f"ER = {escape['ER']:.1%} ({escape['escaped_runs']} of {escape['runs_with_failed_attempt']} "
            "runs that met a failed attempt still completed)"
        )
    if json_path:
        with open(json_path, "w") as out:
            json.dump(result.to_json(), out, indent=2)
        console.print(f"figures written to {json_path}")
    if predictions_out:
        result.predictions.loc[:, list(PREDICTION_COLUMNS)].to_csv(predictions_out, index=False)
        console.print(f"{len(result.predictions):,} scored runs written to {predictions_out}")


# --- run history: simulate and import ------------------------------------------------------------------

CsvArgument = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The CSV file to import.", show_default=False)
]
RejectsOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--skip-invalid",
        dir_okay=False,
        help="Import the valid rows and write the invalid ones here, with their line and reason.",
        show_default=False,
    ),
]
AssumeUtcOption = Annotated[
    bool, typer.Option("--assume-utc", help="Read times without a UTC offset as UTC instead of rejecting them.")
]


def _import_failed(exc: Exception) -> typer.Exit:
    """Print an import error and exit 2. Cell values are printed as they are, never read as rich markup."""
    from rich.markup import escape

    text = str(exc).replace("pass assume_utc=True", "pass --assume-utc")
    err_console.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)
    return typer.Exit(code=2)


def _import(kind: str, path: Path, db: str | None, skip_invalid: Path | None, assume_utc: bool) -> None:
    from rich.markup import escape

    from forewarn.history.importer import import_attempts, import_runs

    store = open_store(db)
    load = import_runs if kind == "runs" else import_attempts
    bar, progress = _progress_bar(f"importing {kind}")
    try:
        with bar:
            result = load(store, path, skip_invalid=skip_invalid, progress=progress, assume_utc=assume_utc)
    except ForewarnError as exc:
        raise _import_failed(exc) from None
    finally:
        store.close()
    rejected = ""
    if result.rejects_path is not None:
        rejected = f"; {result.rejected:,} rejected, written to {result.rejects_path}"
    console.print(
        escape(
            f"imported {result.imported:,} of {result.rows_read:,} {kind} from {path} into {store.url} "
            f"in {result.seconds:.1f} s{rejected}"
        ),
        soft_wrap=True,
    )


@app.command("import-runs")
def import_runs_command(
    path: CsvArgument,
    db: DbOption = None,
    skip_invalid: RejectsOption = None,
    assume_utc: AssumeUtcOption = False,
) -> None:
    """Load a run-history CSV (run_id, flow_name, scheduled_start, state, ...) into the store.

    All or nothing: one invalid row rejects the file (exit code 2, nothing written) unless --skip-invalid is given.

    Importing the same file again changes nothing. The format is in docs/import.md.
    """
    _import("runs", path, db, skip_invalid, assume_utc)


@app.command("import-attempts")
def import_attempts_command(
    path: CsvArgument,
    db: DbOption = None,
    skip_invalid: RejectsOption = None,
    assume_utc: AssumeUtcOption = False,
) -> None:
    """Load a task-attempt CSV (run_id, task_name, attempt, start_time, end_time, state, exception_type).

    All or nothing and idempotent, like import-runs. The format is in docs/import.md.
    """
    _import("attempts", path, db, skip_invalid, assume_utc)


@app.command("import-swf")
def import_swf_command(
    path: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="The SWF job log (.swf or .swf.gz).", show_default=False
        ),
    ],
    db: DbOption = None,
    csv_out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--csv-out", dir_okay=False, help="Also keep the converted run-history CSV here.", show_default=False
        ),
    ] = None,
) -> None:
    """Load an HPC job log in the Standard Workload Format (Parallel Workloads Archive) as run history.

    Each job becomes a run: the executable (else the user) is the flow, the submit time the scheduled start,
    and only what is known at submission (user, group, queue, partition, requested processors, time and
    memory) becomes a feature. The mapping is in docs/import.md.
    """
    import tempfile

    from rich.markup import escape

    from forewarn.history.swf import swf_to_runs

    try:
        converted = swf_to_runs(path)
    except ForewarnError as exc:
        raise _import_failed(exc) from None
    if converted.left_out:
        console.print(f"{converted.left_out:,} job(s) with status -1 (unknown) or 2 (partial) left out")
    with tempfile.TemporaryDirectory() as folder:
        csv_path = converted.to_csv(csv_out if csv_out is not None else Path(folder) / "runs.csv")
        _import("runs", csv_path, db, None, False)
    if csv_out is not None:
        console.print(escape(f"run-history CSV kept in {csv_out}"), soft_wrap=True)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="Run-history CSV to write.", show_default=False)],
    runs: Annotated[int, typer.Option("--runs", min=1, help="Runs to simulate (12 flows make ~410 a day).")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same history.")] = 0,
    attempts_out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--attempts-out", dir_okay=False, help="Also write their task attempts here.", show_default=False),
    ] = None,
) -> None:
    """Write a synthetic run history in the import format, with documented failure mechanisms."""
    from rich.markup import escape

    from forewarn.history.simulate import simulate_history, simulated_attempts, write_simulated_history

    try:
        if attempts_out is None:
            write_simulated_history(out, runs, seed=seed)
        else:
            history = simulate_history(runs, seed=seed, include_cause=True)  # causes shape the exception types
            attempts = simulated_attempts(history, seed=seed)
            out.parent.mkdir(parents=True, exist_ok=True)
            history.drop(columns="failure_cause").to_csv(out, index=False)
            attempts_out.parent.mkdir(parents=True, exist_ok=True)
            attempts.to_csv(attempts_out, index=False)
            console.print(escape(f"wrote {len(attempts):,} simulated task attempts to {attempts_out}"), soft_wrap=True)
    except (ForewarnError, OSError) as exc:
        raise _import_failed(exc) from None
    console.print(escape(f"wrote {runs:,} simulated runs to {out}"), soft_wrap=True)
    follow = f" && forewarn import-attempts {attempts_out}" if attempts_out is not None else ""
    console.print(escape(f"next: forewarn import-runs {out}{follow}"), soft_wrap=True)


@app.command()
def forecast(
    db: DbOption = None,
    horizon_hours: Annotated[float, typer.Option(min=0.01, help="Score runs scheduled within this many hours.")] = 24.0,
    all_runs: Annotated[bool, typer.Option("--all", help="List every scored run, not only those at risk.")] = False,
) -> None:
    """Score the scheduled flow runs of the next hours (from the Prefect API) and list those at risk."""
    from datetime import timedelta

    from forewarn.orchestration.forecast import forecast_rows, forecast_upcoming_runs

    store = open_store(db)
    try:
        table = forecast_upcoming_runs(store, horizon=timedelta(hours=horizon_hours))
    except ForewarnError as exc:
        raise _fail(exc) from None
    rows = forecast_rows(table, warned_only=not all_runs)
    at_risk = int(table["warned"].astype(bool).sum()) if len(table) else 0
    result = Table(title=f"{at_risk} of {len(table)} scheduled run(s) in the next {horizon_hours:g} h at risk")
    for column in ("flow", "scheduled start (UTC)", "in (hours)", "risk", "threshold", "reasons"):
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(
            *(str(row[c]) for c in ("flow", "scheduled start (UTC)", "in (hours)", "risk", "threshold", "reasons"))
        )
    console.print(result)


def main() -> None:
    """Entry point for ``python -m forewarn``."""
    app()


__all__ = ["app", "main", "print_metrics", "print_report"]
