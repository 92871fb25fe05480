"""The ``forewarn`` command line: a thin face over the library.

Example::

    forewarn report --since 2026-11-01
    forewarn simulate --runs 50000 --out history.csv
    forewarn import-runs history.csv
    forewarn import-prefect
    forewarn backtest --json backtest.json
    forewarn monitor --bucket day
    forewarn chaos --runs 10000 --out er.md
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from forewarn.errors import ForewarnError

_FAMILY_HELP = "stack (hgb and logreg weighed by the calibrator; the default), hgb (gradient boosting), logreg or mean."

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
TagOption = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--tag", help="Only runs with this Prefect tag (any of those given); repeatable.", show_default=False),
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
        return TelemetryStore(db, create=create, setting="--db")
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


NOT_ENOUGH_HISTORY = 3
"""Exit code of ``forewarn train`` while the store holds too little history to train: nothing was saved."""


def _not_enough_history(message: str) -> typer.Exit:
    err_console.print(escape(message), soft_wrap=True)
    err_console.print(
        "Get more history: `forewarn import-prefect`, `forewarn import-runs`, or keep running forewarn.flow flows.",
        soft_wrap=True,
    )
    return typer.Exit(code=NOT_ENOUGH_HISTORY)


@app.command()
def train(
    db: DbOption = None,
    model_dir: Annotated[Optional[str], typer.Option(help="Default FOREWARN_MODEL_DIR.")] = None,  # noqa: UP045
    family: Annotated[str, typer.Option(help=_FAMILY_HELP)] = "stack",
    folds: Annotated[int, typer.Option(min=1, help="Walk-forward test windows for the manifest's figures.")] = 5,
) -> None:
    """Backtest, then fit and save the failure-warning model on the store's history.

    Exit code 3 while the store holds too little history ("not enough history yet: N runs, M failures of
    the 200/20 needed"): nothing is saved, and a script such as `forewarn train && ...` stops there.
    """
    from forewarn.errors import InsufficientHistoryError
    from forewarn.learning.readiness import HistoryReadiness
    from forewarn.learning.summary import metrics_rows
    from forewarn.learning.training import train_and_save
    from forewarn.scoring import configured_model_key
    from forewarn.settings import get_settings

    _, runs, attempts = _history(db)
    readiness = HistoryReadiness.from_runs(runs)
    if not readiness.ready:
        raise _not_enough_history(readiness.message)
    target = model_dir or str(get_settings().model_dir)
    bar, progress = _progress_bar("backtest folds")
    try:
        key = configured_model_key(create=True, model_dir=target)
        with bar:
            result = train_and_save(
                runs, attempts, model_dir=target, key=key, family=family, n_folds=folds, progress=progress
            )
    except InsufficientHistoryError as exc:
        raise _not_enough_history(str(exc)) from None
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


_FOLD_CLI_HEADERS = {
    "test runs": "test\nruns",
    "threshold": "thr.",
    "precision": "prec.",
    "best WR": "best\nWR",
    "WR/best": "WR /\nbest",
    "on target": "on\ntarget",
}


def print_folds(folds: list[dict[str, Any]], spread: dict[str, Any]) -> None:
    """Print each fold's operating point (from :func:`forewarn.learning.summary.fold_rows`) as one table.

    Example::

        >>> print_folds([], {"rule": "precision", "target_precision": 0.5})  # doctest: +SKIP
    """
    from rich import box

    from forewarn.learning.summary import FOLD_HEADER, fold_rows

    target = (
        f"precision {spread['target_precision']:.0%} ±10 points"
        if spread.get("rule") == "precision"
        else f"alert share {spread.get('alert_budget', 0):.1%} ±30 %"
    )
    table = Table(
        title=f"operating point per fold (target: {target}, WR >= 80 % of the best)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        caption="thr. = the fold's threshold; prec. = precision; warned = share of test runs warned; best WR = "
        "the best any threshold reaches on that window at the target",
    )
    for header in FOLD_HEADER:  # short headers, so the table fits 80 columns without cutting a figure
        table.add_column(_FOLD_CLI_HEADERS.get(header, header), justify="right", no_wrap=True)
    for row in fold_rows(folds):
        table.add_row(*row)
    console.print(table)


@app.command()
def backtest(
    db: DbOption = None,
    folds: Annotated[int, typer.Option(min=1, help="Consecutive test windows.")] = 5,
    family: Annotated[str, typer.Option(help=_FAMILY_HELP)] = "stack",
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
    print_folds(result.folds, result.overall.get("operating_point") or {})
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


def _import(
    kind: str, path: Path, db: str | None, skip_invalid: Path | None, assume_utc: bool, source: Path | None = None
) -> None:
    """Import ``path`` (``source``, the file the user named, is what the messages say: import-swf converts)."""
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
            f"imported {result.imported:,} of {result.rows_read:,} {kind} from {source or path} into {store.url} "
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


@app.command("import-prefect")
def import_prefect_command(
    db: DbOption = None,
    since: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Import runs that ended at or after this time (ISO-8601) instead of since the last import."),
    ] = None,
    include_operational: Annotated[
        bool, typer.Option("--include-operational", help="Also import forewarn's own training/forecast/... runs.")
    ] = False,
) -> None:
    """Import the flow runs and task runs that ended in Prefect (PREFECT_API_URL) into the store.

    Incremental: a second import reads only what ended since the first (less 10 minutes, skipped by id).
    Runs already in the store, such as those forewarn.flow recorded, are never overwritten. See docs/import.md.
    """
    from forewarn.orchestration.prefect_history import import_prefect_history

    start = parse_time(since, "--since")
    store = open_store(db)
    bar, progress = _progress_bar("importing Prefect flow runs")
    try:
        with bar:
            result = import_prefect_history(
                store, since=start, include_operational=include_operational, progress=progress
            )
    except ForewarnError as exc:
        raise _fail(exc, db) from None
    except Exception as exc:  # the Prefect client's own errors: an API that does not answer or refuses
        raise _fail(ForewarnError(f"the Prefect API did not answer as expected: {type(exc).__name__}: {exc}")) from None
    finally:
        store.close()
    console.print(
        escape(
            f"imported {result.runs_imported:,} flow run(s) and {result.attempts_imported:,} task attempt(s) "
            f"from {result.api_url} into {store.url} in {result.seconds:.1f} s; "
            f"{result.runs_known:,} run(s) were already in the store; "
            f"skipped {result.runs_skipped:,} run(s) of forewarn's own flows"
        ),
        soft_wrap=True,
    )


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
    skip_invalid: RejectsOption = None,
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
        _import("runs", csv_path, db, skip_invalid, False, source=path)
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
    start: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="First scheduled start (ISO-8601). Default: whole weeks from 2026-01-01 so the history ends "
            "within the last week, inside live scoring's lookback.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a synthetic run history in the import format, with documented failure mechanisms."""
    from rich.markup import escape

    from forewarn.history.simulate import (
        simulate_history,
        simulated_attempts,
        start_ending_by,
        write_simulated_history,
    )
    from forewarn.timeutil import utc_now

    first = parse_time(start, "--start")
    try:
        first = first or start_ending_by(runs, utc_now(), seed=seed)
        if attempts_out is None:
            write_simulated_history(out, runs, seed=seed, start=first)
        else:
            history = simulate_history(runs, seed=seed, start=first, include_cause=True)  # causes shape exceptions
            attempts = simulated_attempts(history, seed=seed)
            out.parent.mkdir(parents=True, exist_ok=True)
            history.drop(columns="failure_cause").to_csv(out, index=False)
            attempts_out.parent.mkdir(parents=True, exist_ok=True)
            attempts.to_csv(attempts_out, index=False)
            console.print(escape(f"wrote {len(attempts):,} simulated task attempts to {attempts_out}"), soft_wrap=True)
    except (ForewarnError, OSError) as exc:
        raise _import_failed(exc) from None
    began = first.astimezone(timezone.utc)  # --start may carry another offset: say it in UTC, as the file does
    console.print(escape(f"wrote {runs:,} simulated runs from {began:%Y-%m-%d %H:%M} UTC to {out}"), soft_wrap=True)
    follow = f" && forewarn import-attempts {attempts_out}" if attempts_out is not None else ""
    console.print(escape(f"next: forewarn import-runs {out}{follow}"), soft_wrap=True)


_SHORT_RUN_ID = 8  # characters of a run id kept when the whole id does not fit beside the reasons
_REASON_WORD_MAX = 40  # a reason's word longer than this (a pathological feature name) may fold
_FORECAST_START_WIDTH = len("2026-03-02 09:00")
_FORECAST_RISK_WIDTH = len("0.812")
_FORECAST_CHROME = 2 * 4 + 3 + 2  # four columns' padding, three separators and two edges of box.SIMPLE_HEAD


def print_forecast(rows: list[dict[str, object]], title: str) -> None:
    """Print forecast rows (:func:`forewarn.orchestration.forecast.forecast_rows`) as a table.

    Each run is its flow name over its flow run id, its start over how far off it is, its risk over the
    threshold, and its reasons one per line, wrapped between words. The reasons keep room for their
    longest word; the flow column takes what is left, and where that is narrower than a whole run id (an
    80-column terminal) the ids are cut to their first characters and the caption says so. So on 80
    columns no word is broken, in a reason or in a flow name that fits.

    Example::

        >>> print_forecast([], "0 of 0 scheduled run(s) in the next 24 h at risk")  # doctest: +SKIP
    """
    console.print(_forecast_table(rows, title, console.width))


def _forecast_table(rows: list[dict[str, object]], title: str, width: int) -> Table:
    from rich import box

    fixed = _FORECAST_START_WIDTH + _FORECAST_RISK_WIDTH + _FORECAST_CHROME
    longest_word = max((len(word) for row in rows for word in str(row["reasons"]).split()), default=1)
    reasons_width = min(longest_word, _REASON_WORD_MAX, max(_LIVE_NAME_MIN, width - fixed - _LIVE_NAME_MIN))
    flow_width = max(_LIVE_NAME_MIN, width - fixed - reasons_width)
    short_ids = any(len(str(row["flow run"])) > flow_width for row in rows)
    caption = f"flow run ids cut to their first {_SHORT_RUN_ID} characters to fit" if short_ids else None
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, padding=(0, 1), show_lines=bool(rows))
    table.add_column("flow\nflow run", overflow="fold", max_width=flow_width)  # a name too long folds here
    table.add_column("starts (UTC)\nin", no_wrap=True, width=_FORECAST_START_WIDTH)
    table.add_column("risk\nthr.", justify="right", no_wrap=True, width=_FORECAST_RISK_WIDTH)
    table.add_column("reasons", ratio=1, overflow="fold", min_width=reasons_width)  # wraps between words
    for row in rows:
        run_id = str(row["flow run"])
        shown = f"{run_id[:_SHORT_RUN_ID]}…" if short_ids and len(run_id) > _SHORT_RUN_ID else run_id
        reasons = str(row["reasons"]).split("; ") if row["reasons"] else ["-"]
        table.add_row(
            f"{escape(str(row['flow']))}\n[dim]{escape(shown)}[/]",
            f"{row['scheduled start (UTC)']}\nin {row['in (hours)']} h",
            f"{float(row['risk']):.3f}\n{float(row['threshold']):.3f}",  # type: ignore[arg-type]
            escape("\n".join(reasons)),
        )
    return table


