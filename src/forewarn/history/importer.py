"""Import run and task-attempt histories from other schedulers: CSV files checked whole, then written at once.

:func:`import_runs` loads a run-history CSV into the ``flow_runs`` table, :func:`import_attempts` a
task-attempt CSV into ``task_attempts`` (``docs/import.md`` has both formats, with examples). Both:

* **check every row first**, with line numbers (line 1 is the header, the first data row is line 2), and
  reject the file whole with :class:`~forewarn.errors.ImportValidationError` (``.problems`` holds
  ``(line, reason)`` pairs) unless ``skip_invalid`` names a file for the rejected rows;
* are **all-or-nothing**: the valid rows are written in one transaction, so a failure half-way leaves the
  store as it was;
* are **idempotent**: rows are upserted on ``run_id`` (attempts on ``(run_id:task_name, attempt)``), so
  importing a file twice gives the same rows;
* are **fast**: parsing is vectorised with pandas and rows go to the store in ``executemany`` chunks
  (400,000 runs in about 10 s on SQLite on a 2-core machine, see ``bench/import_runs.py``).

Run states, case-insensitive (:data:`RUN_STATES`): ``COMPLETED`` or ``SUCCESS`` → ``COMPLETED``;
``FAILED``, ``CRASHED``, ``TIMEDOUT`` (failures); ``CANCELLED`` (kept, neither failure nor success);
``RUNNING`` and ``SCHEDULED`` (unfinished, as forewarn records them). Attempt states map to outcomes
(:data:`ATTEMPT_STATES`): ``COMPLETED``/``SUCCESS`` → ``success``, ``FAILED``/``FAILURE`` → ``failure``,
``TIMEDOUT``/``TIMEOUT`` → ``timeout``, ``FALLBACK`` → ``fallback``, ``FALLBACK_FAILURE`` →
``fallback_failure``.

This module is the one implementation of the import format's rules: :mod:`forewarn.history.simulate`, which
writes histories in this format, parses them with :func:`check_runs` and :func:`check_attempts` too.

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

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forewarn.errors import ConfigurationError, ImportValidationError
from forewarn.records import FEATURE_PREFIX, AttemptOutcome, RunState, parameters_hash
from forewarn.store import TelemetryStore
from forewarn.store.schema import ID_LENGTH

RUN_REQUIRED: tuple[str, ...] = ("run_id", "flow_name", "scheduled_start", "state")
"""Columns a run-history CSV must have."""

RUN_OPTIONAL: tuple[str, ...] = ("deployment", "start_time", "end_time", "parameters", "flow_version")
"""Columns a run-history CSV may have, besides any number of ``feature_<name>`` columns."""

ATTEMPT_REQUIRED: tuple[str, ...] = ("run_id", "task_name", "attempt", "start_time", "end_time", "state")
"""Columns a task-attempt CSV must have."""

ATTEMPT_OPTIONAL: tuple[str, ...] = ("exception_type",)
"""Columns a task-attempt CSV may have."""

RUN_STATES: dict[str, RunState] = {
    "COMPLETED": RunState.COMPLETED,
    "SUCCESS": RunState.COMPLETED,
    "FAILED": RunState.FAILED,
    "CRASHED": RunState.CRASHED,
    "TIMEDOUT": RunState.TIMEDOUT,
    "CANCELLED": RunState.CANCELLED,
    "RUNNING": RunState.RUNNING,
    "SCHEDULED": RunState.SCHEDULED,
}
"""Accepted ``state`` values of a run-history CSV (upper-cased) and the run state each becomes."""

ATTEMPT_STATES: dict[str, AttemptOutcome] = {
    "COMPLETED": AttemptOutcome.SUCCESS,
    "SUCCESS": AttemptOutcome.SUCCESS,
    "FAILED": AttemptOutcome.FAILURE,
    "FAILURE": AttemptOutcome.FAILURE,
    "TIMEDOUT": AttemptOutcome.TIMEOUT,
    "TIMEOUT": AttemptOutcome.TIMEOUT,
    "FALLBACK": AttemptOutcome.FALLBACK,
    "FALLBACK_FAILURE": AttemptOutcome.FALLBACK_FAILURE,
}
"""Accepted ``state`` values of a task-attempt CSV (upper-cased) and the attempt outcome each becomes."""

_UNFINISHED = frozenset({RunState.RUNNING.value, RunState.SCHEDULED.value})
_EXAMPLE_TIME = "2026-01-01T00:00:00Z"
_PARSER_LINE = re.compile(r"line (\d+)")
_OFFSET = re.compile(r"(?:Z|z|[+-]\d{2}(?::?\d{2})?)$")

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


@dataclass(frozen=True, slots=True)
class CheckedHistory:
    """A history checked row by row: the valid rows parsed, and the problems of the others.

    ``frame`` holds the valid rows, parsed (one row per run or attempt: identical repeats are merged);
    ``problems`` the ``(line, reason)`` pairs of the invalid rows, by line; ``rejected`` the positions of
    the invalid rows in the checked table; ``rows_read`` the number of non-blank rows.
    """

    frame: pd.DataFrame
    problems: list[tuple[int, str]]
    rejected: np.ndarray
    rows_read: int

    def valid(self, source: Path | str) -> pd.DataFrame:
        """``frame`` when no row has a problem; else :class:`~forewarn.errors.ImportValidationError` for ``source``."""
        if self.problems:
            raise ImportValidationError(source, self.problems)
        return self.frame


class _Problems:
    """Reasons per row position of the checked table (row ``i`` is line ``i + 2`` of the file)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pairs: list[tuple[int, str]] = []  # (line, reason)

    def add(self, mask: np.ndarray | pd.Series, reason: str | Callable[[int], str]) -> None:
        """Add ``reason`` (or ``reason(i)``) for every row ``i`` where ``mask`` is true."""
        for i in np.flatnonzero(np.asarray(mask, dtype=bool)):
            self.pairs.append((int(i) + 2, reason if isinstance(reason, str) else reason(int(i))))

    def mask(self) -> np.ndarray:
        """True for every row with at least one problem."""
        out = np.zeros(self.n, dtype=bool)
        for line, _reason in self.pairs:
            out[line - 2] = True
        return out

    def sorted(self) -> list[tuple[int, str]]:
        """The ``(line, reason)`` pairs by line; a line's reasons keep the order they were found in."""
        return sorted(self.pairs, key=lambda pair: pair[0])


