"""Per-attempt timeouts: sync calls are abandoned in a thread, coroutines are really cancelled."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

from forewarn.errors import AttemptTimeoutError, ConfigurationError
from forewarn.resilience.retry import default_retry_on
from forewarn.resilience.timeout import acall_with_timeout, call_with_timeout

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")

# Generous for work that finishes at once; only ever waited on in full when something is broken.
FAST = 5.0
# Short limit for calls that are meant to hang; the real sleeping in this file stays around 0.1 s.
SHORT = 0.05


class Boom(Exception):
    pass


class TestSyncResult:
    """A call within its limit returns its result; its exceptions pass through unchanged."""

    def test_fast_return(self) -> None:
        """Positional and keyword arguments reach fn; its result comes back."""
        assert call_with_timeout(lambda a, b=0: a + b, (1,), {"b": 2}, seconds=FAST, name="add") == 3

    def test_no_timeout_runs_in_caller_thread(self) -> None:
        """seconds=None calls fn directly, in the calling thread."""
        assert call_with_timeout(threading.get_ident, (), {}, seconds=None, name="t") == threading.get_ident()

    def test_timeout_runs_in_worker_daemon_thread(self) -> None:
        """With a limit, fn runs in another, daemon, thread named after the call."""
        worker = call_with_timeout(threading.current_thread, (), {}, seconds=FAST, name="fetch")
        assert worker is not threading.current_thread()
        assert worker.daemon
        assert worker.name == "forewarn-timeout:fetch"

    def test_kwargs_default(self) -> None:
        """args and kwargs may be left out."""
        assert call_with_timeout(lambda: "ok", seconds=FAST, name="t") == "ok"

    @pytest.mark.parametrize("seconds", [None, FAST])
    def test_exception_propagates_unchanged(self, seconds: float | None) -> None:
        """fn's exception is re-raised as the same object, with its original traceback."""
        error = Boom("nope")

        def fail() -> None:
            raise error

        with pytest.raises(Boom) as info:
            call_with_timeout(fail, (), {}, seconds=seconds, name="t")
        assert info.value is error
        assert any(entry.name == "fail" for entry in info.traceback)

    def test_base_exception_propagates(self) -> None:
        """Even a BaseException such as SystemExit comes back to the caller."""

        def leave() -> None:
            raise SystemExit(3)

        with pytest.raises(SystemExit):
            call_with_timeout(leave, (), {}, seconds=FAST, name="t")

    def test_own_timeout_error_is_not_ours(self) -> None:
        """A TimeoutError raised by fn itself is not turned into AttemptTimeoutError."""

        def own() -> None:
            raise TimeoutError("socket")

        with pytest.raises(TimeoutError) as info:
            call_with_timeout(own, (), {}, seconds=FAST, name="t")
        assert not isinstance(info.value, AttemptTimeoutError)


class TestSyncTimeout:
    """A call past its limit raises AttemptTimeoutError; the abandoned call runs on."""

    def test_timeout_raised_and_call_abandoned(self) -> None:
        """The caller gets a clean AttemptTimeoutError while fn still blocks; fn finishes once released."""
        release = threading.Event()
        finished = threading.Event()

        def hang() -> None:
            release.wait(FAST)
            finished.set()

        with pytest.raises(AttemptTimeoutError) as info:
            call_with_timeout(hang, (), {}, seconds=SHORT, name="fetch")
        assert (info.value.task_name, info.value.timeout_seconds) == ("fetch", SHORT)
        assert str(info.value) == "task 'fetch' attempt timed out after 0.05s"
        assert info.value.__context__ is None and info.value.__cause__ is None
        assert not finished.is_set()
        release.set()
        assert finished.wait(FAST)

    def test_timeout_is_retryable(self) -> None:
        """The timeout error is a TimeoutError, which the default policy retries."""
        error = AttemptTimeoutError("fetch", SHORT)
        assert isinstance(error, TimeoutError)
        assert default_retry_on(error)

    @pytest.mark.parametrize("seconds", [0, -1, float("inf"), float("nan"), "1", True])
    def test_bad_seconds(self, seconds: Any) -> None:
        """The limit must be finite seconds > 0 (or None)."""
        with pytest.raises(ConfigurationError) as info:
            call_with_timeout(lambda: None, (), {}, seconds=seconds, name="fetch")
        assert info.value.setting == "timeout_seconds (of 'fetch')"

    def test_coroutine_function_rejected(self) -> None:
        """A coroutine function is pointed to acall_with_timeout instead of silently not running."""

        async def coro() -> None:
            pass

        with pytest.raises(ConfigurationError, match="acall_with_timeout"):
            call_with_timeout(coro, (), {}, seconds=FAST, name="c")  # type: ignore[unused-coroutine]


