"""End to end as a Prefect team runs forewarn: a real server, a work pool, ``prefect deploy --all``, a worker.

The sequence: an order run completes with its telemetry in the store named at deploy time; a slow one is
cancelled from the CLI and stored CANCELLED; the training, forecast and backtest deployments complete on a
store too young for a model ("not enough history yet" artifacts), and so does the monitor;
``forewarn import-prefect`` brings both order runs, and none of forewarn's own flow runs, into a fresh store.
A second test gives the team store a history (the order flow's last twelve runs failed), runs the training
deployment, schedules an order run and runs the forecast deployment twice: two scores, one at-risk event.

Nothing is mocked: ``prefect server start`` on a free loopback port with its own PREFECT_HOME, the process work
pool, every deployment in the repository's prefect.yaml deployed as the README says, a process worker, and runs
created through the API. The worker itself has no FOREWARN_* variable and a HOME of its own, so the only way a
run finds the test's store and model directory is prefect.yaml's job variables, filled in at deploy time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from forewarn.errors import StoreError
from forewarn.store.telemetry import TelemetryStore
from prefect_server import PrefectServer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _deployment_id(server: PrefectServer, name: str) -> str:
    found = server.api("/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
    assert len(found) == 1, f"deployment {name!r} not found after prefect deploy --all: {found}"
    return str(found[0]["id"])


def _run_deployment(server: PrefectServer, name: str, parameters: dict[str, Any] | None = None) -> str:
    body: dict[str, Any] = {"parameters": parameters} if parameters else {}
    run = server.api(f"/deployments/{_deployment_id(server, name)}/create_flow_run", body)
    return str(run["id"])


def _wait_terminal(server: PrefectServer, run_id: str, seconds: float = 420.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = server.api(f"/flow_runs/{run_id}")
        if run["state_type"] in TERMINAL:
            return dict(run)
        time.sleep(1)  # a real worker is running a real flow; poll the API
    raise AssertionError(f"flow run {run_id} not finished within {seconds:g} s:\n{server.logs()}")


@pytest.fixture
def server(tmp_path: Path) -> Any:
    started = PrefectServer(tmp_path / "prefect-home")
    yield started
    started.close()


def test_deploy_all_then_the_worker_runs_orders_with_telemetry_in_the_configured_store(
    server: PrefectServer, tmp_path: Path
) -> None:
    """The README's sequence: pool, deploy --all (FOREWARN_* set at deploy time), worker, run; telemetry lands."""
    store_url = f"sqlite:///{tmp_path / 'team-store.db'}"
    worker_home = _deploy_all_and_start_a_worker(server, tmp_path, store_url)

    created = server.run(
        [
            "deployment",
            "run",
            "process-order/orders",
            "--param",
            "order_id=E2E-1",
            "--param",
            "transient_rate=0.0",
            "--param",
            "permanent_rate=0.0",
        ]
    )
    found = re.search(r"UUID:\s*([0-9a-f-]{36})", created.stdout)
    assert found, f"no flow run id in the output of prefect deployment run:\n{created.stdout}"
    run_id = found.group(1)
    run = _wait_terminal(server, run_id)
    assert run["state_type"] == "COMPLETED", server.logs()
    # Prefect marks the run COMPLETED before its process has drained its spool into the store at exit
    _wait_until(lambda: _stored_state(store_url, run_id) == "COMPLETED", server, "the run's final state in the store")

    with TelemetryStore(store_url, create=False) as store:
        runs = store.runs()
        attempts = store.attempts()
    assert run_id in set(runs["flow_run_id"].astype(str)), f"the run is not in the team store: {runs}"
    mine = runs[runs["flow_run_id"].astype(str) == run_id].iloc[0]
    assert mine["flow_name"] == "process-order"
    assert mine["state"] == "COMPLETED"
    tasks = set(attempts[attempts["flow_run_id"].astype(str) == run_id]["task_name"])
    assert {"charge_payment", "arrange_shipping"} <= tasks
    assert not (worker_home / "data" / "forewarn" / "telemetry.db").exists()

    # a run cancelled from the CLI while it works ends CANCELLED in Prefect and in the store
    slow = _run_deployment(
        server, "orders", {"order_id": "E2E-2", "latency_seconds": 120.0, "transient_rate": 0.0, "permanent_rate": 0.0}
    )
    _wait_until(lambda: _started_in_store(store_url, slow), server, "the slow run's start row in the store")
    server.run(["flow-run", "cancel", slow])
    cancelled = _wait_terminal(server, slow)
    assert cancelled["state_type"] == "CANCELLED", server.logs()
    _wait_until(lambda: _stored_state(store_url, slow) == "CANCELLED", server, "CANCELLED in the store")

    # cold start: with two runs in the store, training (which imports Prefect's history first) and the
    # forecast complete and say why there is no model yet, in a markdown artifact
    for name in ("train-failure-model", "forecast", "backtest"):
        ended = _wait_terminal(server, _run_deployment(server, name))
        assert ended["state_type"] == "COMPLETED", f"{name}: {ended['state_name']}\n{server.logs()}"
        notes = server.api("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [ended["id"]]}}})
        assert any("not enough history yet" in str(a.get("data")) for a in notes), (name, notes)
    monitored = _wait_terminal(server, _run_deployment(server, "monitor"))  # no model yet: it says so, and ends
    assert monitored["state_type"] == "COMPLETED", server.logs()

    # the history Prefect already has, into a fresh store: both order runs, none of forewarn's own flows
    fresh = f"sqlite:///{tmp_path / 'imported.db'}"
    imported = subprocess.run(
        [sys.executable, "-m", "forewarn", "import-prefect", "--db", fresh],
        env={**server.env, "FOREWARN_MODEL_KEY_FILE": str(tmp_path / "team-model.key")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    with TelemetryStore(fresh, create=False) as store:
        runs = store.runs()
    assert set(runs["flow_name"]) == {"process-order"}, runs[["flow_name", "state"]]
    assert dict(zip(runs["flow_run_id"].astype(str), runs["state"], strict=True)) == {
        run_id: "COMPLETED",
        slow: "CANCELLED",
    }


def _deploy_all_and_start_a_worker(server: PrefectServer, tmp_path: Path, store_url: str) -> Path:
    """The README's sequence: the pool, ``prefect deploy --all`` with the team's FOREWARN_* set, a worker.

    The worker has no FOREWARN_* variable and a HOME of its own (returned): its defaults would land there,
    so a run finds the team store and model directory only through prefect.yaml's job variables.
    """
    deploy_env = {
        "FOREWARN_DB_URL": store_url,
        "FOREWARN_MODEL_DIR": str(tmp_path / "team-models"),
        "FOREWARN_MODEL_KEY_FILE": str(tmp_path / "team-model.key"),
    }
    server.run(["work-pool", "create", "forewarn", "--type", "process"])
    server.run(["--no-prompt", "deploy", "--all"], cwd=ROOT, env=deploy_env)
    worker_home = tmp_path / "worker-home"
    worker_home.mkdir()
    server.spawn(
        ["worker", "start", "--pool", "forewarn", "--type", "process"],
        name="worker",
        env={
            "HOME": str(worker_home),
            "XDG_DATA_HOME": str(worker_home / "data"),
            "XDG_CACHE_HOME": str(worker_home / "cache"),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        },
    )
    return worker_home


def _stored_state(store_url: str, run_id: str) -> str | None:
    """The run's state in the store, or None while it (or the store's file) is not there yet."""
    try:
        store = TelemetryStore(store_url, create=False)
    except StoreError:  # the first record creates the SQLite file
        return None
    with store:
        runs = store.runs()
    mine = runs[runs["flow_run_id"].astype(str) == run_id]
    return None if mine.empty else str(mine.iloc[0]["state"])


def _started_in_store(store_url: str, run_id: str) -> bool:
    return _stored_state(store_url, run_id) is not None


def _wait_until(condition: Any, server: PrefectServer, what: str, seconds: float = 300.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)  # a real worker runs a real flow; poll
    raise AssertionError(f"no {what} within {seconds:g} s:\n{server.logs()}")


def test_the_deployed_forecast_warns_once_per_scheduled_run(server: PrefectServer, tmp_path: Path) -> None:
    """History in the team store, the training deployment, a scheduled order run, the forecast twice.

    The order flow's last twelve runs failed, so its next scheduled run is scored at risk: both forecasts
    record a score for it, but only the first notifies (one ``forewarn.run.at-risk`` event for that run).
    """
    from datetime import datetime, timedelta, timezone

    import pandas as pd

    from forewarn.history.importer import import_runs
    from forewarn.history.simulate import simulate_history

    store_url = f"sqlite:///{tmp_path / 'team-store.db'}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    history = simulate_history(4_000, seed=3)
    hours = pd.date_range(end=now - timedelta(hours=1), periods=40, freq="h")
    orders = pd.DataFrame(
        {
            "run_id": [f"past-order-{i}" for i in range(40)],
            "flow_name": "process-order",
            "scheduled_start": [t.isoformat() for t in hours],
            "start_time": [t.isoformat() for t in hours],
            "end_time": [(t + timedelta(minutes=2)).isoformat() for t in hours],
            "state": ["COMPLETED"] * 28 + ["FAILED"] * 12,  # a payment outage for the last twelve hours
        }
    )
    csv = tmp_path / "history.csv"
    pd.concat([history, orders], ignore_index=True).to_csv(csv, index=False)
    with TelemetryStore(store_url) as store:
        import_runs(store, csv)

    _deploy_all_and_start_a_worker(server, tmp_path, store_url)
    trained = _wait_terminal(server, _run_deployment(server, "train-failure-model", {"import_prefect": False}))
    assert trained["state_type"] == "COMPLETED", server.logs()
    assert (tmp_path / "team-models" / "latest.json").exists(), server.logs()

    due = (now + timedelta(hours=2)).isoformat()
    scheduled = server.api(
        f"/deployments/{_deployment_id(server, 'orders')}/create_flow_run",
        {"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": due}}},
    )
    for _ in range(2):
        ended = _wait_terminal(server, _run_deployment(server, "forecast"))
        assert ended["state_type"] == "COMPLETED", server.logs()

    with TelemetryStore(store_url, create=False) as store:
        scores = store.predictions(source="forecast")
    mine = scores[scores["flow_run_id"].astype(str) == str(scheduled["id"])]
    assert len(mine) == 2, scores[["flow_run_id", "flow_name", "risk", "warned"]]
    assert mine["warned"].astype(bool).all(), mine[["risk", "threshold", "reasons"]]

    def at_risk_events() -> list[Any]:
        since = (now - timedelta(minutes=5)).isoformat()
        found = server.api(
            "/events/filter",
            {
                "filter": {"event": {"name": ["forewarn.run.at-risk"]}, "occurred": {"since": since}},
                "limit": 50,
            },
        )
        return [
            e for e in found["events"] if e["resource"]["prefect.resource.id"] == f"prefect.flow-run.{scheduled['id']}"
        ]

    _wait_until(lambda: len(at_risk_events()) >= 1, server, "the at-risk event of the scheduled run")
    time.sleep(3)  # events are persisted asynchronously: give a second one time to show, then count
    assert len(at_risk_events()) == 1
