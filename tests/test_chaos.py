"""Seeded fault injection: reproducible per operation, rates respected, time injected."""

from __future__ import annotations

import asyncio
import pickle
import threading
from typing import Any

import pytest

from forewarn.errors import ConfigurationError, ForewarnError
from forewarn.resilience.chaos import FaultInjector, FaultProfile, PermanentFault, TransientFault, inject_faults
from forewarn.resilience.retry import default_retry_on


def outcome(injector: FaultInjector, operation: str) -> str:
    """'ok', 'transient' or 'permanent' for one call."""
    try:
        injector.maybe_fail(operation)
    except TransientFault:
        return "transient"
    except PermanentFault:
        return "permanent"
    return "ok"


def sequence(injector: FaultInjector, operation: str, n: int) -> list[str]:
    return [outcome(injector, operation) for _ in range(n)]


MIXED = FaultProfile(transient_rate=0.3, permanent_rate=0.2)


class TestFaults:
    """The injected faults look like real service errors."""

    def test_transient_is_a_connection_error(self) -> None:
        """TransientFault is a ConnectionError, retried by default."""
        exc = TransientFault("fetch", 2)
        assert isinstance(exc, ConnectionError)
        assert not isinstance(exc, ForewarnError)
        assert default_retry_on(exc) is True
        assert (exc.operation, exc.call, str(exc)) == (
            "fetch",
            2,
            "injected transient fault in 'fetch' (call 2)",
        )

    def test_permanent_is_a_value_error(self) -> None:
        """PermanentFault is a ValueError, never retried by default."""
        exc = PermanentFault("charge", 5)
        assert isinstance(exc, ValueError)
        assert not isinstance(exc, ForewarnError)
        assert default_retry_on(exc) is False
        assert str(exc) == "injected permanent fault in 'charge' (call 5)"

    @pytest.mark.parametrize("cls", [TransientFault, PermanentFault])
    def test_pickle_round_trip(self, cls: type[TransientFault] | type[PermanentFault]) -> None:
        """Faults survive pickling (Prefect may persist a failed state's exception)."""
        copy = pickle.loads(pickle.dumps(cls("op", 3)))
        assert type(copy) is cls
        assert (copy.operation, copy.call, str(copy)) == ("op", 3, str(cls("op", 3)))


class TestProfileValidation:
    """FaultProfile rejects impossible rates and durations, naming the field."""

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("transient_rate", -0.1),
            ("transient_rate", 1.01),
            ("permanent_rate", 2),
            ("latency_rate", float("nan")),
            ("hang_rate", "0.5"),
            ("hang_rate", True),
            ("latency_seconds", -1.0),
            ("hang_seconds", float("inf")),
        ],
    )
    def test_bad_field(self, field: str, value: Any) -> None:
        """Each field is checked on its own."""
        with pytest.raises(ConfigurationError) as info:
            FaultProfile(**{field: value})
        assert info.value.setting == f"FaultProfile.{field}"
        assert f"FaultProfile({field}=" in info.value.expected

    def test_fault_rates_sum_to_at_most_one(self) -> None:
        """transient_rate + permanent_rate > 1 is impossible."""
        with pytest.raises(ConfigurationError) as info:
            FaultProfile(transient_rate=0.7, permanent_rate=0.4)
        assert info.value.setting == "FaultProfile.permanent_rate"
        assert "at most 1 - transient_rate = 0.3" in info.value.expected

    def test_edges_are_allowed(self) -> None:
        """0 and 1 are valid rates, and the two fault rates may add to exactly 1."""
        FaultProfile(transient_rate=0.5, permanent_rate=0.5, latency_rate=1.0, hang_rate=0.0, hang_seconds=0)

    def test_default_profile_never_fails(self) -> None:
        """The default profile injects nothing."""
        slept: list[float] = []
        injector = FaultInjector(seed=1, sleep=slept.append)
        assert sequence(injector, "op", 200) == ["ok"] * 200
        assert slept == []


