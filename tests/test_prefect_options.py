"""forewarn.task and forewarn.flow as drop-in replacements: Prefect's options, with Prefect's meaning."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import math
import random
from typing import Any

import pandas as pd
import prefect
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from prefect.utilities.math import clamped_poisson_interval

import forewarn
from forewarn.errors import ConfigurationError
from forewarn.orchestration.retry_options import prefect_retry_policy
from forewarn.orchestration.tasks import runner_of
from forewarn.resilience.retry import MAX_WAIT_SECONDS, RetryPolicy, clamped_poisson_seconds


def failing(times: int, error: type[Exception] = ConnectionError):
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error(f"failure {calls['n']}")
        return "ok"

    return call


def run_fn(task_: prefect.Task[..., Any]) -> Any:
    return task_.fn()


class TestRetryDelaySeconds:
    """Prefect's retry_delay_seconds: a number, a list, or a callable(retries) -> list."""

    @pytest.mark.parametrize(
        ("delay", "expected"),
        [
            (5, [5.0, 5.0, 5.0]),
            (0, [0.0, 0.0, 0.0]),
            ([1, 10], [1.0, 10.0, 10.0]),  # the last wait repeats, as in Prefect
            ([], [0.0, 0.0, 0.0]),  # Prefect: an empty list means no delay
            (exponential_backoff(backoff_factor=10), [10.0, 20.0, 40.0]),
            (lambda retries: [float(retries)] * retries, [3.0, 3.0, 3.0]),  # called with the number of retries
        ],
    )
    def test_waits_follow_prefect(self, delay: Any, expected: list[float]) -> None:
        """Each retry waits what Prefect would have waited, and forewarn makes every attempt."""
        waits: list[float] = []

        @forewarn.task(retries=3, retry_delay_seconds=delay, sleep=waits.append)
        def flaky() -> str:
            return call()

        call = failing(3)
        assert run_fn(flaky) == "ok"
        assert waits == expected
        assert flaky.retries == 0  # Prefect does not retry on top of forewarn

    def test_prefect_and_forewarn_agree_on_the_schedule(self) -> None:
        """The policy's schedule is the list Prefect stores for the same option."""
        option = exponential_backoff(backoff_factor=2)
        ours = runner_of(forewarn.task(retries=4, retry_delay_seconds=option)(lambda: 1)).policy
        theirs = prefect.task(retries=4, retry_delay_seconds=option)(lambda: 1)
        assert list(ours.wait_schedule or ()) == theirs.retry_delay_seconds
        assert ours.attempts == theirs.retries + 1

    @pytest.mark.parametrize(
        "delay",
        ["10", [1, "2"], [-1], [math.inf], [0.5] * 51, lambda retries: "soon", lambda retries: 1 / 0, True],
    )
    def test_bad_values_name_the_option(self, delay: Any) -> None:
        """A delay Prefect would refuse (or forewarn cannot sleep) fails at decoration, naming retry_delay_seconds."""
        with pytest.raises(ConfigurationError, match="retry_delay_seconds=") as info:
            forewarn.task(retries=2, retry_delay_seconds=delay)
        assert "retry_delay_seconds" in str(info.value)


class TestRetryJitterFactor:
    def test_jitter_is_prefects_clamped_poisson_draw(self) -> None:
        """With the same random draws, a wait is exactly Prefect's clamped_poisson_interval of the delay."""
        random.seed(11)
        theirs = [clamped_poisson_interval(d, clamping_factor=0.5) for d in (2.0, 8.0, 8.0)]
        policy = runner_of(forewarn.task(retries=3, retry_delay_seconds=[2, 8], retry_jitter_factor=0.5)(lambda: 1))
        random.seed(11)
        ours = [policy.policy.wait(n) for n in (1, 2, 3)]
        assert ours == pytest.approx(theirs, rel=1e-12)

    def test_zero_factor_and_zero_delay_are_not_jittered(self) -> None:
        """As in Prefect: a factor of 0 leaves waits alone, and a zero wait stays zero."""
        policy = runner_of(forewarn.task(retries=2, retry_delay_seconds=[0, 3], retry_jitter_factor=0)(lambda: 1))
        assert [policy.policy.wait(1), policy.policy.wait(2)] == [0.0, 3.0]

    def test_with_forewarn_backoff_it_replaces_the_additive_jitter(self) -> None:
        """Without retry_delay_seconds, the factor jitters forewarn's exponential wait instead of wait_jitter."""
        policy = runner_of(forewarn.task(retries=2, retry_jitter_factor=1.0)(lambda: 1)).policy
        assert policy.wait_jitter == 0.0
        assert policy.wait_jitter_factor == 1.0
        assert policy.wait_schedule is None

    @pytest.mark.parametrize("factor", [-0.1, math.nan, math.inf, "0.5", 101])
    def test_bad_factor_names_the_option(self, factor: Any) -> None:
        """A factor that is not a number from 0 to 100 fails at decoration."""
        with pytest.raises(ConfigurationError, match="retry_jitter_factor="):
            forewarn.task(retry_jitter_factor=factor)


