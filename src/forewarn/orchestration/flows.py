"""``forewarn.flow``: a Prefect flow whose runs are recorded from start to final state.

It accepts every option of Prefect's ``@flow`` and returns a real :class:`prefect.Flow`. The flow run's
row is written as the first thing inside the run, before any task attempt, and its final state is written
by Prefect's own state hooks (``on_completion``, ``on_failure``, ``on_cancellation``, ``on_crashed``),
appended after any hooks you pass; a run that ends ``FAILED`` or ``CRASHED`` also emits the event
``forewarn.flow.failed`` and gets a failure artifact (:mod:`forewarn.orchestration.failure_response`). A
process killed with SIGKILL runs no hook: its row keeps the state ``RUNNING`` and no end time, which is
exactly what is known about it.

Before the body runs, the flow scores its own run against the current failure-warning model, when one is
installed and ``score=True`` (see :mod:`forewarn.orchestration.warning`); scoring is fail-open.

Example::

    import forewarn

    @forewarn.flow(name="orders", log_prints=True, warning_policy="harden")
    def process_order(order_id: str) -> str:
        ...
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

import prefect
from prefect.context import FlowRunContext

from forewarn.errors import ConfigurationError
from forewarn.orchestration.failure_response import flow_ended
from forewarn.orchestration.log_redaction import install_log_redaction
from forewarn.orchestration.recorder import default_recorder
from forewarn.records import FlowRunRecord, RunState, parameters_hash
from forewarn.redaction import Redactor, redact_parameters
from forewarn.timeutil import utc_now

R = TypeVar("R")
WarningPolicy = Literal["warn", "harden", "pause"]
logger = logging.getLogger("forewarn.flows")

_HOOK_OPTIONS = ("on_completion", "on_failure", "on_cancellation", "on_crashed")


def _jsonable(parameters: dict[str, Any]) -> dict[str, Any]:
    # Parameters may hold objects; the store keeps what JSON can say about them.
    return json.loads(json.dumps(parameters, default=str))


def _deployment_name(flow_run: Any) -> str | None:
    if getattr(flow_run, "deployment_id", None) is None:
        return None
    try:
        from prefect.runtime import deployment

        return str(deployment.name) if deployment.name else None
    except Exception:  # the name is a nicety; the id is enough to group runs
        return str(flow_run.deployment_id)


FeaturesFn = Callable[[dict[str, Any]], dict[str, Any]]


def current_flow_run_record(
    clock: Callable[[], datetime] = utc_now, features: FeaturesFn | None = None
) -> FlowRunRecord | None:
    """Describe the flow run this code runs in, as forewarn records it (None outside a flow run).

    The run's Prefect tags (given to the deployment, ``run_deployment(tags=...)`` or a ``prefect.tags``
    block around the call) are recorded with it. ``features`` turns the run's parameters into its pre-run
    attributes (``{"input_rows": 1200}``), recorded
    with the run and used by the failure-warning model like the ``feature_*`` columns of an import.
    Secret-named parameters and secrets inside strings are masked (:func:`forewarn.redaction.redact_parameters`)
    before anything is recorded; ``features`` alone gets the parameters as given.
    """
    from forewarn._version import __version__

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None
    run = ctx.flow_run
    given = _jsonable(dict(ctx.parameters or run.parameters or {}))
    # Secrets never reach the store, nor its hash (which could confirm a guessed password): the run is
    # recorded, hashed and scored on its redacted parameters. Only the features function sees them whole.
    redactor = Redactor.from_settings()
    parameters = redact_parameters(given, redactor)
    return FlowRunRecord(
        flow_run_id=str(run.id),
        flow_name=ctx.flow.name if ctx.flow is not None else run.name,
        deployment=_deployment_name(run),
        parameters=parameters,
        parameters_hash=parameters_hash(parameters),
        flow_version=run.flow_version or (ctx.flow.version if ctx.flow is not None else None),
        scheduled_start=stdlib_time(run.expected_start_time),
        start_time=clock(),
        state=RunState.RUNNING,
        forewarn_version=__version__,
        features=redact_parameters(_features(features, given), redactor),
        tags=tuple(str(tag) for tag in run.tags or ()),
    )


def _features(features: FeaturesFn | None, parameters: dict[str, Any]) -> dict[str, Any]:
    if features is None:
        return {}
    try:
        return _jsonable(dict(features(parameters)))
    except Exception:  # a broken features function must not stop the business flow
        logger.exception("forewarn.flow features function failed; this run is recorded without features")
        return {}


def stdlib_time(value: datetime | None) -> datetime | None:
    """A Prefect time as a plain aware UTC ``datetime`` (``None`` stays ``None``).

    Prefect hands out its own ``DateTime`` subclass; the store wants the standard library's.

    Example::

        >>> stdlib_time(datetime(2026, 1, 1, tzinfo=timezone.utc)).isoformat()
        '2026-01-01T00:00:00+00:00'
    """
    if value is None:
        return None
    return datetime.fromtimestamp(value.timestamp(), tz=timezone.utc)


# Prefect hands on_cancellation hooks the CANCELLING state: the worker is stopping the run, and that is
# how the run ends (the process may not live to see CANCELLED).
_ENDS_AS = {"CANCELLING": RunState.CANCELLED}


def final_run_state(state: Any) -> RunState:
    """forewarn's :class:`~forewarn.records.RunState` for a final Prefect state: its type, or ``TIMEDOUT``
    for Prefect's ``TimedOut`` (a ``FAILED`` state by that name); ``CANCELLED`` for the ``CANCELLING`` state
    Prefect hands ``on_cancellation`` hooks.

    Example::

        >>> from prefect.states import Failed
        >>> final_run_state(Failed(name="TimedOut")), final_run_state(Failed())
        (<RunState.TIMEDOUT: 'TIMEDOUT'>, <RunState.FAILED: 'FAILED'>)
    """
    if getattr(state, "name", None) == "TimedOut":
        return RunState.TIMEDOUT
    value = state.type.value
    return _ENDS_AS.get(value) or RunState(value)


def _record_end(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect state hook ``(flow, flow_run, state)`` that writes the run's final state."""
    recorder = default_recorder()
    if recorder is not None:
        recorder.flow_run_ended(str(flow_run.id), final_run_state(state), utc_now())


