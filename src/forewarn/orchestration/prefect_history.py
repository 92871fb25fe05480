"""Import the flow runs and task runs Prefect already keeps, so a team trains on its history on day one.

:func:`import_prefect_history` reads, from the Prefect API (``PREFECT_API_URL``), every flow run that
ended (``COMPLETED``, ``FAILED``, ``CRASHED``, ``CANCELLED``; Prefect's ``TimedOut`` becomes ``TIMEDOUT``)
and its task runs, and writes them to the store as ``flow_runs`` rows with ``source = "prefect"`` and
``task_attempts`` rows:

* **what a run keeps**: flow name, deployment name, flow version, parameters (redacted as ``forewarn.flow``
  redacts them: :func:`forewarn.redaction.redact_parameters`), expected start, start and end times, state,
  and the run's tags (``flow_runs.tags``, sorted, without repeats).
* **task runs as attempts**: a task run that ran once is one attempt (its start to its end, its final
  state). A task run Prefect retried (``run_count > 1``) is rebuilt from its state history: each
  ``Running``/``Retrying`` state starts an attempt that ends at the next state. Prefect keeps the
  exception only in the final ``Failed`` state's message, so only the last attempt has an
  ``exception_type``; earlier failed attempts have none. Task runs that never ran (``run_count = 0``:
  cached, or cancelled before starting) and cancelled attempts are not attempts and are left out.
* **never twice, never over forewarn's own records**: a flow run (or task run) whose id the store already
  holds is skipped, whoever wrote it: runs recorded live by ``forewarn.flow`` keep their richer rows.
* **incremental**: the store's ``forewarn_meta`` keeps a watermark per Prefect API (key
  ``prefect_import:<hash of the API URL>``; in ephemeral mode, where each run starts a temporary server on a
  new port, of the Prefect database behind it, :func:`watermark_identity`): the moment the last import
  started. The next import reads
  only runs that ended after it, less ``overlap`` (10 minutes by default: Prefect stamps a run's end with
  the worker's clock, and a run may be committed a moment after it ended). What the overlap reads again is
  skipped by id.
* **paged**: ``page_size`` runs per request, newest end first, between two fixed bounds (the lower one and
  the moment the import started), so runs that end meanwhile do not shift the pages; each page's runs,
  attempts and the watermark (after the last page) are written in one transaction each.
* forewarn's own operational flows (:data:`~forewarn.records.OPERATIONAL_FLOWS`) are skipped unless
  ``include_operational=True``.

Example::

    from forewarn.orchestration.prefect_history import import_prefect_history
    from forewarn.store import TelemetryStore

    result = import_prefect_history(TelemetryStore())   # everything new since the last import
    print(result.runs_imported, result.attempts_imported)
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from forewarn.errors import ConfigurationError
from forewarn.orchestration.flows import final_run_state, stdlib_time
from forewarn.orchestration.forecast import PAGE, flow_and_deployment_names, read_pages
from forewarn.records import OPERATIONAL_FLOWS, AttemptOutcome, AttemptRecord, FlowRunRecord, RunState
from forewarn.redaction import Redactor, redact_parameters
from forewarn.timeutil import utc

if TYPE_CHECKING:
    from forewarn.store import TelemetryStore

SOURCE = "prefect"
"""The ``flow_runs.source`` of imported Prefect runs."""

WATERMARK_PREFIX = "prefect_import:"
"""``forewarn_meta`` keys of the import watermarks: this prefix and the first 16 hex digits of the API URL's SHA-256."""

DEFAULT_OVERLAP = timedelta(minutes=10)

_EXCEPTION = re.compile(r"encountered an exception (?P<type>[A-Za-z_][\w.]*)(?::\s*(?P<message>.*))?", re.DOTALL)

Progress = Callable[[int, int], None]
"""``progress(done, total)``: flow runs read so far out of those that ended in the window."""


@dataclass(frozen=True, slots=True)
class PrefectImportResult:
    """What one :func:`import_prefect_history` did.

    ``runs_read`` flow runs ended in ``[since, until]`` (``since`` ``None``: from the beginning);
    ``runs_imported`` were written, ``runs_known`` were already in the store, ``runs_skipped`` belong to
    forewarn's operational flows. ``until`` is the new watermark.
    """

    api_url: str
    since: datetime | None
    until: datetime
    runs_read: int
    runs_imported: int
    runs_known: int
    runs_skipped: int
    attempts_imported: int
    seconds: float


