"""HPC job logs in the Standard Workload Format (SWF) as run history in the import format.

The Parallel Workloads Archive (https://www.cs.huji.ac.il/labs/parallel/workload/) publishes logs of real
batch schedulers in SWF: header lines start with ``;`` (``UnixStartTime:`` gives the epoch of time 0), and
each job is one line of 18 whitespace-separated numbers, ``-1`` where unknown. :func:`swf_to_runs` turns one
such log into the rows of the run-history CSV (``docs/import.md``):

====================  ===============================================================================
import column         from the SWF fields
====================  ===============================================================================
``run_id``            job number (field 1)
``flow_name``         ``exe-<n>`` for the executable (field 14) where the log has one, else ``user-<n>``
``scheduled_start``   ``UnixStartTime`` + submit time (field 2): the job was due when it was submitted
``start_time``        scheduled start + wait time (field 3)
``end_time``          start time + run time (field 4)
``state``             status (field 11): 1 and 3 ``COMPLETED``, 0 and 4 ``FAILED``, 5 ``CANCELLED``
``feature_*``         only what is known at submission: ``user``, ``group``, ``queue``, ``partition``
                      (categories such as ``u12``), ``requested_procs``, ``requested_seconds``,
                      ``requested_memory_kb`` (numbers; empty where the log has -1)
====================  ===============================================================================

The outcome fields -- wait and run time, allocated processors, CPU time and memory used -- are never
features: the model would learn from the answer. Jobs whose status is unknown (-1) or a partial execution
(2) are left out, and counted in :attr:`SwfRuns.left_out`.

Example::

    >>> import tempfile, pathlib
    >>> log = pathlib.Path(tempfile.mkdtemp()) / "tiny.swf"
    >>> _ = log.write_text("; UnixStartTime: 0\\n"
    ...     "1 60 5 100 4 -1 -1 4 3600 -1 1 7 2 3 1 1 -1 -1\\n"
    ...     "2 90 0 20 4 -1 -1 4 3600 -1 0 7 2 3 1 1 -1 -1\\n")
    >>> converted = swf_to_runs(log)
    >>> converted.runs[["run_id", "flow_name", "state", "feature_user"]].values.tolist()
    [['1', 'exe-3', 'COMPLETED', 'u7'], ['2', 'exe-3', 'FAILED', 'u7']]
    >>> converted.runs["scheduled_start"].tolist()
    ['1970-01-01T00:01:00.000Z', '1970-01-01T00:01:30.000Z']
"""

from __future__ import annotations

import gzip
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forewarn.errors import ImportValidationError

SWF_FIELDS: tuple[str, ...] = (
    "job",
    "submit",
    "wait",
    "run",
    "allocated_procs",
    "cpu_seconds",
    "used_memory_kb",
    "requested_procs",
    "requested_seconds",
    "requested_memory_kb",
    "status",
    "user",
    "group",
    "executable",
    "queue",
    "partition",
    "preceding_job",
    "think_time",
)
"""The 18 fields of an SWF job line, in order."""

CATEGORY_FIELDS: dict[str, str] = {"user": "u", "group": "g", "queue": "q", "partition": "p"}
"""Pre-run category fields and the prefix that keeps their numbers text (``u12``, not the number 12)."""

NUMBER_FIELDS: tuple[str, ...] = ("requested_procs", "requested_seconds", "requested_memory_kb")
"""Pre-run numeric fields, passed through as numbers."""

STATES: dict[int, str] = {1: "COMPLETED", 3: "COMPLETED", 0: "FAILED", 4: "FAILED", 5: "CANCELLED"}
"""SWF status to import state; other statuses (-1 unknown, 2 partial execution) are left out."""

MAX_LOG_BYTES = 4_000_000_000
"""A decompressed log larger than this is refused (the largest archive logs are a few hundred MB)."""

_START = re.compile(r"^\s*;\s*UnixStartTime:\s*(-?\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class SwfRuns:
    """A converted log: ``runs`` in the run-history CSV format (text cells), ``left_out`` jobs without one."""

    runs: pd.DataFrame
    left_out: int

    def to_csv(self, path: Path | str) -> Path:
        """Write :attr:`runs` as a run-history CSV for ``forewarn import-runs``; returns the path.

        Written to a temporary file beside ``path`` that then replaces it, so it is never half-written.
        """
        path = Path(path)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".partial", delete=False) as handle:
            partial = Path(handle.name)
        try:
            self.runs.to_csv(partial, index=False)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return path