def flow(
    __fn: Callable[..., Any] | None = None,
    *,
    warning_policy: WarningPolicy | None = None,
    score: bool = True,
    features: FeaturesFn | None = None,
    **prefect_options: Any,
) -> Any:
    """Make ``fn`` a Prefect flow whose runs are recorded, and scored for failure risk before they start.

    Args:
        warning_policy: what happens when this run is scored at risk: ``"warn"`` (log, artifact, event),
            ``"harden"`` (also: its forewarn tasks get extra attempts), or ``"pause"`` (also: Prefect's
            ``pause_flow_run`` waits for a person to resume). Default ``FOREWARN_WARNING_POLICY``.
        score: set False to skip pre-run scoring for this flow.
        features: ``features(parameters) -> dict`` of attributes known before the run starts (input size,
            source system, ...); recorded with the run and used by the model. Names without ``feature_``.
        **prefect_options: anything Prefect's ``@flow`` takes (name, retries, log_prints, hooks, ...).

    Example::

        >>> import forewarn
        >>> @forewarn.flow(name="nightly-load")
        ... def nightly_load(day: str) -> int:
        ...     return 0
        >>> nightly_load.name
        'nightly-load'
    """
    if warning_policy is not None and warning_policy not in ("warn", "harden", "pause"):
        raise ConfigurationError("warning_policy", warning_policy, "one of 'warn', 'harden', 'pause'")
    if features is not None and not callable(features):
        raise ConfigurationError("features", features, "a callable features(parameters) -> dict")
    options = dict(prefect_options)
    for hook_option in _HOOK_OPTIONS:
        options[hook_option] = [*(options.get(hook_option) or []), _record_end, flow_ended]

    def decorate(fn: Callable[..., Any]) -> prefect.Flow[..., Any]:
        install_log_redaction()  # Prefect logs a failed flow's exception text: secrets masked first
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_body(*args: Any, **kwargs: Any) -> Any:
                with _run_started(warning_policy, score, features):
                    return await fn(*args, **kwargs)

            body: Callable[..., Any] = async_body
        else:

            @functools.wraps(fn)
            def sync_body(*args: Any, **kwargs: Any) -> Any:
                with _run_started(warning_policy, score, features):
                    return fn(*args, **kwargs)

            body = sync_body

        return prefect.flow(body, **options)

    if __fn is not None:
        return decorate(__fn)
    return decorate


class _run_started:
    """Records the run's start, scores it, and applies the warning policy for the body's duration."""

    def __init__(self, warning_policy: WarningPolicy | None, score: bool, features: FeaturesFn | None) -> None:
        self.warning_policy = warning_policy
        self.score = score
        self.features = features
        self._exit: Any = None

    def __enter__(self) -> None:
        recorder = default_recorder()
        record = current_flow_run_record(features=self.features)
        if record is None:
            return
        if recorder is not None:
            recorder.flow_run_started(record)
        if self.score:
            self._exit = _score_and_warn(record, self.warning_policy)

    def __exit__(self, *exc_info: Any) -> None:
        if self._exit is not None:
            self._exit.__exit__(*exc_info)


def _score_and_warn(record: FlowRunRecord, policy: WarningPolicy | None) -> Any:
    """Pre-run scoring (fail-open, see :mod:`forewarn.orchestration.warning`); returns a context to exit after."""
    # Imported here: the warning module pulls in pandas and scikit-learn only when a run is scored.
    from forewarn.orchestration.warning import warn_before_run

    return warn_before_run(record, policy=policy)


__all__ = ["current_flow_run_record", "flow", "parameters_hash"]
