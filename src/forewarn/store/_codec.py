"""Value codecs of the telemetry store: Python values in, stored values out.

Times going in must be timezone-aware (:func:`aware`) and come out as one naive-UTC ``datetime64[ns]``
array per column (:func:`parse_times`); parameters and pre-run features are stored as canonical JSON,
one record at a time or a whole frame column at once, and read back into ``feature_<name>`` columns;
strings are cut to their column and a NUL character in them is replaced (:data:`NUL_REPLACEMENT`); states
and outcomes are checked. No SQL here: the statements live in
:mod:`forewarn.store._queries` and :mod:`forewarn.store._bulk`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from forewarn.errors import InvalidRecordError
from forewarn.records import FEATURE_PREFIX, AttemptOutcome, RunState, parameters_hash

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TIME_COLUMNS = frozenset({"scheduled_start", "start_time", "end_time", "predicted_at"})
"""Table columns that hold times."""

_RUN_TIME_COLUMNS = frozenset({"run_scheduled_start", "run_start_time"})

NUL_REPLACEMENT = "\ufffd"
"""What a NUL (``\\x00``) in a text value is stored as: U+FFFD, the Unicode replacement character.

PostgreSQL text cannot hold NUL and refuses the whole row, so an exception message carrying one would
lose its attempt. U+FFFD is one character for one (a value cut to its column stays within it), cannot
be confused with text that really said ``\\0``, and is done on SQLite too, so a store reads the same
whichever database holds it. JSON columns need nothing: ``json.dumps`` writes NUL as ``\\u0000``.
"""


def is_time(name: str) -> bool:
    """Whether a selected column holds times: a table's time column or an attempt's run times."""
    return name in TIME_COLUMNS or name in _RUN_TIME_COLUMNS


# --- values going in ------------------------------------------------------------------------------------


def aware(value: datetime, name: str) -> datetime:
    """``value`` if it is a timezone-aware datetime; else an :class:`InvalidRecordError` naming ``name``.

    forewarn never guesses a timezone: the message shows the call with ``tzinfo=timezone.utc``.
    """
    if not isinstance(value, datetime):
        raise InvalidRecordError(f"{name} must be a timezone-aware datetime, not {type(value).__name__}: {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRecordError(
            f"{name}={value!r} is a naive datetime; forewarn stores UTC and needs timezone-aware times, "
            f"e.g. {name}=datetime(2026, 1, 1, tzinfo=timezone.utc)"
        )
    return value


def aware_or_none(value: datetime | None, name: str) -> datetime | None:
    """``None``, or ``value`` checked by :func:`aware`."""
    return None if value is None else aware(value, name)


def cut(value: str | None, length: int) -> str | None:
    """``value`` cut to ``length`` characters, so a long string fits its column instead of failing the write,
    with NUL replaced by :data:`NUL_REPLACEMENT`.

    Example::

        >>> cut("disk\\x00full", 6) == "disk" + NUL_REPLACEMENT + "f"
        True
    """
    if value is None:
        return None
    value = without_nul(value)
    return value if len(value) <= length else value[:length]


def without_nul(value: str) -> str:
    """``value`` with each NUL replaced by :data:`NUL_REPLACEMENT`, which PostgreSQL text can hold.

    Example::

        >>> without_nul("a\\x00b") == "a\\ufffdb"
        True
    """
    return value.replace("\x00", NUL_REPLACEMENT) if "\x00" in value else value


def state_value(state: RunState | str) -> str:
    """The stored text of a run state; an :class:`InvalidRecordError` listing the states for anything else."""
    return _member_value(RunState, state, "state", "a run state")


def outcome_value(outcome: AttemptOutcome | str) -> str:
    """The stored text of an attempt outcome; an :class:`InvalidRecordError` listing them for anything else."""
    return _member_value(AttemptOutcome, outcome, "outcome", "an attempt outcome")


def _member_value(kind: type[RunState] | type[AttemptOutcome], value: str, name: str, noun: str) -> str:
    try:
        return kind(value).value
    except ValueError:
        raise InvalidRecordError(
            f"{name}={value!r} is not {noun}: expected one of {', '.join(member.value for member in kind)}"
        ) from None


def forewarn_version() -> str:
    """This forewarn's version, recorded on rows that do not carry their own."""
    from forewarn._version import __version__

    return __version__


def encode_parameters(parameters: dict[str, Any]) -> tuple[str, str]:
    """JSON text of flow parameters as stored, and their :func:`~forewarn.records.parameters_hash`.

    Keys are sorted so equal parameters give equal text and hash; values JSON cannot represent are
    written as their ``str()``. The hash is the one ``forewarn.flow`` and the importer record, so a run
    has the same ``parameters_hash`` whichever path wrote it.

    Example::

        >>> encode_parameters({"b": 1, "a": "x"})
        ('{"a": "x", "b": 1}', 'cdab067e9f3beb32')
    """
    return json.dumps(parameters, sort_keys=True, default=str, ensure_ascii=False), parameters_hash(parameters)


