"""Prometheus metrics read from the telemetry store at each scrape (the optional ``metrics`` extra).

:class:`StoreCollector` is a ``prometheus_client`` collector: a scrape asks the store for its
:meth:`~forewarn.store.TelemetryStore.totals` (a few ``GROUP BY`` queries, aggregated by the database)
and turns them into metric families. The windowed figures (breaker refusals, latest risks, live
precision/WR) read only the live window through indexes and are kept for ``cache_seconds``; the
whole-store counters (attempts, retries, fallbacks, runs) scan their tables, so they are re-read only
every ``counts_seconds``. Several Prometheus servers, or a dashboard refreshing fast, cost the database
one read per interval. A store that cannot
be read gives ``forewarn_store_up 0`` and no other family, rather than an error page.

The families (label ``flow`` is ``""`` for attempts outside a forewarn flow):

- ``forewarn_task_attempts_total{flow,task,outcome}``: task attempts recorded, per outcome;
- ``forewarn_task_retries_total{flow,task}``: attempts after the first of their task run;
- ``forewarn_task_fallbacks_total{flow,task}``: task runs whose result came from a fallback;
- ``forewarn_breaker_refusals{flow,task}``: attempts an open circuit breaker refused in the live window,
  and ``forewarn_breaker_last_refusal_timestamp_seconds{flow,task}``: when (``time() - x``: how long ago);
- ``forewarn_flow_runs_total{flow,state}``: flow runs per state (``RUNNING`` ones included);
- ``forewarn_latest_risk{flow,deployment}`` and ``forewarn_latest_risk_threshold{flow,deployment}``: the
  newest predicted failure risk (within ``live_window``) and the threshold it was judged against;
- ``forewarn_live_runs{flow}``, ``_failures``, ``_warnings``, ``_true_warnings``, ``_false_alarms``,
  ``_precision`` and ``_wr``: the installed model's live warnings over the labelled runs that ended in
  ``live_window`` (the ratios are absent while undefined);
- ``forewarn_store_up`` and ``forewarn_store_read_seconds``: whether the last read worked, how long it took.

Circuit breakers keep their state in each worker's memory, so the store knows a breaker only by the calls
it refused: a refusal in the last minutes means the breaker is open now.

Example::

    >>> from forewarn.store import TelemetryStore
    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> registry = CollectorRegistry()
    >>> registry.register(StoreCollector(TelemetryStore("sqlite://"), model_dir="/nonexistent/models"))
    >>> b"forewarn_store_up 1.0" in generate_latest(registry)
    True
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from forewarn.errors import ForewarnError
from forewarn.scoring.monitor import installed_reference
from forewarn.store import TelemetryStore
from forewarn.store.aggregates import StoreTotals
from forewarn.timeutil import utc_now

log = logging.getLogger(__name__)

DEFAULT_PORT = 9464
DEFAULT_CACHE_SECONDS = 10.0
DEFAULT_COUNTS_SECONDS = 120.0
DEFAULT_LIVE_WINDOW = timedelta(days=7)


def _prometheus() -> Any:
    try:
        import prometheus_client
        from prometheus_client import core
    except ImportError:
        raise ForewarnError(
            "the metrics exporter needs prometheus-client: pip install 'forewarn[metrics]'"
        ) from None
    return prometheus_client, core


class StoreCollector:
    """A ``prometheus_client`` collector over a :class:`~forewarn.store.TelemetryStore` (see the module docstring).

    ``live_window`` bounds the live figures and the latest risks; ``model_dir`` (default
    ``FOREWARN_MODEL_DIR``) names the installed model, whose predictions alone the live figures count;
    ``clock`` is injectable for tests of the cache.
    """

    def __init__(
        self,
        store: TelemetryStore,
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        counts_seconds: float = DEFAULT_COUNTS_SECONDS,
        live_window: timedelta = DEFAULT_LIVE_WINDOW,
        model_dir: Path | str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= cache_seconds <= counts_seconds:
            raise ValueError(f"need 0 <= cache_seconds <= counts_seconds, got {cache_seconds} and {counts_seconds}")
        self.store = store
        self.cache_seconds = cache_seconds
        self.counts_seconds = counts_seconds
        self.live_window = live_window
        self.model_dir = model_dir
        self._clock = clock
        self._lock = threading.Lock()
        self._windowed: tuple[float, StoreTotals | None, float] | None = None  # (read at, totals, seconds)
        self._counts: tuple[float, StoreTotals] | None = None  # the last whole-store counters, and when
        self.reads = 0
        self.count_reads = 0

    def _totals(self) -> tuple[StoreTotals | None, float]:
        """The store's totals: windowed figures at most every ``cache_seconds``, counters every ``counts_seconds``.

        ``None`` when the last read failed.
        """
        with self._lock:  # one read at a time; concurrent scrapes share it
            now = self._clock()
            if self._windowed is not None and now - self._windowed[0] < self.cache_seconds:
                return self._windowed[1], self._windowed[2]
            with_counts = self._counts is None or now - self._counts[0] >= self.counts_seconds
            started = time.perf_counter()
            totals: StoreTotals | None
            try:
                reference = installed_reference(self.model_dir)
                version = reference.model_version if reference is not None else None
                totals = self.store.totals(
                    since=utc_now() - self.live_window, model_version=version, counts=with_counts
                )
            except (ForewarnError, OSError) as exc:
                log.warning("forewarn metrics: cannot read %s: %s", self.store.url, exc)
                totals = None
            self.reads += 1
            if totals is not None and with_counts:
                self.count_reads += 1
                self._counts = (now, totals)
            if totals is not None and self._counts is not None:
                totals = replace(totals, attempts=self._counts[1].attempts, runs=self._counts[1].runs)
            self._windowed = (now, totals, time.perf_counter() - started)
            return totals, self._windowed[2]

    def describe(self) -> list[Any]:
        """Nothing at registration: describing would read the store (``prometheus_client`` calls it once)."""
        return []

    def collect(self) -> Iterator[Any]:
        """The metric families of one scrape."""
        _, core = _prometheus()
        totals, seconds = self._totals()
        up = int(totals is not None)
        yield core.GaugeMetricFamily("forewarn_store_up", "1 if the last read of the store worked", value=up)
        yield core.GaugeMetricFamily("forewarn_store_read_seconds", "seconds the last store read took", value=seconds)
        if totals is None:
            return
        yield from _attempt_families(core, totals)
        yield from _risk_families(core, totals)
        yield from _live_families(core, totals)


def _attempt_families(core: Any, totals: StoreTotals) -> Iterator[Any]:
    attempts = core.CounterMetricFamily("forewarn_task_attempts", "task attempts", labels=["flow", "task", "outcome"])
    retries = core.CounterMetricFamily("forewarn_task_retries", "attempts after the first", labels=["flow", "task"])
    fallbacks = core.CounterMetricFamily(
        "forewarn_task_fallbacks", "task runs whose result came from a fallback", labels=["flow", "task"]
    )
    per_task: dict[tuple[str, str], list[int]] = {}
    for flow, task, outcome, n, n_retries in totals.attempts:
        attempts.add_metric([flow, task, outcome], n)
        counts = per_task.setdefault((flow, task), [0, 0])
        counts[0] += n_retries
        counts[1] += n if outcome == "fallback" else 0
    for (flow, task), (n_retries, n_fallbacks) in sorted(per_task.items()):
        retries.add_metric([flow, task], n_retries)
        fallbacks.add_metric([flow, task], n_fallbacks)
    refusals = core.GaugeMetricFamily(
        "forewarn_breaker_refusals", "calls an open circuit breaker refused in the live window", labels=["flow", "task"]
    )
    last_refusal = core.GaugeMetricFamily(
        "forewarn_breaker_last_refusal_timestamp_seconds", "when an open breaker last refused", labels=["flow", "task"]
    )
    for flow, task, n, last in totals.breaker_refusals:
        refusals.add_metric([flow, task], n)
        if last is not None:
            last_refusal.add_metric([flow, task], last.timestamp())
    runs = core.CounterMetricFamily("forewarn_flow_runs", "flow runs", labels=["flow", "state"])
    for flow, state, n in totals.runs:
        runs.add_metric([flow, state], n)
    yield from (attempts, retries, fallbacks, refusals, last_refusal, runs)


def _risk_families(core: Any, totals: StoreTotals) -> Iterator[Any]:
    labels = ["flow", "deployment"]
    risk = core.GaugeMetricFamily("forewarn_latest_risk", "newest predicted failure risk", labels=labels)
    threshold = core.GaugeMetricFamily(
        "forewarn_latest_risk_threshold", "warning threshold of that prediction", labels=labels
    )
    for flow, deployment, value, limit, _ in totals.latest_risk:
        risk.add_metric([flow, deployment], value)
        threshold.add_metric([flow, deployment], limit)
    yield from (risk, threshold)


def _live_families(core: Any, totals: StoreTotals) -> Iterator[Any]:
    names = ("runs", "failures", "warnings", "true_warnings", "false_alarms", "precision", "wr")
    helps = {
        "runs": "labelled runs that ended in the live window with a prediction",
        "failures": "of those, runs that failed",
        "warnings": "of those, runs that were warned",
        "true_warnings": "warned runs that failed",
        "false_alarms": "warned runs that did not fail",
        "precision": "true warnings / warnings (absent without a warning)",
        "wr": "true warnings / failures (absent without a failure)",
    }
    families = {n: core.GaugeMetricFamily(f"forewarn_live_{n}", helps[n], labels=["flow"]) for n in names}
    for flow, labelled, failures, warnings, true_warnings in totals.live:
        figures: dict[str, float | None] = {
            "runs": labelled,
            "failures": failures,
            "warnings": warnings,
            "true_warnings": true_warnings,
            "false_alarms": warnings - true_warnings,
            "precision": true_warnings / warnings if warnings else None,
            "wr": true_warnings / failures if failures else None,
        }
        for name, value in figures.items():
            if value is not None:
                families[name].add_metric([flow], value)
    yield from families.values()


def serve_metrics(
    store: TelemetryStore, *, port: int = DEFAULT_PORT, addr: str = "127.0.0.1", **options: Any
) -> tuple[Any, threading.Thread]:
    """Serve ``/metrics`` for ``store`` on ``addr:port`` from a daemon thread; return (server, thread).

    ``port=0`` picks a free port (``server.server_port``). ``options`` go to :class:`StoreCollector`.
    Stop with ``server.shutdown()``; ``forewarn serve-metrics`` serves until interrupted.

    Example::

        >>> server, _ = serve_metrics(TelemetryStore("sqlite://"), port=0)  # doctest: +SKIP
        >>> server.shutdown()  # doctest: +SKIP
    """
    prometheus_client, _ = _prometheus()
    registry = prometheus_client.CollectorRegistry()
    registry.register(StoreCollector(store, **options))
    return prometheus_client.start_http_server(port, addr=addr, registry=registry)  # type: ignore[no-any-return]


__all__ = [
    "DEFAULT_CACHE_SECONDS",
    "DEFAULT_COUNTS_SECONDS",
    "DEFAULT_LIVE_WINDOW",
    "DEFAULT_PORT",
    "StoreCollector",
    "serve_metrics",
]