@app.command()
def forecast(
    db: DbOption = None,
    horizon_hours: Annotated[float, typer.Option(min=0.01, help="Score runs scheduled within this many hours.")] = 24.0,
    all_runs: Annotated[bool, typer.Option("--all", help="List every scored run, not only those at risk.")] = False,
    notify: Annotated[
        bool,
        typer.Option("--notify", help="Record the scores and emit the at-risk event (once per run); default: preview."),
    ] = False,
    deployment: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--deployment", help="Only this deployment (name or flow/name); repeatable.", show_default=False),
    ] = None,
    tag: TagOption = None,
) -> None:
    """Score the scheduled flow runs of the next hours (from the Prefect API) and list those at risk.

    A preview by default: nothing is recorded and no event is emitted. --notify records the scores and emits
    the at-risk event for each run not warned about before (or whose risk rose since), as the forecast flow does.
    """
    from datetime import timedelta

    from forewarn.orchestration.forecast import cold_start, forecast_rows, forecast_upcoming_runs

    store = open_store(db, create=False)  # the model learned from this store: a new, empty one is a typo
    try:
        waiting = cold_start(store)
        if waiting is not None:  # not an error: nothing to forecast yet (exit 0, like a forecast with no run at risk)
            console.print(escape(waiting.message), soft_wrap=True)
            return
        table = forecast_upcoming_runs(
            store,
            horizon=timedelta(hours=horizon_hours),
            record=notify,
            emit_events=notify,
            deployments=deployment,
            tags=tag,
        )
    except ForewarnError as exc:
        raise _fail(exc) from None
    rows = forecast_rows(table, warned_only=not all_runs)
    at_risk = int(table["warned"].astype(bool).sum()) if len(table) else 0
    notified = int(table["notified"].astype(bool).sum()) if len(table) else 0
    done = f"{notified} warned about now" if notify else "preview: nothing recorded or notified (--notify to warn)"
    print_forecast(rows, f"{at_risk} of {len(table)} scheduled run(s) in the next {horizon_hours:g} h at risk; {done}")


