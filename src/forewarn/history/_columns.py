"""Column parsers of the history checks: text, times, states, JSON objects, whole numbers and features.

Each parser turns one column of text cells into typed values and records a problem, with the row's line
number and a reason naming the column and the value, for every cell it cannot take. They work on
``object`` columns of Python strings (never fixed-width numpy text, whose size is rows x longest cell).
:mod:`forewarn.history.validation` combines them into the run and attempt checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forewarn.errors import ImportValidationError
from forewarn.records import parameters_hash
from forewarn.store.schema import ID_LENGTH

EXAMPLE_TIME = "2026-01-01T00:00:00Z"
"""A time as the import formats want it, for messages."""

EARLIEST = pd.Timestamp("1678-01-01", tz="UTC")
"""The earliest time a history may hold (the store keeps nanosecond times, from 1677-09-21)."""

LATEST = pd.Timestamp("2261-12-31T23:59:59", tz="UTC")
"""The latest time a history may hold (the store keeps nanosecond times, up to 2262-04-11)."""

_INT64_LIMIT = float(2**63)
_OFFSET = re.compile(r"(?:Z|z|[+-]\d{2}(?::?\d{2})?)$")


class Problems:
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


def stripped_cells(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The cells of a column as stripped Python strings (an ``object`` array) and the mask of blank cells.

    ``object`` rather than numpy's fixed-width text: that would take rows x longest cell of memory.
    """
    values = col.to_numpy(dtype=object)
    isna = pd.isna(values)
    text = np.empty(len(values), dtype=object)
    text[:] = ["" if na else (v if isinstance(v, str) else str(v)).strip() for v, na in zip(values, isna, strict=True)]
    return text, isna | (text == "")


def optional_text(frame: pd.DataFrame, name: str) -> pd.Series:
    """A text column as object dtype, stripped, with ``None`` for blanks (all ``None`` when absent)."""
    if name not in frame:
        return pd.Series([None] * len(frame), dtype=object)
    text, blank = stripped_cells(frame[name])
    text[blank] = None
    return pd.Series(text, dtype=object)


def blank_rows(raw: pd.DataFrame) -> np.ndarray:
    """True for rows whose every cell is empty or spaces (blank lines)."""
    blank = np.ones(len(raw), dtype=bool)
    if raw.empty or not len(raw.columns):
        return ~blank
    for name in raw.columns:
        candidates = np.flatnonzero(blank)
        if not len(candidates):
            break
        blank[candidates] = stripped_cells(raw[name].iloc[candidates])[1]
    return blank


def required_text(raw: pd.DataFrame, name: str, found: Problems, blank: np.ndarray, reason: str) -> pd.Series:
    """A text column with a problem for each empty cell (blank lines aside)."""
    text = optional_text(raw, name)
    found.add(text.isna().to_numpy() & ~blank, reason)
    return text


def check_id_length(text: pd.Series, found: Problems, name: str) -> None:
    """A problem for every id in ``text`` longer than the store's id columns."""
    lengths = text.str.len().to_numpy(dtype=float, na_value=0.0)
    found.add(
        lengths > ID_LENGTH,
        lambda i: f"{name} is {int(lengths[i])} characters long; the store keeps ids of at most {ID_LENGTH}",
    )