def read_history_csv(path: Path | str) -> pd.DataFrame:
    """Read a history CSV as text: every cell a string exactly as written (empty cells are ``""``).

    Blank lines are kept as rows of empty cells so that row ``i`` is line ``i + 2`` of the file (for a
    file without line breaks inside quoted cells); header names are stripped of surrounding spaces and a
    UTF-8 byte-order mark is ignored. A file that cannot be split into rows and columns (a row with more
    cells than the header, an unclosed quote, not UTF-8) raises
    :class:`~forewarn.errors.ImportValidationError` naming the line.

    Example::

        >>> import tempfile
        >>> csv = Path(tempfile.mkdtemp()) / "h.csv"
        >>> _ = csv.write_text("run_id,state\\nr1,COMPLETED\\n\\nr2,\\n")
        >>> read_history_csv(csv).to_dict("list")
        {'run_id': ['r1', '', 'r2'], 'state': ['COMPLETED', '', '']}
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise ImportValidationError(path, [(1, "the file is empty; the first line must be the header")]) from None
    except pd.errors.ParserError as exc:
        message = str(exc).replace("Error tokenizing data. C error: ", "").strip()
        found = _PARSER_LINE.search(message)
        line = int(found.group(1)) if found else 1
        raise ImportValidationError(
            path, [(line, f"cannot split the file into columns here ({message}); quote cells that contain commas")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ImportValidationError(
            path, [(1, f"the file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8")]
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.astype(object)


def _check_header(
    raw: pd.DataFrame, required: Sequence[str], optional: Sequence[str], *, features: bool, source: Path | str
) -> None:
    """Raise for a header without the required columns or with columns the format does not know."""
    columns = [str(c) for c in raw.columns]
    problems: list[tuple[int, str]] = []
    missing = [c for c in required if c not in columns]
    if missing:
        problems.append(
            (
                1,
                f"missing required column(s) {', '.join(missing)}; the header has {', '.join(columns)} "
                f"and needs {', '.join(required)}",
            )
        )
    known = set(required) | set(optional)
    unknown = [c for c in columns if c not in known and not (features and c.startswith(FEATURE_PREFIX))]
    if unknown:
        hint = (
            f"rename a pre-run attribute to feature_<name> (e.g. feature_{unknown[0]}) or drop the column"
            if features
            else "drop the column"
        )
        problems.append(
            (1, f"unknown column(s) {', '.join(unknown)}; the format has {', '.join([*required, *optional])}: {hint}")
        )
    if features and FEATURE_PREFIX in columns:
        problems.append((1, f"column {FEATURE_PREFIX!r} has no name; write feature_<name>, e.g. feature_input_rows"))
    if problems:
        raise ImportValidationError(source, problems)


def _cells(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The cells of a column as stripped text (a numpy unicode array) and the mask of blank cells."""
    values = col.to_numpy(dtype=object)
    isna = pd.isna(values)
    text = np.strings.strip(np.where(isna, "", values).astype(str))
    return text, isna | (text == "")