# --- live monitoring -------------------------------------------------------------------------------------

# column -> header of the live-monitoring tables; compact, so both fit an 80-column terminal
_LIVE_COLUMNS = {
    "scored": "runs",
    "pending": "pend",
    "failures": "fail",
    "warnings": "warn",
    "WR": "WR",
    "precision": "prec",
    "false_alarms": "FA",
    "false_alarm_rate": "FAR",
}
_LIVE_NAME_MIN = 10  # a date (2026-03-02) or a flow name's first ten characters on one line
_LIVE_RATES = ("WR", "precision", "false_alarm_rate")


def _live_cell(column: str, value: float | None) -> str:
    if value is None or value != value:  # None or NaN: undefined (no failure, no warning)
        return "-"
    return f"{float(value):.0%}" if column in _LIVE_RATES else f"{int(value):,}"


def _live_table(frame, first: str, title: str, names=None) -> Table:  # type: ignore[no-untyped-def]
    from rich import box

    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column(first, overflow="fold", min_width=_LIVE_NAME_MIN)  # names fold; figures never do
    for header in _LIVE_COLUMNS.values():
        table.add_column(header, justify="right", no_wrap=True)
    for index, row in frame.iterrows():
        label = names(index) if names else str(index)
        table.add_row(escape(label), *(_live_cell(c, row[c]) for c in _LIVE_COLUMNS))
    return table