class TestRetryConditionFn:
    def test_it_decides_which_failures_are_retried(self) -> None:
        """retry_condition_fn(task, task_run, state) replaces forewarn's default: here a ValueError is retried."""
        seen: list[tuple[Any, Any, Any]] = []

        def retry_value_errors(task: Any, task_run: Any, state: State) -> bool:
            seen.append((task, task_run, state))
            return isinstance(state.result(raise_on_failure=False), ValueError)

        waits: list[float] = []

        @forewarn.task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_value_errors, sleep=waits.append)
        def validate() -> str:
            return call()

        call = failing(2, ValueError)
        assert run_fn(validate) == "ok"
        assert len(seen) == 2
        assert all(task is validate and task_run is None for task, task_run, _ in seen)  # .fn(): no task run
        assert all(isinstance(state, State) and state.is_failed() for _, _, state in seen)

        call = failing(1, ConnectionError)
        with pytest.raises(ConnectionError):
            run_fn(validate)  # retry_condition_fn says no: one attempt only

    def test_an_error_in_it_means_no_retry(self, caplog: pytest.LogCaptureFixture) -> None:
        """As in Prefect, a retry_condition_fn that raises is logged and the failure is final."""

        def broken(task: Any, task_run: Any, state: State) -> bool:
            raise RuntimeError("oops")

        @forewarn.task(retries=3, retry_condition_fn=broken, sleep=lambda s: None)
        def work() -> str:
            return call()

        call = failing(1)
        with pytest.raises(ConnectionError):
            run_fn(work)
        assert "retry_condition_fn" in caplog.text

    def test_async_condition_is_awaited(self) -> None:
        """An async retry_condition_fn is awaited, as Prefect does."""

        async def always(task: Any, task_run: Any, state: State) -> bool:
            await asyncio.sleep(0)
            return True

        @forewarn.task(retries=1, retry_delay_seconds=0, retry_condition_fn=always)
        def work() -> str:
            return call()

        call = failing(1, ValueError)
        assert run_fn(work) == "ok"

    def test_both_spellings_at_once_are_refused(self) -> None:
        """retry_condition_fn and retry_on say the same thing: one of them, with a message saying so."""
        with pytest.raises(ConfigurationError, match="not both"):
            forewarn.task(retry_on=ConnectionError, retry_condition_fn=lambda t, r, s: True)

    @pytest.mark.parametrize("option", [{"retry_delay_seconds": 1}, {"retry_jitter_factor": 0.2}])
    def test_waits_spelled_twice_are_refused(self, option: dict[str, Any]) -> None:
        """retry=RetryPolicy(...) already sets the waits: Prefect's wait options beside it are refused."""
        with pytest.raises(ConfigurationError, match="not both"):
            forewarn.task(retry=RetryPolicy(), **option)

    def test_not_callable_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="retry_condition_fn="):
            forewarn.task(retry_condition_fn=True)


# --- drop-in replacement: every keyword prefect.task / prefect.flow accepts -------------------------------


def _hook(*args: Any) -> None:
    return None