def _optional_text(frame: pd.DataFrame, name: str) -> pd.Series:
    """A text column as object dtype, stripped, with ``None`` for blanks (all ``None`` when absent)."""
    if name not in frame:
        return pd.Series([None] * len(frame), dtype=object)
    text, blank = _cells(frame[name])
    out = text.astype(object)
    out[blank] = None
    return pd.Series(out, dtype=object)


def _blank_rows(raw: pd.DataFrame) -> np.ndarray:
    """True for rows whose every cell is empty or spaces (blank lines)."""
    blank = np.zeros(len(raw), dtype=bool)
    if raw.empty or not len(raw.columns):
        return blank
    candidates = np.flatnonzero(_optional_text(raw, str(raw.columns[0])).isna().to_numpy())
    if len(candidates):
        cells = raw.iloc[candidates].to_numpy(dtype=str)
        blank[candidates] = np.all(np.strings.str_len(np.strings.strip(cells)) == 0, axis=1)
    return blank


def _required_text(raw: pd.DataFrame, name: str, found: _Problems, blank: np.ndarray, reason: str) -> pd.Series:
    """A text column with a problem for each empty cell (blank lines aside)."""
    text = _optional_text(raw, name)
    found.add(text.isna().to_numpy() & ~blank, reason)
    return text


def _too_long(text: pd.Series, found: _Problems, name: str) -> None:
    lengths = text.str.len().to_numpy(dtype=float, na_value=0.0)
    found.add(
        lengths > ID_LENGTH,
        lambda i: f"{name} is {int(lengths[i])} characters long; the store keeps ids of at most {ID_LENGTH}",
    )


def _times(raw: pd.DataFrame, name: str, found: _Problems, *, assume_utc: bool, source: Path | str) -> pd.Series:
    """A time column as ``datetime64[ns, UTC]`` (all NaT when absent), problems for unparseable cells.

    Text cells must be ISO-8601 with a UTC offset (``Z`` or ``+02:00``) unless ``assume_utc``. A column that
    already holds datetimes (a DataFrame rather than CSV text) is taken as it is when timezone-aware; a
    naive one rejects the frame, like a header problem, unless ``assume_utc``.
    """
    if name not in raw.columns:
        return pd.Series(pd.NaT, index=range(len(raw)), dtype="datetime64[ns, UTC]")
    col = raw[name]
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return col.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(col.dtype):
        if not assume_utc:
            reason = (
                f"column {name!r} holds times without a UTC offset; pass assume_utc=True "
                f"or write them as {_EXAMPLE_TIME}"
            )
            raise ImportValidationError(source, [(1, reason)])
        return col.dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
    text, blank = _cells(col)
    cells = text.astype(object)
    cells[blank] = None
    parsed = pd.to_datetime(pd.Series(cells), utc=True, format="ISO8601", errors="coerce")
    parsed = parsed.astype("datetime64[ns, UTC]")
    bad = ~blank & parsed.isna().to_numpy()
    found.add(bad, lambda i: f"{name} {str(text[i])!r} is not an ISO-8601 time; write it like {_EXAMPLE_TIME}")
    if not assume_utc:
        zulu = np.strings.endswith(text, "Z") | np.strings.endswith(text, "z")
        check = np.flatnonzero(~blank & ~bad & ~zulu)  # usually none: exports write Z
        no_offset = np.zeros(len(text), dtype=bool)
        no_offset[check] = [_OFFSET.search(str(text[i])) is None for i in check]
        found.add(
            no_offset,
            lambda i: f"{name} {str(text[i])!r} has no UTC offset; write it like {text[i]}Z (or pass assume_utc=True)",
        )
    return parsed