def watermark_key(api_url: str) -> str:
    """The ``forewarn_meta`` key of the watermark for the Prefect API at ``api_url``.

    Example::

        >>> watermark_key("http://127.0.0.1:4200/api")
        'prefect_import:261a7dfc47c04bf0'
    """
    return WATERMARK_PREFIX + hashlib.sha256(api_url.rstrip("/").encode()).hexdigest()[:16]


def watermark_identity(api_url: str) -> str:
    """What the watermark of an import from the Prefect API at ``api_url`` is kept for.

    With ``PREFECT_API_URL`` set, that API. Without it Prefect runs in ephemeral mode: every process starts a
    temporary server on a new port over the same local database, so keying on the URL would make every import
    a first one; the identity is then that database's URL (its password masked: only a hash is stored).

    Example::

        >>> watermark_identity("http://127.0.0.1:8642/api")  # doctest: +SKIP
        'ephemeral:sqlite+aiosqlite:////home/me/.prefect/prefect.db'
    """
    from prefect.settings import get_current_settings

    from forewarn.masking import mask_url

    settings = get_current_settings()
    if settings.api.url:
        return api_url
    database = settings.server.database.connection_url
    if database is None:  # no database setting: Prefect's default one under PREFECT_HOME
        return f"ephemeral:{settings.home}"
    return "ephemeral:" + mask_url(database.get_secret_value())


def import_prefect_history(
    store: TelemetryStore,
    *,
    client: Any = None,
    since: datetime | None = None,
    include_operational: bool = False,
    page_size: int = PAGE,
    overlap: timedelta = DEFAULT_OVERLAP,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> PrefectImportResult:
    """Import the flow runs (and their task runs) that ended in Prefect since the last import; see the module.

    ``client`` is a sync Prefect client (default ``get_client(sync_client=True)``, on ``PREFECT_API_URL``).
    ``since`` imports runs that ended at or after it instead of after the watermark (the first import reads
    everything Prefect keeps). ``now`` is the upper bound (default: the current time) and becomes the
    watermark. Idempotent: importing again writes nothing that is already there.

    Example::

        >>> result = import_prefect_history(TelemetryStore())  # doctest: +SKIP
        >>> result.runs_imported, result.attempts_imported  # doctest: +SKIP
        (120, 964)
    """
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= PAGE:
        raise ConfigurationError("page_size", page_size, f"a whole number from 1 to {PAGE}, e.g. {PAGE}")
    if not isinstance(overlap, timedelta) or overlap < timedelta(0):
        raise ConfigurationError("overlap", overlap, "a timedelta >= 0, e.g. timedelta(minutes=10)")
    if client is None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as own_client:
            return _import(store, own_client, since, include_operational, page_size, overlap, now, progress)
    return _import(store, client, since, include_operational, page_size, overlap, now, progress)


def _import(
    store: TelemetryStore,
    client: Any,
    since: datetime | None,
    include_operational: bool,
    page_size: int,
    overlap: timedelta,
    now: datetime | None,
    progress: Progress | None,
) -> PrefectImportResult:
    started = time.perf_counter()
    api_url = str(client.api_url)
    key = watermark_key(watermark_identity(api_url))
    until = utc(now)
    previous = _read_watermark(store, key)
    lower = utc(since) if since is not None else (previous - overlap if previous is not None else None)
    flow_run_filter = _ended_between(lower, until)
    total = client.count_flow_runs(flow_run_filter=flow_run_filter)
    redactor = Redactor.from_settings()
    counts = {"read": 0, "imported": 0, "known": 0, "skipped": 0, "attempts": 0}
    if progress is not None:
        progress(0, total)
    while True:
        page = _read_page(client, flow_run_filter, page_size, offset=counts["read"])
        counts["read"] += len(page)
        _import_page(store, client, page, include_operational, redactor, counts)
        if progress is not None:
            progress(counts["read"], max(total, counts["read"]))
        if len(page) < page_size:
            break
    # A later ``since`` than the watermark leaves a gap before it: keep the old watermark then.
    if since is None or previous is None or utc(since) <= previous:
        store.record_history([], source=SOURCE, meta={key: until.isoformat()})
    return PrefectImportResult(
        api_url=api_url,
        since=lower,
        until=until,
        runs_read=counts["read"],
        runs_imported=counts["imported"],
        runs_known=counts["known"],
        runs_skipped=counts["skipped"],
        attempts_imported=counts["attempts"],
        seconds=time.perf_counter() - started,
    )


def _read_watermark(store: TelemetryStore, key: str) -> datetime | None:
    value = store.meta_value(key)
    if value is None:
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"forewarn_meta[{key!r}]", value, "an ISO-8601 time with offset; delete the row to import everything again"
        ) from None


