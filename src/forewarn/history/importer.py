"""Import run and task-attempt histories from other schedulers: CSV files checked whole, then written at once.

:func:`import_runs` loads a run-history CSV into the ``flow_runs`` table, :func:`import_attempts` a
task-attempt CSV into ``task_attempts`` (``docs/import.md`` has both formats, with examples). Both:

* **check every row first**, with line numbers (line 1 is the header, the first data row is line 2), and
  reject the file whole with :class:`~forewarn.errors.ImportValidationError` (``.problems`` holds
  ``(line, reason)`` pairs) unless ``skip_invalid`` names a file for the rejected rows;
* are **all-or-nothing**: the valid rows are written in one transaction, so a failure half-way leaves the
  store as it was;
* are **idempotent**: rows are upserted on ``run_id`` (attempts on ``(task_run_id, attempt)``, execution
  ``''``, with the unambiguous :func:`~forewarn.history.validation.task_run_key`), so importing a file twice
  gives the same rows;
* read the file **streaming**, with a cap on each cell and line (:mod:`forewarn.history._reading`), so memory
  grows with the file's size and a hostile cell is refused with its line number;
* are **fast**: checks are vectorised with pandas and rows go to the store in ``executemany`` chunks
  (400,000 runs in about 10 s on SQLite on a 2-core machine, see ``bench/import_runs.py``).

Run states, case-insensitive (:data:`~forewarn.history.validation.RUN_STATES`): ``COMPLETED`` or
``SUCCESS`` → ``COMPLETED``; ``FAILED``, ``CRASHED``, ``TIMEDOUT`` (failures); ``CANCELLED`` (kept, neither
failure nor success); ``RUNNING`` and ``SCHEDULED`` (unfinished, as forewarn records them). Attempt states
map to outcomes (:data:`~forewarn.history.validation.ATTEMPT_STATES`): ``COMPLETED``/``SUCCESS`` →
``success``, ``FAILED``/``FAILURE`` → ``failure``, ``TIMEDOUT``/``TIMEOUT`` → ``timeout``, ``FALLBACK`` →
``fallback``, ``FALLBACK_FAILURE`` → ``fallback_failure``.

The format's rules live in :mod:`forewarn.history.validation` (its :func:`check_runs` and :func:`check_attempts`
are re-exported here); :mod:`forewarn.history.simulate`, which writes histories in this format, parses them
with the same checks.

Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> from forewarn.store import TelemetryStore
    >>> csv = Path(tempfile.mkdtemp()) / "runs.csv"
    >>> _ = csv.write_text("run_id,flow_name,scheduled_start,state,feature_input_rows\\n"
    ...                    "r1,etl,2026-01-01T00:00:00Z,success,1200\\n"
    ...                    "r2,etl,2026-01-02T00:00:00Z,FAILED,9000\\n")
    >>> store = TelemetryStore("sqlite://")
    >>> result = import_runs(store, csv)
    >>> result.imported, result.rejected
    (2, 0)
    >>> store.runs()[["flow_run_id", "state", "feature_input_rows"]].to_dict("list")
    {'flow_run_id': ['r1', 'r2'], 'state': ['COMPLETED', 'FAILED'], 'feature_input_rows': [1200, 9000]}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from forewarn.history._reading import MAX_CELL_CHARS, MAX_LINE_BYTES, read_history_csv
from forewarn.history._rejects import refuse_the_imported_file, write_rejects
from forewarn.history.validation import CheckedHistory, check_attempts, check_runs
from forewarn.store import TelemetryStore

Progress = Callable[[int, int], None]
"""``progress(done, total)``: rows written so far out of the rows to write."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What one import did.

    ``rows_read`` counts the file's data rows (blank lines are not rows). ``imported`` rows were written
    (a row repeated identically counts each time but is one run or attempt in the store) and ``rejected``
    rows were written to ``rejects_path`` instead (``None`` without ``skip_invalid``), so
    ``rows_read == imported + rejected``. ``seconds`` is the wall-clock time of the whole import.
    """

    path: Path
    rows_read: int
    imported: int
    rejected: int
    rejects_path: Path | None
    seconds: float


def _import(
    path: Path | str,
    check: Callable[..., CheckedHistory],
    write: Callable[..., int],
    *,
    skip_invalid: Path | str | None,
    progress: Progress | None,
    chunk_rows: int,
    assume_utc: bool,
) -> ImportResult:
    started = time.perf_counter()
    path = Path(path)
    rejects_path = None if skip_invalid is None else Path(skip_invalid)
    if rejects_path is not None:
        refuse_the_imported_file(path, rejects_path)
    raw = read_history_csv(path)
    checked = check(raw, source=path, assume_utc=assume_utc)
    if rejects_path is None:
        checked.valid(path)
    else:
        write_rejects(raw, checked, rejects_path)
    write(checked.frame, chunk_rows=chunk_rows, progress=progress)
    return ImportResult(
        path=path,
        rows_read=checked.rows_read,
        imported=checked.rows_read - len(checked.rejected),
        rejected=len(checked.rejected),
        rejects_path=rejects_path,
        seconds=time.perf_counter() - started,
    )


def import_runs(
    store: TelemetryStore,
    path: Path | str,
    *,
    skip_invalid: Path | str | None = None,
    progress: Progress | None = None,
    chunk_rows: int = 50_000,
    assume_utc: bool = False,
) -> ImportResult:
    """Import a run-history CSV into ``store``'s ``flow_runs`` (``source = "import"``), all rows or none.

    Every row is checked first (:func:`check_runs`). Any invalid row rejects the whole file with
    :class:`~forewarn.errors.ImportValidationError` and nothing is written, unless ``skip_invalid`` names
    a CSV file: then the valid rows are imported and the rejected ones written there, with their columns as
    read plus ``line`` and ``reason`` (the file is written, header only, even when no row was rejected).
    A header problem rejects the file in both cases. Rows are upserted on ``run_id`` in one transaction,
    ``chunk_rows`` per ``executemany``; ``progress(done, total)`` follows the writing. ``assume_utc`` reads
    times without an offset as UTC instead of rejecting them.

    Example::

        >>> import tempfile
        >>> from forewarn.store import TelemetryStore
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "runs.csv").write_text("run_id,flow_name,scheduled_start,state\\n"
        ...                                      "r1,etl,2026-01-01T00:00:00Z,COMPLETED\\n"
        ...                                      "r2,etl,2026-01-01 01:00,FAILED\\n")
        >>> store = TelemetryStore("sqlite://")
        >>> result = import_runs(store, folder / "runs.csv", skip_invalid=folder / "rejects.csv")
        >>> result.imported, result.rejected, len(store.runs())
        (1, 1, 1)
        >>> print((folder / "rejects.csv").read_text().splitlines()[1])  # doctest: +ELLIPSIS
        r2,etl,2026-01-01 01:00,FAILED,3,scheduled_start '2026-01-01 01:00' has no UTC offset; ...
    """
    return _import(
        path,
        check_runs,
        store.record_runs_frame,
        skip_invalid=skip_invalid,
        progress=progress,
        chunk_rows=chunk_rows,
        assume_utc=assume_utc,
    )


def import_attempts(
    store: TelemetryStore,
    path: Path | str,
    *,
    skip_invalid: Path | str | None = None,
    progress: Progress | None = None,
    chunk_rows: int = 50_000,
    assume_utc: bool = False,
) -> ImportResult:
    """Import a task-attempt CSV into ``store``'s ``task_attempts``, all rows or none, like :func:`import_runs`.

    Rows are checked by :func:`check_attempts` and upserted on ``(task_run_id, attempt)`` with
    ``task_run_id = "<len(run_id)>:<run_id>:<task_name>"`` (:func:`~forewarn.history.validation.task_run_key`),
    ``flow_run_id = run_id`` and ``used_fallback`` true for the ``fallback`` and ``fallback_failure``
    outcomes. The runs need not be imported first (attempts of a run the store does not know have no
    ``flow_name`` in
    :meth:`~forewarn.store.telemetry.TelemetryStore.attempts`).

    Example::

        >>> import tempfile
        >>> from forewarn.store import TelemetryStore
        >>> csv = Path(tempfile.mkdtemp()) / "attempts.csv"
        >>> _ = csv.write_text("run_id,task_name,attempt,start_time,end_time,state,exception_type\\n"
        ...                    "r1,load,1,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,FAILED,ConnectionError\\n"
        ...                    "r1,load,2,2026-01-01T00:00:07Z,2026-01-01T00:00:09Z,COMPLETED,\\n")
        >>> store = TelemetryStore("sqlite://")
        >>> import_attempts(store, csv).imported
        2
        >>> store.attempts()[["task_run_id", "attempt", "outcome"]].to_dict("list")
        {'task_run_id': ['2:r1:load', '2:r1:load'], 'attempt': [1, 2], 'outcome': ['failure', 'success']}
    """
    return _import(
        path,
        check_attempts,
        store.record_attempts_frame,
        skip_invalid=skip_invalid,
        progress=progress,
        chunk_rows=chunk_rows,
        assume_utc=assume_utc,
    )


__all__ = [
    "MAX_CELL_CHARS",
    "MAX_LINE_BYTES",
    "ImportResult",
    "Progress",
    "check_attempts",
    "check_runs",
    "import_attempts",
    "import_runs",
    "read_history_csv",
]