def _end_before_start(raw: pd.DataFrame, start: pd.Series, end: pd.Series, found: _Problems) -> None:
    backwards = (end < start).fillna(False).to_numpy(dtype=bool)
    if backwards.any():
        s_text, e_text = _optional_text(raw, "start_time"), _optional_text(raw, "end_time")
        found.add(backwards, lambda i: f"end_time {e_text[i]} is before start_time {s_text[i]}")


def _states(raw: pd.DataFrame, found: _Problems, blank: np.ndarray, accepted: dict[str, Any], kind: str) -> pd.Series:
    """``state`` mapped through ``accepted`` (case-insensitive) to its value; problems for the others."""
    text = _optional_text(raw, "state")
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    mapped = [accepted.get(str(u).upper()) for u in uniques]
    values = np.asarray([None if m is None else m.value for m in mapped] + [None], dtype=object)[codes]
    names = " or ".join([", ".join(list(accepted)[:-1]), list(accepted)[-1]])
    found.add(
        ~blank & (values == None),  # noqa: E711 - elementwise
        lambda i: (
            f"state is empty; give the {kind}'s final state: {names}"
            if text[i] is None
            else f"state {text[i]!r} is not {'a run' if kind == 'run' else 'an attempt'} state; use {names}"
        ),
    )
    return pd.Series(values, dtype=object)


def _parse_json_objects(text: pd.Series, name: str, found: _Problems) -> tuple[pd.Series, pd.Series]:
    """JSON-object cells as dicts (``None`` when empty) and their :func:`parameters_hash`, each text once."""
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    values: list[dict[str, Any] | None] = []
    reasons: dict[int, str] = {}
    example = '{"batch_size": 500}'
    for code, cell in enumerate(uniques):
        try:
            value = json.loads(cell)
        except json.JSONDecodeError as exc:
            reasons[code] = (
                f"{name} is not valid JSON ({exc.msg} at character {exc.pos}); write an object like {example}"
            )
            value = None
        if value is not None and not isinstance(value, dict):
            reasons[code] = f"{name} must be a JSON object, not {type(value).__name__}; write it like {example}"
            value = None
        values.append(value)
    found.add(np.isin(codes, list(reasons)), lambda i: reasons[int(codes[i])])
    hashes = [parameters_hash(v) for v in values]
    parsed = np.asarray([*values, None], dtype=object)[codes]  # rows with equal text share one dict
    return pd.Series(parsed, dtype=object), pd.Series(np.asarray([*hashes, None], dtype=object)[codes], dtype=object)


def _feature(raw: pd.DataFrame, name: str, valid: np.ndarray) -> pd.Series:
    """A ``feature_*`` column: numeric when every non-empty cell of a valid row is a number, else text.

    Text cells are stripped, with ``None`` for empty ones; numbers are ``int64`` when all are whole and
    present, else ``float64`` with NaN. Invalid rows do not take part in the choice (they are not imported).
    A column that already holds numbers or booleans (a DataFrame rather than CSV text) keeps its values.
    """
    col = raw[name]
    if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        return pd.Series(col.to_numpy(), dtype=col.dtype)
    text = _optional_text(raw, name)
    numbers = pd.to_numeric(text.where(valid, None), errors="coerce")
    if not (numbers.isna() == (text.isna() | ~valid)).all():
        return text
    present = numbers[valid]
    if present.notna().all() and (present == np.floor(present)).all():
        return numbers.where(valid, 0).astype(np.int64)  # invalid rows get 0: they are not imported
    return numbers.astype(np.float64)


