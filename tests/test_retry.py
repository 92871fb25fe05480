"""RetryPolicy: pure waits, validation, retry classification and the testing switch."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forewarn.errors import AttemptTimeoutError, CircuitOpenError, ConfigurationError
from forewarn.limits import MAX_WAIT_EXP_BASE, MAX_WAIT_SECONDS
from forewarn.resilience.chaos import PermanentFault, TransientFault
from forewarn.resilience.retry import (
    NON_RETRYABLE,
    RETRYABLE_CLIENT_STATUS,
    RetryPolicy,
    default_retry_on,
    is_testing,
    set_testing,
)
from forewarn.settings import ForewarnSettings


def zero() -> float:
    return 0.0


def one() -> float:
    return 1.0


class FakeResponse:
    def __init__(self, status_code: Any) -> None:
        self.status_code = status_code


class FakeHTTPError(Exception):
    """Shaped like httpx.HTTPStatusError / requests.HTTPError: carries ``.response``."""

    def __init__(self, status_code: Any) -> None:
        super().__init__(f"HTTP {status_code}")
        self.response = FakeResponse(status_code)


@pytest.fixture(autouse=True)
def _testing_off() -> Any:
    """Every test starts (and ends) with testing mode off, whatever another test did."""
    with set_testing(False):
        yield


class TestWait:
    """wait(n) follows min(wait_max, wait_initial * wait_exp_base ** (n - 1) + wait_jitter * U)."""

    def test_exact_waits_without_jitter_draw(self) -> None:
        """With U = 0 the waits are the bare exponential sequence."""
        policy = RetryPolicy(attempts=6, wait_initial=0.5, wait_max=100.0, wait_exp_base=2.0, wait_jitter=0.5)
        assert [policy.wait(n, rand=zero) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]

    def test_exact_waits_with_full_jitter_draw(self) -> None:
        """With U = 1 each wait gains exactly wait_jitter seconds."""
        policy = RetryPolicy(attempts=6, wait_initial=0.5, wait_max=100.0, wait_exp_base=2.0, wait_jitter=0.5)
        assert [policy.wait(n, rand=one) for n in range(1, 6)] == [1.0, 1.5, 2.5, 4.5, 8.5]

    def test_other_base(self) -> None:
        """wait_exp_base sets the growth factor between waits."""
        policy = RetryPolicy(wait_initial=1.0, wait_exp_base=3.0, wait_jitter=0.0, wait_max=1000.0)
        assert [policy.wait(n) for n in range(1, 5)] == [1.0, 3.0, 9.0, 27.0]

    def test_base_one_is_constant(self) -> None:
        """wait_exp_base=1 gives a constant wait."""
        policy = RetryPolicy(wait_initial=2.0, wait_exp_base=1.0, wait_jitter=0.0)
        assert {policy.wait(n) for n in range(1, 20)} == {2.0}

    def test_capped_at_wait_max(self) -> None:
        """No wait, jitter included, exceeds wait_max."""
        policy = RetryPolicy(wait_initial=1.0, wait_max=5.0, wait_jitter=2.0)
        assert [policy.wait(n, rand=one) for n in range(1, 6)] == [3.0, 4.0, 5.0, 5.0, 5.0]

    def test_huge_attempt_numbers_do_not_overflow(self) -> None:
        """Past the float range the wait is simply wait_max."""
        policy = RetryPolicy(wait_initial=1.0, wait_max=30.0, wait_exp_base=10.0)
        assert policy.wait(10_000, rand=zero) == 30.0

    def test_zero_initial_with_huge_attempt(self) -> None:
        """wait_initial=0 stays 0 (plus jitter) instead of 0 * inf = nan."""
        policy = RetryPolicy(wait_initial=0.0, wait_exp_base=10.0, wait_jitter=0.25)
        assert policy.wait(10_000, rand=one) == 0.25

    def test_the_largest_cap_bounds_every_wait(self) -> None:
        """With wait_max at its bound (one day) even a 200th attempt waits a day, never an unsleepable time."""
        policy = RetryPolicy(attempts=200, wait_initial=1.0, wait_max=MAX_WAIT_SECONDS, wait_jitter=0.0)
        assert policy.wait(11) == 1024.0
        assert policy.wait(199) == MAX_WAIT_SECONDS

    def test_default_rand_stays_within_jitter(self) -> None:
        """The real random draw adds between 0 and wait_jitter seconds."""
        policy = RetryPolicy(wait_initial=1.0, wait_jitter=0.5)
        assert all(1.0 <= policy.wait(1) <= 1.5 for _ in range(200))

    def test_returns_float(self) -> None:
        """Integer settings still give a float wait."""
        assert isinstance(RetryPolicy(wait_initial=1, wait_max=10, wait_exp_base=2, wait_jitter=0).wait(2), float)

    @pytest.mark.parametrize("attempt", [0, -1, 1.5, True, "1"])
    def test_attempt_must_be_positive_int(self, attempt: Any) -> None:
        """Attempt numbers are 1-based whole numbers."""
        with pytest.raises(ConfigurationError) as info:
            RetryPolicy().wait(attempt)
        assert info.value.setting == "RetryPolicy.wait(attempt)"

    @given(
        attempts=st.integers(min_value=1, max_value=200),
        wait_initial=st.floats(min_value=0, max_value=MAX_WAIT_SECONDS),
        wait_max=st.floats(min_value=0, max_value=MAX_WAIT_SECONDS),
        wait_exp_base=st.floats(min_value=1, max_value=MAX_WAIT_EXP_BASE),
        wait_jitter=st.floats(min_value=0, max_value=1e3),
        draw=st.floats(min_value=0, max_value=1, exclude_max=True),
    )
    def test_bounds(
        self,
        attempts: int,
        wait_initial: float,
        wait_max: float,
        wait_exp_base: float,
        wait_jitter: float,
        draw: float,
    ) -> None:
        """Every wait is between 0 and wait_max."""
        policy = RetryPolicy(
            wait_initial=wait_initial, wait_max=wait_max, wait_exp_base=wait_exp_base, wait_jitter=wait_jitter
        )
        assert 0.0 <= policy.wait(attempts, rand=lambda: draw) <= wait_max

    @given(
        wait_initial=st.floats(min_value=0, max_value=MAX_WAIT_SECONDS),
        wait_max=st.floats(min_value=0, max_value=MAX_WAIT_SECONDS),
        wait_exp_base=st.floats(min_value=1, max_value=MAX_WAIT_EXP_BASE),
    )
    def test_non_decreasing_without_jitter(self, wait_initial: float, wait_max: float, wait_exp_base: float) -> None:
        """Without jitter, later waits are never shorter than earlier ones."""
        policy = RetryPolicy(wait_initial=wait_initial, wait_max=wait_max, wait_exp_base=wait_exp_base, wait_jitter=0.0)
        waits = [policy.wait(n) for n in range(1, 60)]
        assert waits == sorted(waits)


class TestValidation:
    """Invalid fields raise ConfigurationError naming the field and showing a corrected call."""

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("attempts", 0),
            ("attempts", -3),
            ("attempts", 2.0),
            ("attempts", True),
            ("wait_initial", -0.1),
            ("wait_initial", math.nan),
            ("wait_initial", "1"),
            ("wait_max", -1),
            ("wait_exp_base", 0.5),
            ("wait_exp_base", 0),
            ("wait_jitter", -1),
            ("wait_jitter", math.inf),
            ("wait_initial", math.inf),
            ("wait_initial", MAX_WAIT_SECONDS + 1),
            ("wait_max", math.inf),
            ("wait_max", math.nan),
            ("wait_max", 1e300),
            ("wait_exp_base", math.inf),
            ("wait_exp_base", math.nan),
            ("wait_exp_base", MAX_WAIT_EXP_BASE * 2),
            ("wait_jitter", math.nan),
            ("wait_jitter", MAX_WAIT_SECONDS * 2),
        ],
    )
    def test_bad_numbers(self, field: str, value: Any) -> None:
        """Each numeric field rejects out-of-range and wrongly typed values."""
        with pytest.raises(ConfigurationError) as info:
            RetryPolicy(**{field: value})
        assert info.value.setting == f"RetryPolicy.{field}"
        assert info.value.value is value
        assert f"RetryPolicy({field}=" in info.value.expected
        assert isinstance(info.value, ValueError)

    @pytest.mark.parametrize("field", ["wait_initial", "wait_max", "wait_jitter"])
    def test_a_wait_of_one_day_is_the_largest_accepted(self, field: str) -> None:
        """The bound itself is accepted, so a policy at the limit still builds and sleeps a finite time."""
        assert getattr(RetryPolicy(**{field: MAX_WAIT_SECONDS}), field) == MAX_WAIT_SECONDS

    def test_the_message_names_the_bounds(self) -> None:
        """An infinite wait is refused with the accepted range, not an OverflowError at the first retry."""
        with pytest.raises(ConfigurationError, match=r"RetryPolicy\.wait_initial=inf .*from 0 to 86400"):
            RetryPolicy(wait_initial=math.inf)

    @pytest.mark.parametrize("retry_on", [42, "ValueError", int, (ValueError, "x"), (int,), None])
    def test_bad_retry_on(self, retry_on: Any) -> None:
        """retry_on must be an exception type, a tuple of them, or a predicate."""
        with pytest.raises(ConfigurationError) as info:
            RetryPolicy(retry_on=retry_on)
        assert info.value.setting == "RetryPolicy.retry_on"
        assert "retry_on=(ConnectionError, TimeoutError)" in info.value.expected

    def test_message_teaches(self) -> None:
        """The message shows what was given and the accepted form."""
        with pytest.raises(ConfigurationError, match=r"RetryPolicy\.attempts=0 is invalid: expected .*attempts=4"):
            RetryPolicy(attempts=0)

    def test_policy_is_frozen(self) -> None:
        """A policy cannot be changed in place."""
        policy = RetryPolicy()
        with pytest.raises(AttributeError):
            policy.attempts = 9  # type: ignore[misc]

    def test_policies_compare_and_hash_by_value(self) -> None:
        """Two equal policies are equal and hash alike."""
        assert RetryPolicy(attempts=2) == RetryPolicy(attempts=2)
        assert len({RetryPolicy(attempts=2), RetryPolicy(attempts=2)}) == 1


class TestRetryOn:
    """retry_on accepts an exception type, a tuple of types, or a predicate."""

    def test_type(self) -> None:
        """A type matches itself and its subclasses only."""
        policy = RetryPolicy(retry_on=OSError)
        assert policy.is_retryable(ConnectionError())
        assert not policy.is_retryable(RuntimeError())

    def test_tuple(self) -> None:
        """A tuple matches any of its types."""
        policy = RetryPolicy(retry_on=(KeyError, TimeoutError))
        assert policy.is_retryable(KeyError("k"))
        assert policy.is_retryable(AttemptTimeoutError("t", 1.0))
        assert not policy.is_retryable(ValueError())

    def test_empty_tuple_retries_nothing(self) -> None:
        """An empty tuple is a valid 'never retry'."""
        assert not RetryPolicy(retry_on=()).is_retryable(ConnectionError())

    def test_predicate(self) -> None:
        """A predicate decides; its result is turned into a bool."""
        policy = RetryPolicy(retry_on=lambda exc: "busy" in str(exc) and 1)  # type: ignore[arg-type,return-value]
        assert policy.is_retryable(RuntimeError("server busy")) is True
        assert policy.is_retryable(RuntimeError("gone")) is False

    def test_callable_object_predicate(self) -> None:
        """Any callable object (not a class) works as a predicate."""

        class OnlyTimeouts:
            def __call__(self, exc: BaseException) -> bool:
                return isinstance(exc, TimeoutError)

        policy = RetryPolicy(retry_on=OnlyTimeouts())
        assert policy.is_retryable(TimeoutError())
        assert not policy.is_retryable(OSError())

    def test_default_is_default_retry_on(self) -> None:
        """The default policy classifies with default_retry_on."""
        policy = RetryPolicy()
        assert policy.retry_on is default_retry_on
        assert policy.is_retryable(ConnectionError())
        assert not policy.is_retryable(PermanentFault("op", 1))


class TestDefaultRetryOn:
    """Transient errors are retried; permanent ones (bad input, 4xx) are not."""

    @pytest.mark.parametrize(
        "exc",
        [
            ConnectionError("reset"),
            ConnectionResetError(),
            TimeoutError(),
            AttemptTimeoutError("fetch", 1.0),
            OSError("disk hiccup"),
            RuntimeError("boom"),
            TransientFault("fetch", 1),
            Exception("generic"),
        ],
        ids=lambda exc: type(exc).__name__,
    )
    def test_retryable(self, exc: BaseException) -> None:
        """Connection, timeout, OS and runtime errors are worth another try."""
        assert default_retry_on(exc) is True

    @pytest.mark.parametrize(
        "exc",
        [
            ValueError("bad"),
            TypeError("bad"),
            KeyError("k"),
            IndexError(0),
            AttributeError("a"),
            NotImplementedError(),
            AssertionError(),
            PermissionError(),
            PermanentFault("charge", 1),
            ConfigurationError("X", 1, "y"),
            CircuitOpenError("svc", 3.0),
            UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad byte"),
        ],
        ids=lambda exc: type(exc).__name__,
    )
    def test_permanent(self, exc: BaseException) -> None:
        """Errors a retry cannot fix are not retried."""
        assert default_retry_on(exc) is False

    @pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
    def test_base_exceptions_are_never_retried(self, exc: BaseException) -> None:
        """Interrupts, exits and cancellation end the loop at once."""
        assert default_retry_on(exc) is False

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 499])
    def test_client_errors_are_permanent(self, status: int) -> None:
        """A 4xx response (duck-typed .response.status_code) is not retried."""
        assert default_retry_on(FakeHTTPError(status)) is False

    @pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 399, 200])
    def test_retryable_statuses(self, status: int) -> None:
        """408, 425, 429 and anything outside 4xx are retried."""
        assert default_retry_on(FakeHTTPError(status)) is True

    def test_retryable_client_status_constant(self) -> None:
        """The three retryable 4xx codes are exported."""
        assert frozenset({408, 425, 429}) == RETRYABLE_CLIENT_STATUS

    @pytest.mark.parametrize("status", [None, "404", 404.0, True])
    def test_odd_status_codes_are_ignored(self, status: Any) -> None:
        """Only an int status code counts; anything else falls back to the type rules."""
        assert default_retry_on(FakeHTTPError(status)) is True

    def test_response_none(self) -> None:
        """requests.HTTPError can carry response=None: retried like any OSError."""

        class HTTPError(OSError):
            response = None

        assert default_retry_on(HTTPError()) is True

    def test_broken_response_property(self) -> None:
        """A response object whose attribute raises does not break classification."""

        class Exploding:
            @property
            def status_code(self) -> int:
                raise RuntimeError("no status")

        class Err(Exception):
            response = Exploding()

        assert default_retry_on(Err()) is True

    def test_4xx_beats_a_retryable_type(self) -> None:
        """A ConnectionError that carries a 404 response is still permanent."""

        class Weird(ConnectionError):
            response = FakeResponse(404)

        assert default_retry_on(Weird()) is False

    def test_non_retryable_tuple(self) -> None:
        """NON_RETRYABLE lists the permanent types, including PermanentFault."""
        assert PermanentFault in NON_RETRYABLE
        assert ValueError in NON_RETRYABLE
        assert TimeoutError not in NON_RETRYABLE


class TestBuilding:
    """from_settings and with_options build new validated policies."""

    def test_from_explicit_settings(self) -> None:
        """attempts = retries + 1 and the waits come from settings."""
        settings = ForewarnSettings(retries=2, wait_initial=1.5, wait_max=9.0, wait_exp_base=3.0, wait_jitter=0.1)
        assert RetryPolicy.from_settings(settings) == RetryPolicy(
            attempts=3, wait_initial=1.5, wait_max=9.0, wait_exp_base=3.0, wait_jitter=0.1
        )

    def test_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an argument the process settings (FOREWARN_*) are used."""
        from forewarn.settings import get_settings

        monkeypatch.setenv("FOREWARN_RETRIES", "0")
        monkeypatch.setenv("FOREWARN_WAIT_MAX", "7")
        get_settings.cache_clear()
        policy = RetryPolicy.from_settings()
        assert (policy.attempts, policy.wait_max) == (1, 7.0)

    def test_defaults_match_settings_defaults(self) -> None:
        """The dataclass defaults and the settings defaults describe the same policy."""
        assert RetryPolicy.from_settings(ForewarnSettings()) == RetryPolicy()

    def test_overrides(self) -> None:
        """Keyword overrides win over settings, and are validated."""
        predicate = TimeoutError
        policy = RetryPolicy.from_settings(ForewarnSettings(retries=5), attempts=2, retry_on=predicate)
        assert (policy.attempts, policy.retry_on) == (2, TimeoutError)
        with pytest.raises(ConfigurationError, match=r"RetryPolicy\.wait_max"):
            RetryPolicy.from_settings(ForewarnSettings(), wait_max=-1)

    def test_unknown_override(self) -> None:
        """A misspelt override names itself and lists the fields."""
        with pytest.raises(ConfigurationError) as info:
            RetryPolicy.from_settings(ForewarnSettings(), retries=3)
        assert info.value.setting == "RetryPolicy.from_settings(retries=...)"
        assert "attempts" in info.value.expected

    def test_with_options_returns_new_policy(self) -> None:
        """with_options leaves the original unchanged."""
        base = RetryPolicy()
        changed = base.with_options(attempts=7, wait_jitter=0.0)
        assert (changed.attempts, changed.wait_jitter) == (7, 0.0)
        assert base == RetryPolicy()

    def test_with_options_validates(self) -> None:
        """with_options rejects invalid values and unknown names."""
        with pytest.raises(ConfigurationError, match=r"RetryPolicy\.attempts"):
            RetryPolicy().with_options(attempts=0)
        with pytest.raises(ConfigurationError, match=r"with_options\(tries=...\)"):
            RetryPolicy().with_options(tries=3)