def _ended_between(lower: datetime | None, upper: datetime) -> Any:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterEndTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    final = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]
    return FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=final)),
        end_time=FlowRunFilterEndTime(after_=cast(Any, lower), before_=cast(Any, upper)),
    )


def _read_page(client: Any, flow_run_filter: Any, page_size: int, offset: int) -> list[Any]:
    from prefect.client.schemas.sorting import FlowRunSort

    return list(
        client.read_flow_runs(
            flow_run_filter=flow_run_filter, sort=FlowRunSort.END_TIME_DESC, limit=page_size, offset=offset
        )
    )


def _import_page(
    store: TelemetryStore,
    client: Any,
    page: Sequence[Any],
    include_operational: bool,
    redactor: Redactor,
    counts: dict[str, int],
) -> None:
    """Write the page's new runs and their task runs' attempts in one transaction; count what happened."""
    flows, deployments = flow_and_deployment_names(client, page)
    known = store.known_ids("flow_runs", (str(run.id) for run in page))
    new = []
    for run in page:
        name = flows.get(run.flow_id, str(run.flow_id))
        if str(run.id) in known:
            counts["known"] += 1
        elif name in OPERATIONAL_FLOWS and not include_operational:
            counts["skipped"] += 1
        else:
            deployment = deployments.get(run.deployment_id) if run.deployment_id is not None else None
            new.append(flow_run_record(run, name, deployment, redactor))
    if not new:
        return
    task_runs = _read_task_runs(client, [rec.flow_run_id for rec in new])
    known_tasks = store.known_ids("task_attempts", (str(t.id) for t in task_runs))
    attempts = [
        attempt
        for task_run in task_runs
        if str(task_run.id) not in known_tasks
        for attempt in task_run_attempts(task_run, _states(client, task_run), redactor)
    ]
    written_runs, written_attempts = store.record_history(new, attempts, source=SOURCE)
    counts["imported"] += written_runs
    counts["attempts"] += written_attempts


def flow_run_record(run: Any, flow_name: str, deployment: str | None, redactor: Redactor) -> FlowRunRecord:
    """A final Prefect flow run as forewarn records a run: parameters redacted, Prefect's times, state and tags.

    Example::

        >>> from uuid import uuid4
        >>> from prefect.client.schemas.objects import FlowRun
        >>> from prefect.states import Failed
        >>> run = FlowRun(flow_id=uuid4(), parameters={"password": "hunter2"}, state=Failed(name="TimedOut"),
        ...               tags=["nightly", "etl"])
        >>> rec = flow_run_record(run, "etl", None, Redactor())
        >>> rec.state, rec.parameters, rec.tags
        (<RunState.TIMEDOUT: 'TIMEDOUT'>, {'password': '***'}, ('nightly', 'etl'))
    """
    parameters = redact_parameters(_jsonable(dict(run.parameters or {})), redactor)
    return FlowRunRecord(
        flow_run_id=str(run.id),
        flow_name=flow_name,
        deployment=deployment,
        parameters=parameters,
        flow_version=run.flow_version,
        scheduled_start=stdlib_time(run.expected_start_time),
        start_time=stdlib_time(run.start_time),
        end_time=stdlib_time(run.end_time),
        state=final_run_state(run.state),
        host="",  # Prefect does not say where a run ran
        tags=tuple(str(tag) for tag in run.tags or ()),
    )


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    import json

    return cast(dict[str, Any], json.loads(json.dumps(value, default=str)))


def _read_task_runs(client: Any, flow_run_ids: Sequence[str]) -> list[Any]:
    """Every task run of ``flow_run_ids`` except the stand-ins Prefect creates for subflow calls."""
    from uuid import UUID

    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId, TaskRunFilterSubFlowRuns
    from prefect.client.schemas.sorting import TaskRunSort

    task_run_filter = TaskRunFilter(
        flow_run_id=TaskRunFilterFlowRunId(any_=[UUID(i) for i in flow_run_ids]),
        subflow_runs=TaskRunFilterSubFlowRuns(exists_=False),
    )
    return read_pages(
        lambda offset: client.read_task_runs(
            task_run_filter=task_run_filter, sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=PAGE, offset=offset
        )
    )