def _merge_repeats(
    frame: pd.DataFrame, keys: Sequence[str], valid: np.ndarray, found: _Problems, describe: Callable[[int], str]
) -> np.ndarray:
    """Positions of the valid rows to write, identical repeats merged.

    Rows that repeat a key (``keys``) with other values become problems, every copy of them: the file
    does not say which one is right. ``describe(position)`` names the key in the message.
    """
    positions = np.flatnonzero(valid)
    if not frame[list(keys)].iloc[positions].duplicated().any():  # the usual case: every key once
        return positions
    compare = frame.drop(columns=[c for c in ("parameters",) if c in frame.columns])  # dicts; the hash stays
    first = positions[~compare.iloc[positions].duplicated(keep="first").to_numpy()]
    clash = compare.iloc[first].duplicated(subset=list(keys), keep=False).to_numpy()
    if not clash.any():
        return first
    key_of = list(frame[list(keys)].itertuples(index=False, name=None))
    clashing = {key_of[p] for p in first[clash]}
    lines: dict[tuple[Any, ...], list[int]] = {}
    for p in positions:
        if key_of[p] in clashing:
            lines.setdefault(key_of[p], []).append(int(p) + 2)
    for at in lines.values():
        for line in at:
            others = ", ".join(str(x) for x in at if x != line)
            found.pairs.append(
                (line, f"{describe(line - 2)} is also on line(s) {others} with other values; keep only the right row")
            )
    return first[~clash]


def check_runs(raw: pd.DataFrame, *, source: Path | str = "<DataFrame>", assume_utc: bool = False) -> CheckedHistory:
    """Check a run history (the text of a run-history CSV, see :func:`read_history_csv`) row by row.

    Header problems (a required column missing, an unknown column) raise
    :class:`~forewarn.errors.ImportValidationError` at once. Row problems are collected per line:
    ``run_id``, ``flow_name``, ``scheduled_start`` or ``state`` empty; a ``run_id`` longer than 255
    characters; a time that is not ISO-8601 or has no UTC offset (unless ``assume_utc``); an unknown state
    (:data:`RUN_STATES`); ``end_time`` before ``start_time``, or set for a ``RUNNING``/``SCHEDULED`` run;
    ``parameters`` that are not a JSON object; a ``run_id`` repeated with different values. Rows repeated
    identically are one run.

    ``frame`` is a runs frame as :func:`forewarn.learning.features.build_features` and
    :meth:`~forewarn.store.telemetry.TelemetryStore.record_runs_frame` read it: ``flow_run_id, flow_name, deployment,
    parameters`` (dict or ``None``), ``parameters_hash``, ``flow_version, scheduled_start, start_time,
    end_time`` (``datetime64[ns, UTC]``), ``state``, then the ``feature_*`` columns (numeric when every
    non-empty cell is a number, else text).

    Example::

        >>> raw = pd.DataFrame({"run_id": ["r1", "r2"], "flow_name": ["etl", "etl"],
        ...                     "scheduled_start": ["2026-01-01T00:00:00Z", "yesterday"],
        ...                     "state": ["Success", "failed"]})
        >>> checked = check_runs(raw)
        >>> checked.frame["state"].tolist(), checked.problems[0]
        (['COMPLETED'], (3, "scheduled_start 'yesterday' is not an ISO-8601 time; write it like 2026-01-01T00:00:00Z"))
    """
    _check_header(raw, RUN_REQUIRED, RUN_OPTIONAL, features=True, source=source)
    raw = raw.reset_index(drop=True)
    blank = _blank_rows(raw)
    found = _Problems(len(raw))
    run_id = _required_text(raw, "run_id", found, blank, "run_id is empty")
    _too_long(run_id, found, "run_id")
    flow_name = _required_text(raw, "flow_name", found, blank, "flow_name is empty")
    sched_text = _optional_text(raw, "scheduled_start")
    found.add(
        sched_text.isna().to_numpy() & ~blank,
        f"scheduled_start is empty; every run needs the time it was scheduled for, e.g. {_EXAMPLE_TIME}",
    )
    state = _states(raw, found, blank, RUN_STATES, "run")
    sched = _times(raw, "scheduled_start", found, assume_utc=assume_utc, source=source)
    start = _times(raw, "start_time", found, assume_utc=assume_utc, source=source)
    end = _times(raw, "end_time", found, assume_utc=assume_utc, source=source)
    _end_before_start(raw, start, end, found)
    found.add(
        end.notna().to_numpy() & state.isin(_UNFINISHED).to_numpy(),
        lambda i: (
            f"end_time is set but state is {state[i]}; give the final state (COMPLETED, FAILED, ...) "
            "or leave end_time empty"
        ),
    )
    parameters, phash = _parse_json_objects(_optional_text(raw, "parameters"), "parameters", found)
    frame = pd.DataFrame(
        {
            "flow_run_id": run_id,
            "flow_name": flow_name,
            "deployment": _optional_text(raw, "deployment"),
            "parameters": parameters,
            "parameters_hash": phash,
            "flow_version": _optional_text(raw, "flow_version"),
            "scheduled_start": sched,
            "start_time": start,
            "end_time": end,
            "state": state,
        }
    )
    valid = ~blank & ~found.mask()
    for name in raw.columns:
        if str(name).startswith(FEATURE_PREFIX):
            frame[str(name)] = _feature(raw, str(name), valid)
    return _checked(frame, ["flow_run_id"], lambda i: f"run_id {run_id[i]!r}", blank, found)