def print_monitor(result) -> None:  # type: ignore[no-untyped-def]
    """Render a :class:`forewarn.learning.monitoring.MonitorReport`: per flow, over time, drift, the advice."""
    window = f"{result.since:%Y-%m-%d %H:%M} to {result.until:%Y-%m-%d %H:%M} UTC"
    model = f"model {result.model_version}" if result.model_version else "no model installed"
    overall = result.overall
    console.print(escape(f"live warnings of {model}, runs from {window}"))
    if overall["scored"]:
        console.print(_live_table(result.per_flow, "flow", "per flow"))
        step = "week of" if result.freq == "week" else "day"
        console.print(_live_table(result.over_time, step, f"per {result.freq} (UTC)", names=lambda t: f"{t:%Y-%m-%d}"))
    console.print(
        f"all flows: {overall['scored']:,} scored run(s), {overall['pending']:,} pending; "
        f"WR {_live_cell('WR', overall['WR'])}, precision {_live_cell('precision', overall['precision'])}, "
        f"{overall['false_alarms']:,} false alarm(s)"
    )
    console.print(escape(_drift_line(result)))
    style = "bold red" if result.advice.retrain else "bold green"
    console.print(f"[{style}]{escape(result.advice.headline)}[/]")
    console.print(
        "runs = scored runs; pend = not ended yet; fail/warn = failed/warned runs; WR = warned failures / "
        "failures; prec = warned failures / warnings; FA = false alarms (warned runs that did not fail); "
        "FAR = FA / runs that did not fail. Over ended runs, CANCELLED left out."
    )