# option -> (value, attribute of the resulting prefect.Task, what forewarn does with it)
TASK_OPTIONS: dict[str, tuple[Any, str, str]] = {
    "name": ("charge-card", "name", "passed"),
    "description": ("Charges a card", "description", "passed"),
    "tags": (["payments"], "tags", "passed"),
    "version": ("2", "version", "passed"),
    "cache_policy": (NO_CACHE, "cache_policy", "passed"),
    "cache_key_fn": (lambda ctx, params: "k", "cache_key_fn", "passed"),
    "cache_expiration": (dt.timedelta(minutes=5), "cache_expiration", "passed"),
    "task_run_name": ("charge-{order_id}", "task_run_name", "passed"),
    "retries": (3, "retries", "forewarn"),
    "retry_delay_seconds": ([1, 2], "retry_delay_seconds", "forewarn"),
    "retry_jitter_factor": (0.5, "retry_jitter_factor", "forewarn"),
    "persist_result": (False, "persist_result", "passed"),
    "result_storage": ("local-file-system/results", "result_storage", "passed"),
    "result_storage_key": ("charge-{parameters[order_id]}", "result_storage_key", "passed"),
    "result_serializer": ("json", "result_serializer", "passed"),
    "cache_result_in_memory": (False, "cache_result_in_memory", "passed"),
    "timeout_seconds": (30, "timeout_seconds", "forewarn"),
    "log_prints": (True, "log_prints", "passed"),
    "refresh_cache": (True, "refresh_cache", "passed"),
    "on_completion": ([_hook], "on_completion_hooks", "passed"),
    "on_failure": ([_hook], "on_failure_hooks", "passed"),
    "on_running": ([_hook], "on_running_hooks", "passed"),
    "retry_condition_fn": (lambda task, run, state: True, "retry_condition_fn", "forewarn"),
    "viz_return_value": ("viz", "viz_return_value", "passed"),
    "asset_deps": (["s3://bucket/orders"], "asset_deps", "passed"),
}


def _charge(order_id: str) -> str:
    return order_id


class TestTaskIsADropInReplacement:
    def test_the_table_covers_every_option_of_prefect_task(self) -> None:
        """A Prefect release that adds a @task option fails here until forewarn has decided what to do with it."""
        prefect_options = set(inspect.signature(prefect.task).parameters) - {"__fn"}
        assert prefect_options == set(TASK_OPTIONS)
        ours = inspect.signature(forewarn.task).parameters
        assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ours.values())

    @pytest.mark.parametrize("option", sorted(TASK_OPTIONS))
    def test_each_option_keeps_its_prefect_meaning(self, option: str) -> None:
        """Passed options give the task Prefect would build; forewarn's own run inside the call, not in Prefect."""
        value, attribute, handled_by = TASK_OPTIONS[option]
        theirs = prefect.task(**{option: value})(_charge)
        ours = forewarn.task(**{option: value})(_charge)
        assert isinstance(ours, prefect.Task)
        if handled_by == "passed":
            assert getattr(ours, attribute) == getattr(theirs, attribute)
            return
        # forewarn runs it: Prefect's engine must not retry or time out on top of forewarn.
        assert (ours.retries, ours.retry_delay_seconds, ours.retry_jitter_factor, ours.timeout_seconds) == (
            0,
            prefect.task(_charge).retry_delay_seconds,
            None,
            None,
        )
        assert ours.retry_condition_fn is None
        runner = runner_of(ours)
        expected = {
            "retries": lambda: runner.policy.attempts == 4,
            "retry_delay_seconds": lambda: runner.policy.wait_schedule == (1.0, 2.0),
            "retry_jitter_factor": lambda: runner.policy.wait_jitter_factor == 0.5,
            "timeout_seconds": lambda: runner.timeout_seconds == 30,
            "retry_condition_fn": lambda: runner.policy.is_retryable(ValueError("any")),
        }[option]
        assert expected()

    def test_bare_decorator_and_direct_call_work_like_prefects(self) -> None:
        """@forewarn.task, @forewarn.task() and forewarn.task(fn, name=...) all give a task, as Prefect's do."""
        assert forewarn.task(_charge).name == prefect.task(_charge).name
        assert forewarn.task()(_charge).name == "_charge"
        assert forewarn.task(_charge, name="c").name == prefect.task(_charge, name="c").name


