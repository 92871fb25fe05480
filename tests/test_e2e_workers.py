"""Several Prefect workers on one pool, every run's telemetry in one PostgreSQL store, exactly once.

A real server, the process work pool, the orders deployment from prefect.yaml deployed with a PostgreSQL
FOREWARN_DB_URL, and two process workers (one run at a time each, so both take runs), each with a HOME of
its own and no FOREWARN_* variable: the store reaches the runs only through the deployment's job variables.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from forewarn.store.telemetry import TelemetryStore
from prefect_server import PrefectServer
from test_e2e_deployments import _run_deployment, _wait_terminal, _wait_until, server  # noqa: F401  # server: a fixture

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.postgres]
RUNS = 6
WORKERS = ("worker-a", "worker-b")


def _start_worker(api: PrefectServer, name: str, home: Path) -> None:
    home.mkdir()
    api.spawn(
        ["worker", "start", "--pool", "forewarn", "--type", "process", "--name", name, "--limit", "1"],
        name=name,
        env={"HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache"),
             "PREFECT_LOGGING_LEVEL": "INFO",  # the worker's "submitting flow run" line says who ran what
             "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )


def test_two_workers_one_pool_all_telemetry_in_one_postgres_store_exactly_once(
    server: PrefectServer, pg_url: str, tmp_path: Path  # noqa: F811
) -> None:
    """Six order runs over two workers: six COMPLETED run rows, one success row per task, runs on both."""
    deploy_env = {
        "FOREWARN_DB_URL": pg_url,
        "FOREWARN_MODEL_DIR": str(tmp_path / "team-models"),
        "FOREWARN_MODEL_KEY_FILE": str(tmp_path / "team-model.key"),
    }
    server.run(["work-pool", "create", "forewarn", "--type", "process"])
    server.run(["--no-prompt", "deploy", "--name", "orders"], cwd=ROOT, env=deploy_env)
    for name in WORKERS:
        _start_worker(server, name, tmp_path / f"{name}-home")

    # latency makes the runs overlap, so a worker busy with one leaves the next to the other
    run_ids = [
        _run_deployment(server, "orders", {"order_id": f"W-{i}", "latency_seconds": 1.0,
                                           "transient_rate": 0.0, "permanent_rate": 0.0})
        for i in range(RUNS)
    ]
    for run_id in run_ids:
        assert _wait_terminal(server, run_id)["state_type"] == "COMPLETED", server.logs()

    ran_by = {}
    for name in WORKERS:
        log = (server.home / f"{name}.log").read_text(errors="replace")
        # both workers may try to take a run; Prefect lets one, and the other logs "Aborted submission"
        tried = set(re.findall(r"submitting flow run '([0-9a-f-]{36})'", log))
        aborted = set(re.findall(r"Aborted submission of flow run '([0-9a-f-]{36})'", log))
        ran_by[name] = (tried - aborted) & set(run_ids)
    assert ran_by["worker-a"] and ran_by["worker-b"], f"both workers ran orders: {ran_by}"
    assert ran_by["worker-a"] | ran_by["worker-b"] == set(run_ids)
    assert not ran_by["worker-a"] & ran_by["worker-b"], "no run was taken by both workers"

    def all_ended_in_the_store() -> bool:
        # Prefect marks a run COMPLETED before its process has drained its spool into the store at exit
        with TelemetryStore(pg_url, create=False) as store:
            runs = store.runs()
        return len(runs) == RUNS and set(runs["state"]) == {"COMPLETED"}

    _wait_until(all_ended_in_the_store, server, "the six final states in the store")
    with TelemetryStore(pg_url, create=False) as store:
        runs = store.runs()
        attempts = store.attempts()
    assert sorted(runs["flow_run_id"].astype(str)) == sorted(run_ids)
    assert set(runs["state"]) == {"COMPLETED"}
    assert set(attempts["flow_run_id"].astype(str)) == set(run_ids)
    assert set(attempts["outcome"]) == {"success"}, "no faults injected: one successful attempt per task"
    assert set(attempts["attempt"]) == {1}
    per_run = attempts.groupby(attempts["flow_run_id"].astype(str))["task_run_id"].agg(["count", "nunique"])
    assert (per_run["count"] == per_run["nunique"]).all(), "one row per task run"
    assert per_run["count"].nunique() == 1, f"every order run recorded the same tasks: {per_run}"
    for name in WORKERS:
        assert not (tmp_path / f"{name}-home" / "data" / "forewarn" / "telemetry.db").exists()