def _drift_line(result) -> str:  # type: ignore[no-untyped-def]
    drift = result.drift
    parts = [f"drift since {result.drift_since:%Y-%m-%d %H:%M}:"]
    psi = drift["psi"]
    parts.append(f"risk PSI {psi:.3f} over {drift['live_risks']:,} live risk(s);" if psi is not None else "risk PSI -;")
    live, train = drift["live_failure_rate"], drift["train_failure_rate"]
    if live is None or train is None:
        parts.append(f"failure rate - ({drift['live_runs']:,} ended run(s))")
    else:
        low, high = drift["failure_rate_change_ci"]
        parts.append(
            f"failure rate {live:.1%} of {drift['live_runs']:,} run(s) vs {train:.1%} in training "
            f"({(live - train) * 100:+.1f} points, {drift['confidence']:.0%} CI {low * 100:+.1f} to {high * 100:+.1f})"
        )
    return " ".join(parts)


@app.command()
def monitor(
    db: DbOption = None,
    model_dir: Annotated[Optional[str], typer.Option(help="Default FOREWARN_MODEL_DIR.")] = None,  # noqa: UP045
    since: Annotated[Optional[str], typer.Option(help="Runs from (ISO-8601); default 28 days ago.")] = None,  # noqa: UP045
    until: Annotated[Optional[str], typer.Option(help="Runs before (ISO-8601); default now.")] = None,  # noqa: UP045
    drift_days: Annotated[float, typer.Option(min=0.01, help="Compare the last N days with training.")] = 7.0,
    bucket: Annotated[str, typer.Option(help="Time buckets: week or day.")] = "week",
    min_runs: Annotated[int, typer.Option(min=1, help="Fewest runs a drift check judges on.")] = 50,
    psi_limit: Annotated[float, typer.Option(min=0.0, help="Risk PSI that recommends retraining.")] = 0.25,
    json_path: Annotated[Optional[str], typer.Option("--json", help="Write all figures as one JSON object.")] = None,  # noqa: UP045
    tag: TagOption = None,
) -> None:
    """Did the live warnings come true? Precision, WR, false alarms per flow and over time, drift, retrain advice."""
    import json

    from forewarn.learning.monitoring import FREQUENCIES
    from forewarn.scoring.monitor import monitor_store

    if bucket not in FREQUENCIES:
        raise typer.BadParameter(f"{bucket!r} is not one of {', '.join(FREQUENCIES)}", param_hint="--bucket")
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    store = open_store(db, create=False)
    try:
        result = monitor_store(
            store, model_dir=model_dir, now=end, since=start, drift_days=drift_days, freq=bucket,
            min_runs=min_runs, psi_limit=psi_limit, tags=tag,
        )
    except (ForewarnError, ValueError) as exc:
        raise _fail(exc, db) from None
    print_monitor(result)
    if json_path:
        with open(json_path, "w") as out:
            json.dump(result.to_json(), out, indent=2)
        console.print(escape(f"figures written to {json_path}"), soft_wrap=True)