def encode_features(features: Mapping[str, Any]) -> str | None:
    """JSON text of a run's pre-run features (sorted keys), or ``None`` for none.

    Names carry no ``feature_`` prefix. Values JSON cannot represent are written as their ``str()``.

    Example::

        >>> encode_features({"source_system": "sap", "input_rows": 1200})
        '{"input_rows": 1200, "source_system": "sap"}'
        >>> print(encode_features({}))
        None
    """
    if not features:
        return None
    return json.dumps(dict(features), sort_keys=True, default=str, ensure_ascii=False)


TAG_LENGTH = 255
"""The longest tag kept; a longer one is cut to it, as other names are cut to their column."""


def encode_tags(tags: Iterable[str] | None, *, field: str = "tags") -> str | None:
    """JSON text of a run's tags as stored: a sorted list without repeats, or ``None`` for none.

    Prefect keeps tags in the order they were given and may repeat one; the store keeps the set, so equal
    tags give equal text. Anything but a collection of strings is an :class:`InvalidRecordError` naming
    ``field``.

    Example::

        >>> encode_tags(["nightly", "etl", "nightly"])
        '["etl", "nightly"]'
        >>> print(encode_tags(()))
        None
        >>> encode_tags("etl")
        Traceback (most recent call last):
        ...
        forewarn.errors.InvalidRecordError: tags must be a collection of strings, not one string: use ["etl"]
    """
    if tags is None:
        return None
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        shown = f'["{tags}"]' if isinstance(tags, str) else '["etl", "nightly"]'
        what = "one string" if isinstance(tags, str) else type(tags).__name__
        raise InvalidRecordError(f"{field} must be a collection of strings, not {what}: use {shown}")
    kept: set[str] = set()
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidRecordError(f"{field} must hold strings only, not {type(tag).__name__} {tag!r:.80}")
        kept.add(cut(tag, TAG_LENGTH) or "")
    return json.dumps(sorted(kept), ensure_ascii=False) if kept else None


def decode_tags(value: Any) -> list[str]:
    """A stored ``tags`` value, decoded from JSON, as a list of strings (``[]`` for null).

    The column is text another program may have written: anything but a list keeps no tags, and only
    its string items are tags.

    Example::

        >>> decode_tags(["etl", 3]), decode_tags(None), decode_tags({"etl": 1})
        (['etl'], [], [])
    """
    if not isinstance(value, list):
        return []
    return [tag for tag in value if isinstance(tag, str)]


# --- whole frame columns going in -----------------------------------------------------------------------


def object_values(frame: pd.DataFrame, name: str, *, length: int | None = None) -> np.ndarray:
    """A column as an object array of ``str`` (or the value as is, when not text) with ``None`` for missing.

    An absent column is all ``None``. Given a ``length`` (a text column), strings longer than it are cut
    to it and NUL is replaced as :func:`cut` does.
    """
    import numpy as np
    import pandas as pd

    if name not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    values = frame[name].to_numpy(dtype=object, copy=True)
    values[pd.isna(values)] = None
    if length is not None:
        try:
            lengths = pd.Series(values, dtype=object).str.len().to_numpy(dtype=float, na_value=0)
        except AttributeError:  # not all text: .str refuses, so look at each value
            lengths = np.asarray([len(v) if isinstance(v, str) else 0 for v in values.tolist()], dtype=float)
        long = np.flatnonzero(lengths > length)
        for i in long:
            values[i] = values[i][:length]
        _replace_nul(values)
    return values


def _replace_nul(values: np.ndarray) -> None:
    """Replace NUL in the strings of ``values`` in place; one C-speed scan when there is none (the rule)."""
    try:
        found = "\x00" in "\x01".join(values.tolist())
    except TypeError:  # not all text (None, numbers): look at each value
        found = any(isinstance(v, str) and "\x00" in v for v in values.tolist())
    if found:
        for i, value in enumerate(values.tolist()):
            if isinstance(value, str):
                values[i] = without_nul(value)