def check_attempts(
    raw: pd.DataFrame, *, source: Path | str = "<DataFrame>", assume_utc: bool = False
) -> CheckedHistory:
    """Check a task-attempt history (the text of a task-attempt CSV) row by row, like :func:`check_runs`.

    Row problems: ``run_id``, ``task_name``, ``start_time``, ``end_time`` or ``state`` empty; ``attempt``
    not a whole number >= 1; a time that is not ISO-8601 or has no UTC offset; ``end_time`` before
    ``start_time``; an unknown state (:data:`ATTEMPT_STATES`); ``run_id:task_name`` longer than 255
    characters; ``(run_id, task_name, attempt)`` repeated with different values.

    ``frame`` is an attempts frame as :meth:`~forewarn.store.telemetry.TelemetryStore.record_attempts_frame` reads
    it: ``flow_run_id, task_run_id`` (``"<run_id>:<task_name>"``), ``task_name, attempt, start_time,
    end_time, outcome, exception_type``.

    Example::

        >>> raw = pd.DataFrame({"run_id": ["r1"], "task_name": ["load"], "attempt": ["2"],
        ...                     "start_time": ["2026-01-01T00:00:00Z"], "end_time": ["2026-01-01T00:00:09Z"],
        ...                     "state": ["TimedOut"], "exception_type": ["TimeoutError"]})
        >>> check_attempts(raw).frame[["task_run_id", "attempt", "outcome"]].to_dict("records")
        [{'task_run_id': 'r1:load', 'attempt': 2, 'outcome': 'timeout'}]
    """
    _check_header(raw, ATTEMPT_REQUIRED, ATTEMPT_OPTIONAL, features=False, source=source)
    raw = raw.reset_index(drop=True)
    blank = _blank_rows(raw)
    found = _Problems(len(raw))
    run_id = _required_text(raw, "run_id", found, blank, "run_id is empty")
    task = _required_text(raw, "task_name", found, blank, "task_name is empty")
    task_run_id = (run_id + ":" + task).astype(object)
    task_run_id = task_run_id.where(task_run_id.notna(), None)
    _too_long(task_run_id, found, "run_id:task_name")
    attempt_text = _optional_text(raw, "attempt")
    number = pd.to_numeric(attempt_text, errors="coerce")
    bad_attempt = ~blank & (number.isna() | (number < 1) | (number != np.floor(number))).to_numpy()
    found.add(
        bad_attempt,
        lambda i: (
            "attempt is empty; number the attempts of a task run 1, 2, ..."
            if attempt_text[i] is None
            else f"attempt {attempt_text[i]!r} is not a whole number >= 1"
        ),
    )
    for name in ("start_time", "end_time"):
        _required_text(raw, name, found, blank, f"{name} is empty; write it like {_EXAMPLE_TIME}")
    start = _times(raw, "start_time", found, assume_utc=assume_utc, source=source)
    end = _times(raw, "end_time", found, assume_utc=assume_utc, source=source)
    _end_before_start(raw, start, end, found)
    outcome = _states(raw, found, blank, ATTEMPT_STATES, "attempt")
    frame = pd.DataFrame(
        {
            "flow_run_id": run_id,
            "task_run_id": task_run_id,
            "task_name": task,
            "attempt": number.where(~bad_attempt, 0).fillna(0).astype(np.int64),
            "start_time": start,
            "end_time": end,
            "outcome": outcome,
            "exception_type": _optional_text(raw, "exception_type"),
        }
    )
    return _checked(
        frame,
        ["task_run_id", "attempt"],
        lambda i: f"attempt {attempt_text[i]} of task {task[i]!r} in run {run_id[i]!r}",
        blank,
        found,
    )