@app.command("serve-metrics")
def serve_metrics_command(
    db: DbOption = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to serve /metrics on.")] = 9464,
    addr: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface.")] = "127.0.0.1",
    cache_seconds: Annotated[float, typer.Option(min=0.0, help="Reuse windowed figures this long.")] = 10.0,
    counts_seconds: Annotated[
        float, typer.Option(min=0.0, help="Re-read the whole-store counters (a table scan) this often.")
    ] = 120.0,
    live_days: Annotated[float, typer.Option(min=0.01, help="Live figures and latest risks over N days.")] = 7.0,
    model_dir: Annotated[Optional[str], typer.Option(help="Default FOREWARN_MODEL_DIR.")] = None,  # noqa: UP045
) -> None:
    """Serve Prometheus metrics read from the store: attempts, retries, fallbacks, breakers, risk, live WR."""
    import threading
    from datetime import timedelta

    from forewarn.scoring.exporter import serve_metrics

    store = open_store(db, create=False)
    try:
        server, _ = serve_metrics(
            store, port=port, addr=addr, cache_seconds=cache_seconds, counts_seconds=counts_seconds,
            live_window=timedelta(days=live_days), model_dir=model_dir,
        )
    except (ForewarnError, OSError, ValueError) as exc:
        raise _fail(exc, db) from None
    where = f"http://{addr}:{server.server_port}/metrics"
    console.print(escape(f"serving metrics of {store.url} on {where}"), soft_wrap=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


@app.command()
def chaos(
    runs: Annotated[int, typer.Option("--runs", min=1, help="Runs of the order per configuration.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same faults and figures.")] = 0,
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--out", dir_okay=False, help="Also write the markdown table here.", show_default=False),
    ] = None,
    plot: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--plot",
            dir_okay=False,
            help="Also draw success rate against fault rate (.png, .svg or .pdf; needs matplotlib).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The ER experiment: the example order under seeded faults, per protection level (no Prefect server;
    a virtual clock, so backoff takes no time). Prints success rate, ER, attempts and durations."""
    from forewarn.resilience.experiment import markdown_table, run_experiment

    if plot is not None and plot.suffix.lower() not in _PLOT_SUFFIXES:  # before the experiment, not after it
        raise typer.BadParameter(
            f"{plot} has no image suffix; the plot's format comes from it: {', '.join(_PLOT_SUFFIXES)} "
            "(e.g. --plot er.png)",
            param_hint="--plot",
        )
    results = run_experiment(runs=runs, seed=seed)
    table = markdown_table(results)
    console.print(escape(table), soft_wrap=True)
    try:
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(table + "\n", encoding="utf-8")
            console.print(escape(f"wrote the table to {out}"), soft_wrap=True)
        if plot is not None:
            _plot_experiment(results, plot)
            console.print(escape(f"wrote the plot to {plot}"), soft_wrap=True)
    except (ForewarnError, OSError) as exc:
        raise _fail(exc) from None


_PLOT_SUFFIXES = (".png", ".svg", ".pdf")
"""The formats ``chaos --plot`` writes, by the file's suffix (matplotlib's own, without extra packages)."""


def _plot_experiment(results, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Success rate against the transient fault rate, one line per protection level."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise _fail(OSError("--plot needs matplotlib (pip install matplotlib); the table needs nothing")) from None
    from forewarn.resilience.experiment import LEVELS, SCENARIOS

    rates = {s.name: s.transient_rate for s in SCENARIOS if not s.payment_outage and not s.permanent_rate}
    fig, ax = plt.subplots(figsize=(6, 4))
    for level in LEVELS:
        points = sorted(
            (rates[r.scenario], r.success_rate) for r in results if r.level == level and r.scenario in rates
        )
        ax.plot([100 * x for x, _ in points], [100 * y for _, y in points], marker="o", label=level)
    ax.set_xlabel("transient faults per call (%)")
    ax.set_ylabel("runs completed (%)")
    ax.set_title(f"Example order, {results[0].runs:,} runs per point")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    """Entry point for ``python -m forewarn``."""
    app()


__all__ = ["app", "main", "print_forecast", "print_metrics", "print_monitor", "print_report"]