def _states(client: Any, task_run: Any) -> list[Any]:
    """The task run's state history, oldest first; read only for a task run Prefect ran more than once."""
    if (task_run.run_count or 0) <= 1:
        return []
    return sorted(client.read_task_run_states(task_run.id), key=lambda s: s.timestamp)


def task_name(task_run: Any) -> str:
    """The task's name: Prefect names a task run ``<task name>-<first 3 characters of its dynamic key>``.

    A task run named otherwise (``task_run_name=...``) keeps its own name.

    Example::

        >>> from types import SimpleNamespace
        >>> task_name(SimpleNamespace(name="charge-a1f", dynamic_key="a1f9e"))
        'charge'
        >>> task_name(SimpleNamespace(name="charge order 7", dynamic_key="a1f9e"))
        'charge order 7'
    """
    suffix = "-" + str(task_run.dynamic_key)[:3]
    name = str(task_run.name)
    return name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else name


def task_run_attempts(task_run: Any, states: Sequence[Any], redactor: Redactor) -> list[AttemptRecord]:
    """The attempts of one finished Prefect task run (see the module: what Prefect keeps of each).

    ``states`` is the task run's state history, oldest first (needed only when ``run_count > 1``).

    Example::

        >>> from datetime import datetime, timezone
        >>> from types import SimpleNamespace
        >>> from prefect.states import Failed
        >>> t0, t1 = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc)
        >>> run = SimpleNamespace(id="t1", flow_run_id="f1", name="load-abc", dynamic_key="abc", run_count=1,
        ...     start_time=t0, end_time=t1, state=Failed(message="Task run encountered an exception KeyError: 'x'"))
        >>> [(a.task_name, a.outcome.value, a.exception_type) for a in task_run_attempts(run, [], Redactor())]
        [('load', 'failure', 'KeyError')]
    """
    if task_run.state is None or not task_run.state.is_final() or (task_run.run_count or 0) < 1:
        return []
    name = task_name(task_run)
    if task_run.run_count == 1 or not states:
        spans = [(task_run.start_time, task_run.end_time, task_run.state)]
    else:
        spans = list(_attempt_spans(states))
    attempts = []
    for number, (start, end, ended_in) in enumerate(spans, start=1):
        outcome = _outcome(ended_in)
        if outcome is None or start is None or end is None:
            continue
        last = number == len(spans)
        exception_type, message = _exception(ended_in, redactor) if last else (None, None)
        attempts.append(
            AttemptRecord(
                flow_run_id=str(task_run.flow_run_id),
                task_run_id=str(task_run.id),
                task_name=name,
                attempt=number,
                start_time=cast(datetime, stdlib_time(start)),
                end_time=cast(datetime, stdlib_time(end)),
                outcome=outcome,
                exception_type=exception_type,
                exception_message=message,
                host="",
            )
        )
    return attempts


def _attempt_spans(states: Iterable[Any]) -> Iterable[tuple[datetime, datetime, Any]]:
    """``(start, end, the state it ended in)`` for each run of a task: a RUNNING state up to the next state."""
    running = None
    for state in states:
        if running is not None:
            yield running.timestamp, state.timestamp, state
            running = None
        if state.is_running():
            running = state


def _outcome(state: Any) -> AttemptOutcome | None:
    """How an attempt that ended in ``state`` went; ``None`` for a cancelled one (not an attempt outcome)."""
    if state.is_completed():
        return AttemptOutcome.SUCCESS
    if state.is_cancelled() or state.is_cancelling():
        return None
    if state.is_failed() or state.is_crashed():
        run_state = final_run_state(state)
        return AttemptOutcome.TIMEOUT if run_state is RunState.TIMEDOUT else AttemptOutcome.FAILURE
    return AttemptOutcome.FAILURE  # AwaitingRetry, or a Retrying run: the attempt before it failed


def _exception(state: Any, redactor: Redactor) -> tuple[str | None, str | None]:
    """The exception type and (redacted) message a failed state's message names, else ``(None, None)``."""
    if not (state.is_failed() or state.is_crashed()) or not state.message:
        return None, None
    match = _EXCEPTION.search(str(state.message))
    if match is None:
        return None, redactor.redact(str(state.message))
    return match["type"].rsplit(".", 1)[-1], redactor.redact(match["message"])


__all__ = [
    "DEFAULT_OVERLAP",
    "SOURCE",
    "WATERMARK_PREFIX",
    "PrefectImportResult",
    "flow_run_record",
    "import_prefect_history",
    "task_name",
    "task_run_attempts",
    "watermark_identity",
    "watermark_key",
]