def times(raw: pd.DataFrame, name: str, found: Problems, *, assume_utc: bool, source: Path | str) -> pd.Series:
    """A time column as ``datetime64[ns, UTC]`` (all NaT when absent), problems for cells it cannot take.

    Text cells must be ISO-8601 with a UTC offset (``Z`` or ``+02:00``) unless ``assume_utc``, and between
    :data:`EARLIEST` and :data:`LATEST` (the range the store's nanosecond times hold). A column that
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
                f"or write them as {EXAMPLE_TIME}"
            )
            raise ImportValidationError(source, [(1, reason)])
        return col.dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
    text, blank = stripped_cells(col)
    cells = text.copy()
    cells[blank] = None
    parsed = pd.to_datetime(pd.Series(cells), utc=True, format="ISO8601", errors="coerce")  # microseconds
    bad = ~blank & parsed.isna().to_numpy()
    found.add(bad, lambda i: f"{name} {text[i]!r} is not an ISO-8601 time; write it like {EXAMPLE_TIME}")
    outside = ~((parsed >= EARLIEST) & (parsed <= LATEST)).to_numpy(dtype=bool) & ~blank & ~bad
    found.add(
        outside,
        lambda i: f"{name} {text[i]!r} is outside the times the store keeps, {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}",
    )
    parsed = parsed.where(~outside, pd.NaT).astype("datetime64[ns, UTC]")  # in range now: no overflow
    if not assume_utc:
        zulu = np.asarray([t.endswith(("Z", "z")) for t in text], dtype=bool)
        check = np.flatnonzero(~blank & ~bad & ~zulu)  # usually none: exports write Z
        no_offset = np.zeros(len(text), dtype=bool)
        no_offset[check] = [_OFFSET.search(text[i]) is None for i in check]
        found.add(
            no_offset,
            lambda i: f"{name} {text[i]!r} has no UTC offset; write it like {text[i]}Z (or pass assume_utc=True)",
        )
    return parsed


def whole_numbers(raw: pd.DataFrame, name: str, found: Problems, blank: np.ndarray, *, upto: int) -> pd.Series:
    """A column of whole numbers from 1 to ``upto`` as ``int64`` (0 for the rows with a problem).

    Cells are read as text, never through a float, so ``99999999999999999999`` is refused, not wrapped.
    """
    text = optional_text(raw, name).to_numpy()
    values = np.zeros(len(text), dtype=np.int64)
    plain = pd.Series(text, dtype=object).str.fullmatch(r"[0-9]{1,9}").fillna(False).to_numpy(dtype=bool)
    if plain.any():  # the usual case: short digit strings, converted at once
        values[plain] = pd.to_numeric(pd.Series(text[plain], dtype=object)).to_numpy(dtype=np.int64)
    reasons: dict[int, str] = {}
    for i in np.flatnonzero(~blank & (~plain | (values < 1) | (values > upto))):
        cell = text[i]
        number = _whole(cell)
        if cell is None:
            reasons[int(i)] = f"{name} is empty; number the attempts of a task run 1, 2, ..."
        elif number is None or number < 1:
            reasons[int(i)] = f"{name} {cell!r} is not a whole number >= 1"
        elif number > upto:
            reasons[int(i)] = f"{name} {cell!r} is larger than {upto:,}, the largest the store keeps"
        else:
            values[i] = number
    rejected = np.zeros(len(text), dtype=bool)
    rejected[list(reasons)] = True
    values[rejected] = 0
    found.add(rejected, lambda i: reasons[i])
    return pd.Series(values, dtype=np.int64)


def _whole(cell: Any) -> int | None:
    """The whole number a cell holds (``3``, ``3.0``, ``+3``), else ``None``; no float rounding for big ones."""
    if cell is None:
        return None
    text = str(cell).strip()
    whole, _, fraction = text.partition(".")
    if not whole.lstrip("+-").isdigit() or (fraction and fraction.strip("0")) or len(whole) > 30:
        return None
    return int(whole)


def end_before_start(raw: pd.DataFrame, start: pd.Series, end: pd.Series, found: Problems) -> None:
    backwards = (end < start).fillna(False).to_numpy(dtype=bool)
    if backwards.any():
        s_text, e_text = optional_text(raw, "start_time"), optional_text(raw, "end_time")
        found.add(backwards, lambda i: f"end_time {e_text[i]} is before start_time {s_text[i]}")


def states(raw: pd.DataFrame, found: Problems, blank: np.ndarray, accepted: dict[str, Any], kind: str) -> pd.Series:
    """``state`` mapped through ``accepted`` (case-insensitive) to its value; problems for the others."""
    text = optional_text(raw, "state")
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


def _parse_json_cells(
    text: pd.Series, name: str, found: Problems, noun: str, example: str, check: Callable[[Any], str | None]
) -> tuple[np.ndarray, list[Any]]:
    """Decode each distinct JSON cell once: the codes of the cells and the decoded value per code.

    ``check(value)`` says what is wrong with a decoded value (``None``: nothing); a cell that is not JSON,
    or that ``check`` refuses, decodes to ``None`` and is a problem naming ``name`` and showing ``example``.
    """
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    values: list[Any] = []
    reasons: dict[int, str] = {}
    for code, cell in enumerate(uniques):
        try:
            value = json.loads(cell)
        except json.JSONDecodeError as exc:
            reasons[code] = f"{name} is not valid JSON ({exc.msg} at character {exc.pos}); write {noun} like {example}"
            value = None
        wrong = None if value is None else check(value)
        if wrong is not None:
            reasons[code] = f"{name} must be {wrong}; write it like {example}"
            value = None
        values.append(value)
    found.add(np.isin(codes, list(reasons)), lambda i: reasons[int(codes[i])])
    return codes, values


def parse_json_objects(text: pd.Series, name: str, found: Problems) -> tuple[pd.Series, pd.Series]:
    """JSON-object cells as dicts (``None`` when empty) and their :func:`parameters_hash`, each text once."""

    def check(value: Any) -> str | None:
        return None if isinstance(value, dict) else f"a JSON object, not {type(value).__name__}"

    codes, values = _parse_json_cells(text, name, found, "an object", '{"batch_size": 500}', check)
    hashes = [parameters_hash(v) for v in values]
    parsed = np.asarray([*values, None], dtype=object)[codes]  # rows with equal text share one dict
    return pd.Series(parsed, dtype=object), pd.Series(np.asarray([*hashes, None], dtype=object)[codes], dtype=object)


def parse_tag_lists(text: pd.Series, name: str, found: Problems) -> pd.Series:
    """JSON-list-of-strings cells as sorted tuples without repeats (``None`` when empty), each text once.

    Tuples rather than lists, so rows repeated identically still compare (and merge) as equal.

    Example::

        >>> found = Problems(3)
        >>> parse_tag_lists(pd.Series(['["nightly", "etl"]', None, '"etl"']), "tags", found).tolist()
        [('etl', 'nightly'), None, None]
        >>> found.sorted()
        [(4, 'tags must be a JSON list of strings, not str; write it like ["etl", "nightly"]')]
    """

    def check(value: Any) -> str | None:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return None
        what = "a list holding other values" if isinstance(value, list) else type(value).__name__
        return f"a JSON list of strings, not {what}"

    codes, values = _parse_json_cells(text, name, found, "a list", '["etl", "nightly"]', check)
    tags = [None if v is None else tuple(sorted(set(v))) for v in values]
    return pd.Series(np.asarray([*tags, None], dtype=object)[codes], dtype=object)


def feature(raw: pd.DataFrame, name: str, valid: np.ndarray, found: Problems) -> pd.Series:
    """A ``feature_*`` column: numeric when every non-empty cell of a valid row is a number, else text.

    Text cells are stripped, with ``None`` for empty ones; numbers are ``int64`` when all are whole and
    present, else ``float64`` with NaN. Invalid rows do not take part in the choice (they are not imported).
    A number that is not finite or not below 2**63 in size is a problem: JSON and ``int64`` cannot hold it.
    A column that already holds numbers or booleans (a DataFrame rather than CSV text) keeps its values.
    """
    col = raw[name]
    if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        return pd.Series(col.to_numpy(), dtype=col.dtype)
    text = optional_text(raw, name)
    numbers = pd.to_numeric(text.where(valid, None), errors="coerce").astype(np.float64)
    if not (numbers.isna() == (text.isna() | ~valid)).all():
        return text
    huge = ~(numbers.abs() < _INT64_LIMIT).to_numpy(dtype=bool) & numbers.notna().to_numpy()
    found.add(huge, lambda i: f"{name} {text[i]!r} is out of range; numbers must be finite and below 2**63 in size")
    valid = valid & ~huge
    present = numbers[valid]
    if present.notna().all() and (present == np.floor(present)).all():
        exact = pd.to_numeric(text.where(valid, "0"), errors="coerce")  # not through float: 2**53 + 1 stays
        return exact.astype(np.int64)  # invalid rows get 0: they are not imported
    return numbers.where(valid, np.nan)


def merge_repeats(
    frame: pd.DataFrame, keys: Sequence[str], valid: np.ndarray, found: Problems, describe: Callable[[int], str]
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