class TestInjectorConstruction:
    """FaultInjector builds its profile from profile + keyword fields, and checks its arguments."""

    def test_fields_apply_on_top_of_profile(self) -> None:
        """Keyword fields override the given profile's fields."""
        injector = FaultInjector(seed=1, profile=FaultProfile(transient_rate=0.5, latency_seconds=2.0), latency_rate=1)
        assert injector.profile == FaultProfile(transient_rate=0.5, latency_rate=1, latency_seconds=2.0)

    def test_fields_are_validated(self) -> None:
        """Keyword fields go through FaultProfile's validation."""
        with pytest.raises(ConfigurationError, match=r"FaultProfile\.transient_rate"):
            FaultInjector(seed=1, transient_rate=3)

    def test_unknown_field(self) -> None:
        """A misspelt field names itself and lists the real ones."""
        with pytest.raises(ConfigurationError) as info:
            FaultInjector(seed=1, transient=0.1)
        assert info.value.setting == "FaultInjector(transient=...)"
        assert "transient_rate" in info.value.expected

    @pytest.mark.parametrize(
        ("kwargs", "setting"),
        [
            ({"seed": 1.5}, "FaultInjector.seed"),
            ({"seed": True}, "FaultInjector.seed"),
            ({"profile": {"transient_rate": 0.1}}, "FaultInjector.profile"),
            ({"overrides": {"op": 0.5}}, "FaultInjector.overrides['op']"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, Any], setting: str) -> None:
        """Wrongly typed seed, profile or override is named."""
        with pytest.raises(ConfigurationError) as info:
            FaultInjector(**kwargs)
        assert info.value.setting == setting

    def test_random_seed_is_kept(self) -> None:
        """Without a seed one is chosen and kept, so the run can be replayed."""
        first = FaultInjector(profile=MIXED)
        replay = FaultInjector(seed=first.seed, profile=MIXED)
        assert isinstance(first.seed, int)
        assert sequence(first, "op", 50) == sequence(replay, "op", 50)

    def test_overrides_per_operation(self) -> None:
        """profile_for returns the override for its operation and the default otherwise."""
        special = FaultProfile(permanent_rate=1.0)
        injector = FaultInjector(seed=0, overrides={"charge": special})
        assert injector.profile_for("charge") is special
        assert injector.profile_for("fetch") == FaultProfile()
        assert outcome(injector, "charge") == "permanent"
        assert outcome(injector, "fetch") == "ok"

    def test_repr_shows_seed(self) -> None:
        """repr shows the seed needed to replay."""
        assert repr(FaultInjector(seed="ci-42")).startswith("FaultInjector(seed='ci-42', profile=FaultProfile(")


class TestDeterminism:
    """The n-th call of an operation has the same fate for the same seed, whatever else happens."""

    def test_same_seed_same_sequence(self) -> None:
        """Two injectors with one seed produce identical sequences."""
        assert sequence(FaultInjector(seed=42, profile=MIXED), "op", 300) == sequence(
            FaultInjector(seed=42, profile=MIXED), "op", 300
        )

    def test_sequence_is_stable_across_versions(self) -> None:
        """The exact sequence for a seed is pinned, so a changed draw order is noticed."""
        assert sequence(FaultInjector(seed=42, profile=MIXED), "op", 12) == [
            "ok", "ok", "permanent", "permanent", "transient", "ok",
            "transient", "ok", "ok", "permanent", "ok", "transient",
        ]  # fmt: skip

    def test_different_seeds_differ(self) -> None:
        """Another seed gives another sequence."""
        assert sequence(FaultInjector(seed=1, profile=MIXED), "op", 100) != sequence(
            FaultInjector(seed=2, profile=MIXED), "op", 100
        )

    def test_int_and_str_seeds_are_distinct(self) -> None:
        """seed=7 and seed='7' are different seeds."""
        assert sequence(FaultInjector(seed=7, profile=MIXED), "op", 100) != sequence(
            FaultInjector(seed="7", profile=MIXED), "op", 100
        )

    def test_operations_have_independent_sequences(self) -> None:
        """Two operations under one seed draw different sequences."""
        injector = FaultInjector(seed=3, profile=MIXED)
        assert sequence(injector, "a", 100) != sequence(injector, "b", 100)

    def test_interleaving_does_not_matter(self) -> None:
        """Calling other operations in between leaves an operation's sequence unchanged."""
        alone = sequence(FaultInjector(seed=9, profile=MIXED), "fetch", 100)
        mixed = FaultInjector(seed=9, profile=MIXED)
        interleaved = []
        for i in range(100):
            for _ in range(i % 3):
                outcome(mixed, "other")
            interleaved.append(outcome(mixed, "fetch"))
        assert interleaved == alone

    def test_threads_do_not_matter(self) -> None:
        """Operations hammered from several threads at once get their sequential sequences."""
        operations = ["a", "b", "c", "d"]
        expected = {op: sequence(FaultInjector(seed=11, profile=MIXED), op, 200) for op in operations}
        shared = FaultInjector(seed=11, profile=MIXED)
        got: dict[str, list[str]] = {}
        start = threading.Barrier(len(operations))

        def run(op: str) -> None:
            start.wait()
            got[op] = sequence(shared, op, 200)

        threads = [threading.Thread(target=run, args=(op,)) for op in operations]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert got == expected

    def test_calls_are_counted_per_operation(self) -> None:
        """calls(op) counts maybe_fail calls, faulted or not."""
        injector = FaultInjector(seed=5, profile=MIXED)
        sequence(injector, "a", 7)
        sequence(injector, "b", 3)
        assert (injector.calls("a"), injector.calls("b"), injector.calls("c")) == (7, 3, 0)

    def test_message_names_call_number(self) -> None:
        """A fault's message names the operation and its 1-based call number."""
        injector = FaultInjector(seed=0, transient_rate=1.0)
        outcome(injector, "fetch")
        with pytest.raises(TransientFault, match=r"injected transient fault in 'fetch' \(call 2\)"):
            injector.maybe_fail("fetch")


class TestRates:
    """Over 10,000 seeded draws the observed rates sit close to the configured ones."""

    def test_fault_rates(self) -> None:
        """10% transient and 5% permanent land within a tight band."""
        injector = FaultInjector(seed=2024, transient_rate=0.10, permanent_rate=0.05)
        draws = sequence(injector, "op", 10_000)
        assert 900 <= draws.count("transient") <= 1100
        assert 400 <= draws.count("permanent") <= 600

    def test_latency_and_hang_rates(self) -> None:
        """Latency and hang are drawn with their own rates and sleep their own durations."""
        slept: list[float] = []
        injector = FaultInjector(
            seed=2024,
            latency_rate=0.2,
            latency_seconds=0.5,
            hang_rate=0.01,
            hang_seconds=30.0,
            sleep=slept.append,
        )
        sequence(injector, "op", 10_000)
        assert 1800 <= slept.count(0.5) <= 2200
        assert 60 <= slept.count(30.0) <= 140
        assert set(slept) == {0.5, 30.0}

    def test_rate_one_and_zero(self) -> None:
        """Rate 1 always fires, rate 0 never does."""
        assert set(sequence(FaultInjector(seed=1, transient_rate=1.0), "op", 100)) == {"transient"}
        assert set(sequence(FaultInjector(seed=1, permanent_rate=1.0), "op", 100)) == {"permanent"}


class TestLatency:
    """Latency and hangs go through the injected sleep, before any fault is raised."""

    def test_latency_seconds(self) -> None:
        """Each drawn latency sleeps exactly latency_seconds."""
        slept: list[float] = []
        injector = FaultInjector(seed=1, latency_rate=1.0, latency_seconds=0.25, sleep=slept.append)
        sequence(injector, "op", 3)
        assert slept == [0.25, 0.25, 0.25]

    def test_latency_then_hang_then_fault(self) -> None:
        """One call can be slow, hang and then fail, in that order."""
        events: list[Any] = []
        injector = FaultInjector(
            seed=1,
            latency_rate=1.0,
            latency_seconds=0.5,
            hang_rate=1.0,
            hang_seconds=60.0,
            transient_rate=1.0,
            sleep=events.append,
        )
        with pytest.raises(TransientFault):
            injector.maybe_fail("op")
        assert events == [0.5, 60.0]

    def test_zero_seconds_does_not_sleep(self) -> None:
        """A drawn latency of 0 seconds does not call sleep at all."""
        slept: list[float] = []
        injector = FaultInjector(seed=1, latency_rate=1.0, latency_seconds=0.0, sleep=slept.append)
        injector.maybe_fail("op")
        assert slept == []


class TestAsync:
    """amaybe_fail behaves like maybe_fail but waits with the injected async sleep."""

    def test_same_decisions_as_sync(self) -> None:
        """The async variant draws the same sequence for the same seed."""

        async def run() -> list[str]:
            injector = FaultInjector(seed=42, profile=MIXED)
            results = []
            for _ in range(100):
                try:
                    await injector.amaybe_fail("op")
                    results.append("ok")
                except TransientFault:
                    results.append("transient")
                except PermanentFault:
                    results.append("permanent")
            return results

        assert asyncio.run(run()) == sequence(FaultInjector(seed=42, profile=MIXED), "op", 100)

    def test_async_sleep_is_used(self) -> None:
        """Latency is awaited through asleep; the sync sleep is untouched."""
        awaited: list[float] = []
        slept: list[float] = []

        async def fake_asleep(seconds: float) -> None:
            awaited.append(seconds)

        injector = FaultInjector(
            seed=1,
            latency_rate=1.0,
            latency_seconds=1.5,
            hang_rate=1.0,
            hang_seconds=9.0,
            sleep=slept.append,
            asleep=fake_asleep,
        )
        asyncio.run(injector.amaybe_fail("op"))
        assert (awaited, slept) == ([1.5, 9.0], [])

    def test_default_asleep_is_asyncio_sleep(self) -> None:
        """Without asleep, a tiny real asyncio.sleep runs."""
        injector = FaultInjector(seed=1, latency_rate=1.0, latency_seconds=0.001)
        asyncio.run(injector.amaybe_fail("op"))
        assert injector.calls("op") == 1


class TestDecorator:
    """inject_faults wraps sync and async functions."""

    def test_sync_default_operation_is_qualname(self) -> None:
        """The operation defaults to the function's __qualname__; the result passes through."""
        injector = FaultInjector(seed=1)

        @inject_faults(injector)
        def fetch(x: int, *, y: int = 1) -> int:
            """Fetch docstring."""
            return x + y

        assert fetch(1, y=2) == 3
        assert fetch.__name__ == "fetch"
        assert fetch.__doc__ == "Fetch docstring."
        assert injector.calls(fetch.__qualname__) == 1
        assert "TestDecorator" in fetch.__qualname__

    def test_sync_fault_skips_the_body(self) -> None:
        """When a fault is drawn, the wrapped function does not run."""
        ran: list[int] = []
        injector = FaultInjector(seed=1, permanent_rate=1.0)

        @inject_faults(injector, "charge")
        def charge() -> None:
            ran.append(1)

        with pytest.raises(PermanentFault, match="'charge' \\(call 1\\)"):
            charge()
        assert ran == []

    def test_async_function(self) -> None:
        """Coroutine functions stay coroutine functions and use amaybe_fail."""
        awaited: list[float] = []

        async def fake_asleep(seconds: float) -> None:
            awaited.append(seconds)

        injector = FaultInjector(seed=1, latency_rate=1.0, latency_seconds=2.0, asleep=fake_asleep)

        @inject_faults(injector, operation="load")
        async def load(value: str) -> str:
            return value.upper()

        assert asyncio.iscoroutinefunction(load)
        assert asyncio.run(load("x")) == "X"
        assert (awaited, injector.calls("load")) == ([2.0], 1)

    def test_async_fault(self) -> None:
        """A drawn fault is raised from the awaited wrapper."""
        injector = FaultInjector(seed=1, transient_rate=1.0)

        @inject_faults(injector)
        async def load() -> None:
            raise AssertionError("body must not run")

        with pytest.raises(TransientFault):
            asyncio.run(load())

    def test_needs_an_injector(self) -> None:
        """Passing something else than a FaultInjector is a configuration error."""
        with pytest.raises(ConfigurationError, match=r"inject_faults\(injector\)"):
            inject_faults(FaultProfile())  # type: ignore[arg-type]
