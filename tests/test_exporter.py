"""The Prometheus exporter: exact figures aggregated by the database, the scrape cache, a scrape over HTTP."""

from __future__ import annotations

import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord, PredictionRecord, RunState
from forewarn.store import TelemetryStore

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from forewarn.scoring.exporter import StoreCollector, serve_metrics  # noqa: E402

NOW = datetime.now(timezone.utc).replace(microsecond=0)
T0 = NOW - timedelta(days=1)


def attempt(run_id: str, task_run: str, task: str, n: int, outcome: str, exc: str | None = None) -> AttemptRecord:
    return AttemptRecord(run_id, task_run, task, n, T0, T0 + timedelta(seconds=n), AttemptOutcome(outcome),
                         exception_type=exc, used_fallback=outcome == "fallback")


def fill(store: TelemetryStore) -> None:
    """orders: o1 retried twice then succeeded and FAILED later (warned); o2 fell back after a breaker refusal
    and COMPLETED (warned: a false alarm); o3 RUNNING. A late prediction on o2, made after it ended, does not count."""
    for run_id in ("o1", "o2", "o3"):
        store.record_flow_run_start(FlowRunRecord(run_id, "orders", start_time=T0, deployment="nightly"))
    store.record_attempts([
        attempt("o1", "t1", "charge", 1, "failure", "ConnectionError"),
        attempt("o1", "t1", "charge", 2, "timeout", "AttemptTimeoutError"),
        attempt("o1", "t1", "charge", 3, "success"),
        attempt("o2", "t2", "charge", 1, "failure", "CircuitOpenError"),
        attempt("o2", "t2", "charge", 2, "fallback"),
        attempt("o3", "t3", "ship", 1, "success"),
    ])
    store.record_flow_run_end("o1", RunState.FAILED, T0 + timedelta(minutes=5))
    store.record_flow_run_end("o2", RunState.COMPLETED, T0 + timedelta(minutes=5))
    for run_id, at, risk in [("o1", T0, 0.9), ("o2", T0, 0.6), ("o2", T0 + timedelta(hours=1), 0.2),
                             ("o3", T0 + timedelta(minutes=1), 0.4)]:
        store.record_prediction(PredictionRecord(run_id, "orders", at, risk, 0.5, "m1", deployment="nightly"))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(collector: StoreCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = prometheus_client.CollectorRegistry()
    registry.register(collector)
    return samples(prometheus_client.generate_latest(registry).decode())


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


class TestFigures:
    def test_exact_totals(self, store_url: str, tmp_path: Path) -> None:
        """Every family holds the figures of its definition, on SQLite and PostgreSQL."""
        store = TelemetryStore(store_url)
        fill(store)
        got = scrape(StoreCollector(store, model_dir=tmp_path / "no-model"))
        charge = {"flow": "orders", "task": "charge"}
        assert got[key("forewarn_store_up")] == 1
        assert got[key("forewarn_task_attempts_total", **charge, outcome="failure")] == 2
        assert got[key("forewarn_task_attempts_total", **charge, outcome="timeout")] == 1
        assert got[key("forewarn_task_attempts_total", flow="orders", task="ship", outcome="success")] == 1
        assert got[key("forewarn_task_retries_total", **charge)] == 2  # o1's attempts 2 and 3; not the fallback
        assert got[key("forewarn_task_fallbacks_total", **charge)] == 1
        assert got[key("forewarn_breaker_refusals", **charge)] == 1
        last_refusal = (T0 + timedelta(seconds=1)).timestamp()  # the refused attempt's end
        assert got[key("forewarn_breaker_last_refusal_timestamp_seconds", **charge)] == last_refusal
        assert got[key("forewarn_flow_runs_total", flow="orders", state="FAILED")] == 1
        assert got[key("forewarn_flow_runs_total", flow="orders", state="RUNNING")] == 1
        assert got[key("forewarn_latest_risk", flow="orders", deployment="nightly")] == 0.2
        assert got[key("forewarn_latest_risk_threshold", flow="orders", deployment="nightly")] == 0.5
        live = {name: got[key(f"forewarn_live_{name}", flow="orders")]
                for name in ("runs", "failures", "warnings", "true_warnings", "false_alarms", "precision", "wr")}
        assert live == {"runs": 2, "failures": 1, "warnings": 2, "true_warnings": 1, "false_alarms": 1,
                        "precision": 0.5, "wr": 1.0}

    def test_undefined_ratios_are_absent(self, sqlite_url: str, tmp_path: Path) -> None:
        """With no failure the WR sample is left out rather than reported as 0."""
        store = TelemetryStore(sqlite_url)
        store.record_flow_run_start(FlowRunRecord("r", "etl", start_time=T0))
        store.record_flow_run_end("r", RunState.COMPLETED, T0 + timedelta(minutes=1))
        store.record_prediction(PredictionRecord("r", "etl", T0, 0.1, 0.5, "m1"))
        got = scrape(StoreCollector(store, model_dir=tmp_path))
        assert got[key("forewarn_live_runs", flow="etl")] == 1
        assert key("forewarn_live_wr", flow="etl") not in got and key("forewarn_live_precision", flow="etl") not in got


    def test_live_figures_count_only_the_installed_models_predictions(self, sqlite_url: str, tmp_path: Path) -> None:
        """With model m1 installed, warnings of an older model m0 are not m1's false alarms."""
        from test_monitoring import install_manifest

        store = TelemetryStore(sqlite_url)
        for run_id, version in [("new", "m1"), ("old", "m0")]:
            store.record_flow_run_start(FlowRunRecord(run_id, "etl", start_time=T0))
            store.record_flow_run_end(run_id, RunState.COMPLETED, T0 + timedelta(minutes=1))
            store.record_prediction(PredictionRecord(run_id, "etl", T0, 0.9, 0.5, version))
        install_manifest(tmp_path / "models", None)  # version m1
        got = scrape(StoreCollector(store, model_dir=tmp_path / "models"))
        assert got[key("forewarn_live_runs", flow="etl")] == 1
        assert got[key("forewarn_live_false_alarms", flow="etl")] == 1


class TestCache:
    def test_scrapes_within_the_cache_share_one_read(self, sqlite_url: str, tmp_path: Path) -> None:
        now = [100.0]
        store = TelemetryStore(sqlite_url)
        collector = StoreCollector(store, cache_seconds=10, model_dir=tmp_path, clock=lambda: now[0])
        scrape(collector)
        now[0] += 9.9
        scrape(collector)
        assert collector.reads == 1
        now[0] += 0.1
        scrape(collector)
        assert collector.reads == 2

    def test_whole_store_counters_are_read_less_often(self, sqlite_url: str, tmp_path: Path) -> None:
        """Windowed figures refresh every cache_seconds; the attempt and run counters every counts_seconds."""
        now = [0.0]
        store = TelemetryStore(sqlite_url)
        fill(store)
        collector = StoreCollector(store, cache_seconds=10, counts_seconds=60, model_dir=tmp_path, clock=lambda: now[0])
        first = scrape(collector)
        store.record_attempt(attempt("o3", "t9", "ship", 1, "success"))
        now[0] = 30.0
        second = scrape(collector)
        assert (collector.reads, collector.count_reads) == (2, 1)
        ship = key("forewarn_task_attempts_total", flow="orders", task="ship", outcome="success")
        assert first[ship] == second[ship] == 1  # the counters are the cached ones
        now[0] = 60.0
        assert scrape(collector)[ship] == 2 and collector.count_reads == 2

    def test_a_store_that_cannot_be_read_reports_down(self, sqlite_url: str, tmp_path: Path) -> None:
        store = TelemetryStore(sqlite_url)
        store.close()
        got = scrape(StoreCollector(store, model_dir=tmp_path))
        assert got[key("forewarn_store_up")] == 0
        assert not [name for name, _ in got if name.startswith("forewarn_task")]


class TestHttp:
    def test_scrape_over_loopback(self, sqlite_url: str, tmp_path: Path) -> None:
        """serve_metrics on a free loopback port answers a real HTTP scrape in the Prometheus format."""
        store = TelemetryStore(sqlite_url)
        fill(store)
        server, thread = serve_metrics(store, port=0, model_dir=tmp_path)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=30) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                got = samples(response.read().decode())
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
        assert got[key("forewarn_task_fallbacks_total", flow="orders", task="charge")] == 1
        assert not thread.is_alive()


class TestGrafanaDashboard:
    def test_every_query_names_a_metric_the_exporter_serves(self, sqlite_url: str, tmp_path: Path) -> None:
        """docs/grafana-dashboard.json loads as JSON and each forewarn_* series it queries is in a scrape."""
        import json
        import re

        dashboard = json.loads((Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json").read_text())
        store = TelemetryStore(sqlite_url)
        fill(store)
        served = {name for name, _ in scrape(StoreCollector(store, model_dir=tmp_path))}
        queried = {
            name
            for panel in dashboard["panels"]
            for target in panel["targets"]
            for name in re.findall(r"forewarn_[a-z_]+", target["expr"])
        }
        assert queried and queried <= served, queried - served
        assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in dashboard["panels"])