class TestWithOptions:
    def test_with_options_keeps_forewarns_meaning(self) -> None:
        """Task.with_options rebuilds the forewarn task: Prefect's retries stay off, forewarn's change."""
        waits: list[float] = []
        base = forewarn.task(retries=1, tags=["payments"], sleep=waits.append)(_charge)
        changed = base.with_options(retries=4, retry_delay_seconds=[3], timeout_seconds=9, name="charge-slow")
        assert (changed.name, changed.tags, changed.retries, changed.timeout_seconds) == (
            "charge-slow",
            {"payments"},
            0,
            None,
        )
        runner = runner_of(changed)
        assert (runner.policy.attempts, runner.policy.wait_schedule, runner.timeout_seconds) == (5, (3.0,), 9)
        assert runner_of(base).policy.attempts == 2  # the original is unchanged

    def test_with_options_takes_forewarn_options_too(self) -> None:
        """forewarn's own options (fallback, runbook, ...) can be changed the same way."""
        changed = forewarn.task(_charge).with_options(fallback=lambda exc, order_id: "queued", runbook="call Bob")
        assert runner_of(changed).fallback is not None


FLOW_OPTIONS: dict[str, tuple[Any, str]] = {
    "name": ("orders", "name"),
    "version": ("7", "version"),
    "flow_run_name": ("orders-{order_id}", "flow_run_name"),
    "retries": (2, "retries"),
    "retry_delay_seconds": (5, "retry_delay_seconds"),
    "task_runner": (ThreadPoolTaskRunner(max_workers=2), "task_runner"),
    "description": ("Processes orders", "description"),
    "timeout_seconds": (60, "timeout_seconds"),
    "validate_parameters": (False, "should_validate_parameters"),
    "persist_result": (True, "persist_result"),
    "result_storage": ("local-file-system/results", "result_storage"),
    "result_serializer": ("json", "result_serializer"),
    "cache_result_in_memory": (False, "cache_result_in_memory"),
    "log_prints": (True, "log_prints"),
    "on_completion": ([_hook], "on_completion_hooks"),
    "on_failure": ([_hook], "on_failure_hooks"),
    "on_cancellation": ([_hook], "on_cancellation_hooks"),
    "on_crashed": ([_hook], "on_crashed_hooks"),
    "on_running": ([_hook], "on_running_hooks"),
}


def _orders(order_id: str) -> str:
    return order_id


class TestFlowIsADropInReplacement:
    def test_the_table_covers_every_option_of_prefect_flow(self) -> None:
        """A Prefect release that adds a @flow option fails here until forewarn has decided what to do with it."""
        prefect_options = {name for name in inspect.signature(prefect.flow).parameters if not name.endswith("__fn")}
        assert prefect_options == set(FLOW_OPTIONS)

    @pytest.mark.parametrize("option", sorted(FLOW_OPTIONS))
    def test_each_option_keeps_its_prefect_meaning(self, option: str) -> None:
        """Every @flow option reaches Prefect unchanged; forewarn only appends its own state hooks after yours."""
        value, attribute = FLOW_OPTIONS[option]
        theirs = getattr(prefect.flow(**{option: value})(_orders), attribute)
        ours = getattr(forewarn.flow(**{option: value})(_orders), attribute)
        if attribute.endswith("_hooks") and attribute != "on_running_hooks":
            assert ours[: len(theirs)] == theirs  # the user's hooks first, forewarn's after
            assert len(ours) > len(theirs)
        elif attribute == "task_runner":
            assert ours is value
        else:
            assert ours == theirs


# --- property: waits stay within their bounds under Prefect's spelling ----------------------------------

delays = st.floats(min_value=0, max_value=MAX_WAIT_SECONDS, allow_nan=False)
factors = st.one_of(st.none(), st.floats(min_value=0, max_value=100, allow_nan=False))


def _bounds(delay: float, factor: float | None) -> tuple[float, float]:
    if not factor or delay <= 0:
        return delay, delay
    k = 1 + factor
    lower = 0.0 if k >= 50 else delay * math.log2(2**k / (2**k - 1))
    return lower, min(delay * k, MAX_WAIT_SECONDS)


