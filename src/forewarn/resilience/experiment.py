"""The ER experiment: what each level of protection buys the example order, under seeded faults.

The example order (``flows/order_flow.py``) makes five calls in turn: validate, reserve inventory, charge
payment (primary gateway; a secondary one exists), book shipping, notify. Each configuration runs it
``runs`` times, under one :class:`Scenario` of faults and one protection level:

==================== =====================================================================================
level                what the five steps get
==================== =====================================================================================
``none``             one attempt each
``retries``          4 attempts, exponential backoff 0.5 s, 1 s, 2 s (transient errors only)
``+fallback``        and: the charge falls back to the secondary gateway, the notice to a queue
``+breaker``         and: a circuit breaker on the primary gateway (5 failures, 30 s)
``+hedging/failover`` and: the charge fails over to the secondary gateway *with its own retries and
                     breaker*; the idempotent steps (validate, reserve, ship, notify, keyed by order id)
                     start a hedged copy after 0.5 s, or at once when a copy fails
==================== =====================================================================================

Every call takes 0.1 s, and 10 % of calls are slow (2 s more) whatever the scenario. Faults come from a
:class:`~forewarn.resilience.chaos.FaultInjector` seeded per run, so a configuration's figures are
reproducible from its seed. The protection logic is forewarn's own :class:`AttemptRunner`, run without a
Prefect server and on a virtual clock (:class:`~forewarn.resilience.hedging.VirtualExecutor`): backoff
waits and slow calls take no real time, which is what makes thousands of runs per configuration cheap.
The flow ``flows/er_experiment.py`` cross-checks one configuration against real Prefect runs.

Metrics per configuration (the README's definitions): success rate with a 95 % Wilson interval; ER = runs
with a failed or timed-out attempt that still completed / runs with one; attempts per run (every call
made: retries, hedged copies, fallbacks); p50 / p95 of a run's (virtual) duration.

Example::

    >>> result = run_configuration(Scenario("transient 20%", transient_rate=0.2), "retries", runs=200, seed=1)
    >>> result.runs, result.completed <= result.runs, 0.0 <= result.er <= 1.0
    (200, True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from forewarn.errors import ConfigurationError
from forewarn.records import FAILED_ATTEMPT_OUTCOMES, AttemptRecord
from forewarn.resilience.attempts import AttemptRunner
from forewarn.resilience.breaker import CircuitBreaker
from forewarn.resilience.chaos import FaultInjector, FaultProfile
from forewarn.resilience.failover import Provider
from forewarn.resilience.hedging import HedgingPolicy, VirtualExecutor
from forewarn.resilience.retry import RetryPolicy

LEVELS: tuple[str, ...] = ("none", "retries", "+fallback", "+breaker", "+hedging/failover")
"""Protection levels, each adding to the one before."""

CALL_SECONDS = 0.1
SLOW_RATE, SLOW_SECONDS = 0.1, 2.0
RUN_GAP_SECONDS = 1.0
"""Virtual time between one run's end and the next run's start (orders arrive about once a second)."""

_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
_PRIMARY = "payments.primary.charge"
_NO_RETRY = RetryPolicy(attempts=1, wait_jitter=0.0)
_RETRY = RetryPolicy(attempts=4, wait_initial=0.5, wait_max=5.0, wait_jitter=0.0)
_HEDGE = HedgingPolicy(hedge_after=0.5, max_hedged=1)


@dataclass(frozen=True, slots=True)
class Scenario:
    """The faults of one configuration: per-call rates on every step, and an optional payment outage.

    ``payment_outage``: the primary gateway refuses every call during the middle half of the runs.

    Example::

        >>> [s.name for s in SCENARIOS]
        ['transient 0%', 'transient 5%', 'transient 20%', 'transient 50%', 'payment outage', 'permanent 2%']
    """

    name: str
    transient_rate: float = 0.0
    permanent_rate: float = 0.0
    payment_outage: bool = False

    def faults(self, seed: str, run: int, runs: int, sleep: Callable[[float], object]) -> FaultInjector:
        """The seeded fault injector of run number ``run`` (0-based) of ``runs``."""
        overrides = {}
        if self.payment_outage and runs // 4 <= run < 3 * runs // 4:
            overrides[_PRIMARY] = FaultProfile(transient_rate=1.0, latency_rate=SLOW_RATE, latency_seconds=SLOW_SECONDS)
        return FaultInjector(
            f"{seed}/{run}",
            transient_rate=self.transient_rate,
            permanent_rate=self.permanent_rate,
            latency_rate=SLOW_RATE,
            latency_seconds=SLOW_SECONDS,
            sleep=sleep,
            overrides=overrides,
        )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("transient 0%"),
    Scenario("transient 5%", transient_rate=0.05),
    Scenario("transient 20%", transient_rate=0.2),
    Scenario("transient 50%", transient_rate=0.5),
    Scenario("payment outage", transient_rate=0.05, payment_outage=True),
    Scenario("permanent 2%", transient_rate=0.05, permanent_rate=0.02),
)
"""The fault scenarios of the experiment."""


@dataclass(frozen=True, slots=True)
class Result:
    """The figures of one configuration (scenario x level).

    Example::

        >>> r = Result("s", "none", runs=4, completed=3, faulted=2, escaped=1, attempts=10,
        ...            durations=(1.0, 2.0, 3.0, 4.0))
        >>> r.success_rate, r.er, r.attempts_per_run, r.p50
        (0.75, 0.5, 2.5, 2.5)
    """

    scenario: str
    level: str
    runs: int
    completed: int
    faulted: int
    escaped: int
    attempts: int
    durations: tuple[float, ...] = field(repr=False)

    @property
    def success_rate(self) -> float:
        return self.completed / self.runs

    @property
    def success_interval(self) -> tuple[float, float]:
        """The 95 % Wilson score interval of the success rate."""
        return wilson_interval(self.completed, self.runs)

    @property
    def er(self) -> float:
        """Runs with a fault that still completed / runs with a fault (NaN with no faulted run)."""
        return self.escaped / self.faulted if self.faulted else math.nan

    @property
    def attempts_per_run(self) -> float:
        return self.attempts / self.runs

    @property
    def p50(self) -> float:
        return percentile(self.durations, 50)

    @property
    def p95(self) -> float:
        return percentile(self.durations, 95)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval for a proportion (95 % by default); honest near 0 and 1, unlike p ± z·se.

    Example::

        >>> low, high = wilson_interval(3000, 3000)        # 3,000 runs, none failed
        >>> round(low, 5), round(high, 5)
        (0.99872, 1.0)
    """
    if n <= 0:
        raise ConfigurationError("n", n, "a number of runs >= 1")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation (numpy's default), without numpy.

    Example::

        >>> percentile([1.0, 2.0, 3.0, 4.0], 95)
        3.85
    """
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class _Order:
    """The five steps of the example order, wired for one protection level, on one virtual clock."""

    def __init__(self, level: str, vx: VirtualExecutor, sink: Callable[[AttemptRecord], object]) -> None:
        if level not in LEVELS:
            raise ConfigurationError("level", level, f"one of {', '.join(LEVELS)}")
        self.vx = vx
        self.faults: FaultInjector | None = None
        rank = LEVELS.index(level)
        policy = _RETRY if rank >= 1 else _NO_RETRY
        hedging = _HEDGE if rank >= 4 else None
        clock = self._clock
        primary_breaker = CircuitBreaker("primary", failure_threshold=5, reset_timeout=30.0, clock=vx.now)

        def runner(name: str, **options: Any) -> AttemptRunner:
            return AttemptRunner(name, policy, sink=sink, sleep=vx.sleep, clock=clock, executor=vx, **options)

        self.validate = runner("validate_order", hedging=hedging)
        self.reserve = runner("reserve_inventory", hedging=hedging)
        self.ship = runner("arrange_shipping", hedging=hedging)
        queue = (lambda exc: "queued") if rank >= 2 else None
        self.notify = runner("notify_customer", hedging=hedging, fallback=queue)
        if rank >= 4:
            secondary_breaker = CircuitBreaker("secondary", failure_threshold=5, reset_timeout=30.0, clock=vx.now)
            self.charge = runner(
                "charge_payment",
                providers=(
                    Provider("primary", call=self._primary, breaker=primary_breaker),
                    Provider("secondary", call=self._secondary, breaker=secondary_breaker),
                ),
            )
        else:
            self.charge = runner(
                "charge_payment",
                fallback=(lambda exc: self._secondary()) if rank >= 2 else None,
                breaker=primary_breaker if rank >= 3 else None,
            )

    def _clock(self) -> datetime:
        return _EPOCH + timedelta(seconds=self.vx.now())

    def _call(self, operation: str) -> str:
        assert self.faults is not None
        self.vx.sleep(CALL_SECONDS)
        self.faults.maybe_fail(operation)
        return operation

    def _primary(self) -> str:
        return self._call(_PRIMARY)

    def _secondary(self) -> str:
        return self._call("payments.secondary.charge")

    def run(self, run_id: str, faults: FaultInjector) -> bool:
        """One order end to end; True when every step produced a result."""
        self.faults = faults
        steps: list[tuple[AttemptRunner, Callable[[], str]]] = [
            (self.validate, lambda: self._call("orders.validate")),
            (self.reserve, lambda: self._call("inventory.reserve")),
            (self.charge, self._primary),
            (self.ship, lambda: self._call("shipping.book")),
            (self.notify, lambda: self._call("notifications.send")),
        ]
        try:
            for n, (runner, call) in enumerate(steps):
                runner.run(call, (), {}, task_run_id=f"{run_id}/{n}", flow_run_id=run_id)
        except Exception:  # the run fails, as the flow would
            return False
        return True


def run_configuration(scenario: Scenario, level: str, *, runs: int, seed: int | str = 0) -> Result:
    """Run the order ``runs`` times under ``scenario`` with protection ``level``; the figures.

    Runs follow each other on one virtual clock (``RUN_GAP_SECONDS`` apart), so a breaker opened by one
    run is still open for the next, as in a long-lived worker.
    """
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ConfigurationError("runs", runs, "a whole number of runs >= 1, e.g. runs=3000")
    vx = VirtualExecutor()
    rows: list[AttemptRecord] = []
    order = _Order(level, vx, rows.append)
    completed = faulted = escaped = attempts = 0
    durations: list[float] = []
    for i in range(runs):
        rows.clear()
        start = vx.now()
        ok = order.run(f"run-{i}", scenario.faults(f"{seed}/{scenario.name}", i, runs, vx.sleep))
        durations.append(vx.now() - start)
        fault = any(r.outcome.value in FAILED_ATTEMPT_OUTCOMES for r in rows)
        completed += ok
        faulted += fault
        escaped += ok and fault
        attempts += len(rows)
        vx.sleep(RUN_GAP_SECONDS)
    return Result(scenario.name, level, runs, completed, faulted, escaped, attempts, tuple(durations))


def run_experiment(
    *,
    runs: int,
    seed: int | str = 0,
    scenarios: Iterable[Scenario] = SCENARIOS,
    levels: Iterable[str] = LEVELS,
    progress: Callable[[Result], object] | None = None,
) -> list[Result]:
    """Every scenario x level configuration, ``runs`` runs each; ``progress(result)`` after each one."""
    results = []
    for scenario in scenarios:
        for level in levels:
            result = run_configuration(scenario, level, runs=runs, seed=seed)
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def markdown_table(results: Iterable[Result]) -> str:
    """The results as a markdown table, one row per configuration.

    Example::

        >>> print(markdown_table([Result("s", "none", 2, 1, 1, 0, 3, (1.0, 3.0))]).splitlines()[2])
        | s | none | 2 | 50.00% | 9.45% to 90.55% | 0.0% | 1.50 | 2.00 | 2.90 |
    """
    lines = [
        "| scenario | protection | runs | success rate | 95% interval | ER | attempts/run | p50 s | p95 s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        low, high = r.success_interval
        er = "n/a" if math.isnan(r.er) else f"{r.er:.1%}"
        lines.append(
            f"| {r.scenario} | {r.level} | {r.runs} | {r.success_rate:.2%} | {low:.2%} to {high:.2%} | {er} | "
            f"{r.attempts_per_run:.2f} | {r.p50:.2f} | {r.p95:.2f} |"
        )
    return "\n".join(lines)


__all__ = [
    "LEVELS",
    "SCENARIOS",
    "Result",
    "Scenario",
    "markdown_table",
    "percentile",
    "run_configuration",
    "run_experiment",
    "wilson_interval",
]