def _checked(
    frame: pd.DataFrame, keys: list[str], describe: Callable[[int], str], blank: np.ndarray, found: _Problems
) -> CheckedHistory:
    keep = _merge_repeats(frame, keys, ~blank & ~found.mask(), found, describe)
    rejected = np.flatnonzero(found.mask())
    return CheckedHistory(
        frame=frame.iloc[keep].reset_index(drop=True),
        problems=found.sorted(),
        rejected=rejected,
        rows_read=int((~blank).sum()),
    )


def _write_rejects(raw: pd.DataFrame, checked: CheckedHistory, path: Path) -> None:
    """The rejected rows as they were read, plus ``line`` and ``reason`` (a line's reasons joined by `` | ``)."""
    reasons: dict[int, list[str]] = {}
    for line, reason in checked.problems:
        reasons.setdefault(line, []).append(reason)
    rejects = raw.iloc[checked.rejected].copy()
    lines = checked.rejected + 2
    rejects["line"] = lines
    rejects["reason"] = [" | ".join(reasons[int(line)]) for line in lines]
    try:
        rejects.to_csv(path, index=False)
    except OSError as exc:
        raise ConfigurationError(
            "skip_invalid", str(path), f"a file path that can be written ({exc.strerror or exc}), e.g. rejects.csv"
        ) from None


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
    if rejects_path is not None and rejects_path.resolve() == path.resolve():
        raise ConfigurationError(
            "skip_invalid", str(rejects_path), f"a file other than the one imported, e.g. {path.stem}.rejects.csv"
        )
    raw = read_history_csv(path)
    checked = check(raw, source=path, assume_utc=assume_utc)
    if rejects_path is None:
        checked.valid(path)
    else:
        _write_rejects(raw, checked, rejects_path)
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
    ``task_run_id = "<run_id>:<task_name>"``, ``flow_run_id = run_id`` and ``used_fallback`` true for the
    ``fallback`` and ``fallback_failure`` outcomes. The runs need not be imported first (attempts of a
    run the store does not know have no ``flow_name`` in :meth:`~forewarn.store.telemetry.TelemetryStore.attempts`).

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
        {'task_run_id': ['r1:load', 'r1:load'], 'attempt': [1, 2], 'outcome': ['failure', 'success']}
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
    "ATTEMPT_OPTIONAL",
    "ATTEMPT_REQUIRED",
    "ATTEMPT_STATES",
    "RUN_OPTIONAL",
    "RUN_REQUIRED",
    "RUN_STATES",
    "CheckedHistory",
    "ImportResult",
    "Progress",
    "check_attempts",
    "check_runs",
    "import_attempts",
    "import_runs",
    "read_history_csv",
]