class TestWaitBounds:
    @settings(max_examples=300, deadline=None)
    @given(
        delay=st.one_of(delays, st.lists(delays, max_size=50)),
        factor=factors,
        retries=st.integers(min_value=0, max_value=60),
        attempt=st.integers(min_value=1, max_value=61),
        u=st.floats(min_value=0, max_value=1, exclude_max=True),
    )
    def test_every_wait_is_within_prefects_bounds(
        self, delay: float | list[float], factor: float | None, retries: int, attempt: int, u: float
    ) -> None:
        """wait(n) lies within Prefect's clamped bounds around the n-th delay (the last repeated), at most a day."""
        policy = prefect_retry_policy(
            RetryPolicy(attempts=retries + 1), retry_delay_seconds=delay, retry_jitter_factor=factor
        )
        schedule = [delay] if isinstance(delay, float) else delay
        base = schedule[min(attempt, len(schedule)) - 1] if schedule else 0.0
        lower, upper = _bounds(base, factor)
        wait = policy.wait(attempt, rand=lambda: u)
        assert 0.0 <= wait <= MAX_WAIT_SECONDS
        slack = 1e-9 * base  # float rounding in exp/log, relative to the delay (the lower bound may be tiny)
        assert lower - slack <= wait <= upper + slack

    @settings(max_examples=200, deadline=None)
    @given(average=st.floats(min_value=1e-3, max_value=1e4), factor=st.floats(min_value=1e-3, max_value=60))
    def test_median_draw_is_the_average(self, average: float, factor: float) -> None:
        """Prefect's jitter keeps the median wait at the configured delay (u at the midpoint of the clamp)."""
        low, high = clamped_poisson_seconds(average, factor, 0.0), clamped_poisson_seconds(average, factor, 1 - 1e-12)
        assert low <= average <= high * (1 + 1e-9)

    @settings(max_examples=100, deadline=None)
    @given(factor=st.floats(min_value=0.01, max_value=60), seed=st.integers(min_value=0, max_value=2**32 - 1))
    def test_same_draw_as_prefect(self, factor: float, seed: int) -> None:
        """Given Prefect's own uniform draw, forewarn's wait equals Prefect's, for any factor."""
        random.seed(seed)
        theirs = clamped_poisson_interval(7.0, clamping_factor=factor)
        random.seed(seed)
        assert clamped_poisson_seconds(7.0, factor, random.random()) == pytest.approx(theirs, rel=1e-12)


# --- inside a real flow run: every attempt recorded, the real task run handed to retry_condition_fn --------


@pytest.mark.usefixtures("prefect_harness")
class TestInsideARun:
    def test_prefect_spelling_records_every_attempt(self) -> None:
        """retries + retry_delay_seconds + retry_condition_fn: forewarn makes and records each attempt."""
        from forewarn.orchestration.recorder import default_recorder
        from forewarn.settings import get_settings
        from forewarn.store import TelemetryStore

        waits: list[float] = []
        runs: list[Any] = []

        def retry_connection_errors(task: Any, task_run: Any, state: State) -> bool:
            runs.append(task_run)
            return isinstance(state.result(raise_on_failure=False), ConnectionError)

        call = failing(2)

        @forewarn.task(
            retries=3, retry_delay_seconds=[2, 4], retry_condition_fn=retry_connection_errors, sleep=waits.append
        )
        def reserve() -> str:
            return call()

        @forewarn.flow(score=False)
        def orders() -> str:
            return reserve()

        state = orders(return_state=True)
        assert state.is_completed()
        assert waits == [2.0, 4.0]
        assert all(isinstance(run, TaskRun) for run in runs) and len({run.id for run in runs}) == 1
        recorder = default_recorder()
        assert recorder is not None and recorder.flush(10)
        frame = TelemetryStore(get_settings().db_url).attempts(flow_run_id=str(state.state_details.flow_run_id))
        rows = [
            [attempt, outcome, None if retryable is pd.NA else retryable]
            for attempt, outcome, retryable in frame.sort_values("attempt")[["attempt", "outcome", "retryable"]].values
        ]
        assert rows == [[1, "failure", True], [2, "failure", True], [3, "success", None]]