def read_swf(path: Path | str) -> tuple[int, pd.DataFrame]:
    """The log's ``UnixStartTime`` and its jobs, one row per job line, the :data:`SWF_FIELDS` as float64.

    ``path`` may be gzipped. Raises :class:`~forewarn.errors.ImportValidationError` naming the line when a
    job line does not have 18 numbers, and for a log without a ``UnixStartTime:`` header line or jobs.
    """
    path = Path(path)
    text = _read_text(path)
    start = _START.search(text)
    if start is None:
        raise ImportValidationError(path, [(1, "the SWF header has no '; UnixStartTime: <epoch seconds>' line")])
    lines = np.array(text.splitlines(), dtype=object)
    stripped = np.array([line.strip() for line in lines], dtype=object)
    is_job = (stripped != "") & ~np.array([s.startswith(";") for s in stripped], dtype=bool)
    job_lines = stripped[is_job]
    line_numbers = np.flatnonzero(is_job) + 1
    if len(job_lines) == 0:
        raise ImportValidationError(path, [(1, "the log has no job lines")])
    cells = [line.split() for line in job_lines]
    counts = np.fromiter((len(c) for c in cells), dtype=np.int64, count=len(cells))
    bad = np.flatnonzero(counts != len(SWF_FIELDS))
    if len(bad):
        raise ImportValidationError(
            path, [(int(line_numbers[i]), f"a job line has {counts[i]} fields; SWF has 18") for i in bad]
        )
    flat = pd.to_numeric(pd.Series(np.concatenate(cells)), errors="coerce").to_numpy(dtype=float)
    values = flat.reshape(len(cells), len(SWF_FIELDS))
    not_numbers = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(not_numbers):
        raise ImportValidationError(
            path, [(int(line_numbers[i]), "a job line holds something other than 18 numbers") for i in not_numbers]
        )
    jobs = pd.DataFrame(values, columns=list(SWF_FIELDS))
    jobs["line"] = line_numbers
    return int(start.group(1)), jobs


def swf_to_runs(path: Path | str) -> SwfRuns:
    """Convert an SWF log (optionally gzipped) into run-history rows; see the module docstring for the mapping.

    Raises :class:`~forewarn.errors.ImportValidationError` for a log that is not SWF, a negative submit time,
    or a job number used twice.
    """
    path = Path(path)
    epoch, jobs = read_swf(path)
    known = jobs["status"].isin(list(STATES)).to_numpy()
    jobs = jobs.loc[known].reset_index(drop=True)
    _check_jobs(path, jobs)
    submit = epoch + jobs["submit"].to_numpy()
    wait, run = jobs["wait"].to_numpy(), jobs["run"].to_numpy()
    started = submit + wait
    out = pd.DataFrame(
        {
            "run_id": jobs["job"].astype(np.int64).astype(str),
            "flow_name": _flow_names(jobs),
            "scheduled_start": _iso(submit),
            "state": jobs["status"].astype(int).map(STATES),
            "start_time": _iso(np.where(wait >= 0, started, np.nan)),
            "end_time": _iso(np.where((wait >= 0) & (run >= 0), started + run, np.nan)),
        }
    )
    by_executable = bool((jobs["executable"] >= 0).any())
    for field, prefix in CATEGORY_FIELDS.items():
        if field == "user" and not by_executable:
            continue  # the user is the flow itself
        if (jobs[field] >= 0).any():
            out[f"feature_{field}"] = _labels(jobs[field], prefix)
    for field in NUMBER_FIELDS:
        if (jobs[field] >= 0).any():
            value = jobs[field].where(jobs[field] >= 0)
            out[f"feature_{field}"] = value.map(lambda v: "" if np.isnan(v) else f"{v:g}")
    return SwfRuns(runs=out, left_out=int((~known).sum()))


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if gzipped else path.open("rb") as handle:
            data = handle.read(MAX_LOG_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise ImportValidationError(path, [(1, f"cannot read the log ({exc})")]) from None
    if len(data) > MAX_LOG_BYTES:
        raise ImportValidationError(path, [(1, f"the log is larger than {MAX_LOG_BYTES:,} bytes")])
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportValidationError(path, [(line, "the log is not SWF text (a byte that is not ASCII)")]) from None


def _check_jobs(path: Path, jobs: pd.DataFrame) -> None:
    problems = [(int(line), "the submit time is negative") for line in jobs.loc[jobs["submit"] < 0, "line"]]
    repeated = jobs["job"].duplicated(keep=False)
    problems += [(int(line), "the job number is on another line too") for line in jobs.loc[repeated, "line"]]
    if problems:
        raise ImportValidationError(path, sorted(problems))


def _flow_names(jobs: pd.DataFrame) -> pd.Series:
    if (jobs["executable"] >= 0).any():
        named = jobs["executable"] >= 0
        return pd.Series(np.where(named, _labels(jobs["executable"], "exe-"), _labels(jobs["user"], "user-")))
    return _labels(jobs["user"], "user-")


def _labels(values: pd.Series, prefix: str) -> pd.Series:
    """``prefix<n>`` for known values, ``""`` (unknown) for -1."""
    text = prefix + values.astype(np.int64).astype(str)
    return text.where(values >= 0, "")


def _iso(seconds: np.ndarray) -> pd.Series:
    stamps = pd.to_datetime(pd.Series(seconds, dtype=float), unit="s", utc=True)
    return stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.000Z").fillna("")


__all__ = ["CATEGORY_FIELDS", "NUMBER_FIELDS", "STATES", "SWF_FIELDS", "SwfRuns", "read_swf", "swf_to_runs"]