class TestTestingSwitch:
    """set_testing turns waits off, process-wide, and restores the previous mode as a context manager."""

    def test_off_by_default(self) -> None:
        """Testing mode is off unless turned on."""
        assert is_testing() is False

    def test_on_makes_waits_zero(self) -> None:
        """While on, every wait is 0.0."""
        policy = RetryPolicy(wait_initial=3.0, wait_jitter=1.0)
        with set_testing():
            assert is_testing() is True
            assert [policy.wait(n, rand=one) for n in range(1, 5)] == [0.0] * 4
        assert policy.wait(1, rand=one) == 4.0

    def test_plain_call_stays_on(self) -> None:
        """Called without `with`, the mode stays until changed again."""
        set_testing(True)
        assert is_testing()
        set_testing(False)
        assert not is_testing()

    def test_context_manager_restores_previous(self) -> None:
        """Nested uses restore exactly the value that was there before."""
        with set_testing(True):
            with set_testing(False):
                assert not is_testing()
            assert is_testing()
        assert not is_testing()

    def test_restores_on_exception(self) -> None:
        """The previous mode comes back even if the block raises."""
        with pytest.raises(RuntimeError), set_testing(True):
            raise RuntimeError("boom")
        assert not is_testing()

    def test_visible_from_other_threads(self) -> None:
        """The switch is process-wide, not per thread."""
        seen: list[bool] = []
        with set_testing(True):
            thread = threading.Thread(target=lambda: seen.append(is_testing()))
            thread.start()
            thread.join()
        assert seen == [True]

    def test_truthy_values_are_coerced(self) -> None:
        """is_testing always returns a bool."""
        with set_testing(1):  # type: ignore[arg-type]
            assert is_testing() is True