def encode_parameter_column(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical JSON text and SHA-256 of each row's parameters (a dict, JSON text, or ``None`` for none).

    Histories repeat a handful of parameter sets, and a parsed frame shares one dict between the rows with
    equal text, so each distinct object (or text) is encoded once.
    """
    import numpy as np

    texts = np.empty(len(values), dtype=object)
    digests = np.empty(len(values), dtype=object)
    cache: dict[int | str, tuple[str, str]] = {}
    for i, value in enumerate(values.tolist()):
        key = value if isinstance(value, str) else id(value)
        encoded = cache.get(key)
        if encoded is None:
            if value is None:
                params: Any = {}
            elif isinstance(value, str):
                params = json.loads(value)
            else:
                params = value
            if not isinstance(params, Mapping):
                raise InvalidRecordError(f"parameters {value!r} is not a dict (or JSON object text) at position {i}")
            encoded = cache[key] = encode_parameters(dict(params))
        texts[i], digests[i] = encoded
    return texts, digests


def encode_feature_columns(runs: pd.DataFrame) -> np.ndarray:
    """Each row's ``features`` JSON object from its non-missing ``feature_<name>`` cells (``None`` if none).

    The text is exactly :func:`encode_features` of the row's features, built a column at a time: each
    distinct value is JSON-encoded once and the ``"name": value`` pieces are joined with numpy.
    """
    import numpy as np
    import pandas as pd

    names = sorted(
        c for c in runs.columns if isinstance(c, str) and c.startswith(FEATURE_PREFIX) and c != FEATURE_PREFIX
    )
    out = np.full(len(runs), "", dtype=object)
    for name in names:
        values = runs[name].to_numpy(dtype=object)  # numpy numbers become Python numbers
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        key = json.dumps(name[len(FEATURE_PREFIX) :], ensure_ascii=False) + ": "
        pieces = [key + json.dumps(u, default=str, ensure_ascii=False) for u in uniques.tolist()]
        piece = np.asarray([*pieces, ""], dtype=object)[codes]
        present = codes >= 0
        joined = present & (out != "")
        out[joined] = out[joined] + ", " + piece[joined]
        first = present & ~joined
        out[first] = piece[first]
    some = out != ""
    out[some] = "{" + out[some] + "}"
    out[~some] = None
    return out


def encode_tag_column(runs: pd.DataFrame) -> np.ndarray:
    """Each row's :func:`encode_tags` text from its ``tags`` cell (a list of strings; missing: ``None``).

    An absent column is all ``None``; a bad cell is an :class:`InvalidRecordError` naming its position.
    """
    import numpy as np
    import pandas as pd

    out = np.full(len(runs), None, dtype=object)
    if "tags" not in runs.columns:
        return out
    for i, cell in enumerate(runs["tags"].tolist()):
        if cell is None or (not isinstance(cell, (list, tuple, set, frozenset)) and pd.isna(cell)):
            continue
        out[i] = encode_tags(cell, field=f"runs['tags'] at position {i}")
    return out


# --- values coming out ----------------------------------------------------------------------------------


def parse_times(cells: np.ndarray, *, sqlite: bool) -> np.ndarray:
    """Stored times (SQLite text, PostgreSQL aware datetimes) as one naive-UTC ``datetime64[ns]`` array."""
    import pandas as pd

    if sqlite:  # UTCDateTime writes naive UTC text, YYYY-MM-DD HH:MM:SS.ffffff: numpy parses it in C
        text = cells.copy()
        text[pd.isna(text)] = "NaT"
        try:
            return text.astype("datetime64[us]").astype("datetime64[ns]")
        except (ValueError, TypeError):  # text written by another tool: any ISO 8601 form
            return _naive_utc(pd.to_datetime(cells, format="ISO8601", utc=True))
    return _naive_utc(pd.to_datetime(cells, utc=True))


def _naive_utc(times: pd.DatetimeIndex) -> np.ndarray:
    return times.tz_convert("UTC").tz_localize(None).as_unit("ns").to_numpy()


def decode_json_cells(cells: list[str | None]) -> list[Any]:
    """Decode many JSON texts (``None`` → ``None``) in one ``json.loads`` of the JSON array they make.

    One call parses 400,000 cells several times faster than 400,000 calls. forewarn writes each cell with
    ``json.dumps``, so the array has one element per cell; if text written by another tool breaks that
    (invalid JSON, or a cell such as ``1, 2`` that would count as two elements), each cell is decoded alone.

    Example::

        >>> decode_json_cells(['{"a": 1}', None, "[2]"])
        [{'a': 1}, None, [2]]
    """
    if not cells:
        return []
    try:
        values = json.loads("[" + ",".join("null" if c is None else c for c in cells) + "]")
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, list) or len(values) != len(cells):
        values = [None if c is None else json.loads(c) for c in cells]
    return values


def with_feature_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus one ``feature_<name>`` column per name in its decoded ``features`` dicts, sorted."""
    import pandas as pd

    dicts: list[dict[str, Any]] = frame["features"].tolist()
    names = sorted({name for features in dicts for name in features})
    if not names:
        return frame
    expanded = {FEATURE_PREFIX + name: _feature_column([f.get(name) for f in dicts]) for name in names}
    extra = pd.DataFrame(expanded)
    extra.index = frame.index
    return pd.concat([frame, extra], axis=1)


def _feature_column(values: list[Any]) -> pd.Series:
    """One ``feature_<name>`` column from decoded JSON values (``None`` where a run lacks the feature).

    Numbers give ``int64`` (all present and whole) or ``float64`` (NaN where missing); booleans present in
    every row give ``bool``; anything else is an object column with ``None`` where missing.
    """
    import pandas as pd

    present = [v for v in values if v is not None]
    complete = len(present) == len(values)
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        if complete and all(isinstance(v, int) for v in present):
            try:
                return pd.Series(values, dtype="int64")
            except OverflowError:  # beyond int64: float64 keeps the magnitude
                pass
        return pd.Series([float("nan") if v is None else float(v) for v in values], dtype="float64")
    if present and complete and all(isinstance(v, bool) for v in present):
        return pd.Series(values, dtype=bool)
    return pd.Series(values, dtype=object)