class TestSyncContext:
    """Context variables (Prefect's run context among them) are visible in the worker thread."""

    def test_contextvar_visible(self) -> None:
        """A value set by the caller is read inside fn."""
        token = request_id.set("run-123")
        try:
            assert call_with_timeout(request_id.get, (), {}, seconds=FAST, name="t") == "run-123"
        finally:
            request_id.reset(token)

    def test_changes_stay_in_the_copy(self) -> None:
        """fn's own changes to context variables do not leak back to the caller."""
        call_with_timeout(request_id.set, ("changed",), {}, seconds=FAST, name="t")
        assert request_id.get() == "unset"

    def test_each_call_gets_a_fresh_copy(self) -> None:
        """A later call sees the caller's current values, not the previous call's copy."""
        token = request_id.set("first")
        try:
            call_with_timeout(request_id.set, ("inside",), {}, seconds=FAST, name="t")
            request_id.set("second")
            assert call_with_timeout(request_id.get, (), {}, seconds=FAST, name="t") == "second"
        finally:
            request_id.reset(token)


class TestAsync:
    """acall_with_timeout awaits within the limit and cancels past it."""

    def test_fast_return(self) -> None:
        """A coroutine that finishes in time returns its result."""

        async def add(a: int, b: int = 0) -> int:
            await asyncio.sleep(0)
            return a + b

        assert asyncio.run(acall_with_timeout(add, (1,), {"b": 2}, seconds=FAST, name="add")) == 3

    def test_no_timeout(self) -> None:
        """seconds=None awaits directly."""

        async def value() -> str:
            return "ok"

        assert asyncio.run(acall_with_timeout(value, seconds=None, name="v")) == "ok"

    @pytest.mark.parametrize("seconds", [None, FAST])
    def test_exception_propagates_unchanged(self, seconds: float | None) -> None:
        """The coroutine's exception comes back as the same object."""
        error = Boom("async nope")

        async def fail() -> None:
            raise error

        with pytest.raises(Boom) as info:
            asyncio.run(acall_with_timeout(fail, (), {}, seconds=seconds, name="f"))
        assert info.value is error

    @pytest.mark.parametrize("error_type", [TimeoutError, asyncio.TimeoutError])
    def test_own_timeout_error_is_not_ours(self, error_type: type[Exception]) -> None:
        """A TimeoutError the coroutine raises itself is not mistaken for the attempt timeout."""
        error = error_type("inner")

        async def own() -> None:
            raise error

        with pytest.raises(error_type) as info:
            asyncio.run(acall_with_timeout(own, (), {}, seconds=FAST, name="o"))
        assert info.value is error

    def test_timeout_cancels_and_finally_runs(self) -> None:
        """Past the limit the coroutine is cancelled, and its finally block ran before the error."""
        events: list[str] = []

        async def hang() -> None:
            try:
                events.append("started")
                await asyncio.sleep(FAST)
                events.append("finished")
            finally:
                events.append("cleaned up")

        async def main() -> None:
            with pytest.raises(AttemptTimeoutError) as info:
                await acall_with_timeout(hang, (), {}, seconds=SHORT, name="hang")
            assert (info.value.task_name, info.value.timeout_seconds) == ("hang", SHORT)
            assert events == ["started", "cleaned up"]

        asyncio.run(main())

    def test_caller_cancellation_cancels_the_call(self) -> None:
        """If the caller is cancelled, the call it was waiting on is cancelled too."""
        events: list[str] = []

        async def hang(ready: asyncio.Event) -> None:
            try:
                ready.set()
                await asyncio.sleep(FAST)
            finally:
                events.append("cleaned up")

        async def main() -> None:
            ready = asyncio.Event()
            outer = asyncio.ensure_future(acall_with_timeout(hang, (ready,), {}, seconds=FAST, name="h"))
            await ready.wait()
            outer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await outer
            await asyncio.sleep(0)
            assert events == ["cleaned up"]

        asyncio.run(main())

    def test_coroutine_that_ignores_cancel(self) -> None:
        """A coroutine that swallows the cancel and returns still yields AttemptTimeoutError."""

        async def stubborn() -> str:
            try:
                await asyncio.sleep(FAST)
            except asyncio.CancelledError:
                return "ignored the cancel"
            return "slept"

        async def main() -> None:
            with pytest.raises(AttemptTimeoutError):
                await acall_with_timeout(stubborn, (), {}, seconds=0.01, name="s")

        asyncio.run(main())

    def test_contextvar_visible(self) -> None:
        """The coroutine sees the caller's context variables."""

        async def read() -> str:
            return request_id.get()

        async def main() -> str:
            request_id.set("async-run")
            return await acall_with_timeout(read, (), {}, seconds=FAST, name="r")

        assert asyncio.run(main()) == "async-run"

    def test_sync_callable_rejected(self) -> None:
        """A callable that returns no awaitable is pointed to call_with_timeout."""
        with pytest.raises(ConfigurationError, match="call_with_timeout"):
            asyncio.run(acall_with_timeout(lambda: 1, (), {}, seconds=FAST, name="s"))  # type: ignore[arg-type,return-value]

    @pytest.mark.parametrize("seconds", [0, -0.5, float("inf")])
    def test_bad_seconds(self, seconds: float) -> None:
        """The same limit validation as the sync variant."""

        async def value() -> None:
            return None

        with pytest.raises(ConfigurationError, match="timeout_seconds"):
            asyncio.run(acall_with_timeout(value, (), {}, seconds=seconds, name="v"))
