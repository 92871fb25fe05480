"""Scale-out: forewarn tasks on a Dask cluster of several worker processes, telemetry to one PostgreSQL store.

One local Dask cluster (two worker processes, one thread each) serves the module. Its workers are spawned
with the module's FOREWARN_* environment (a PostgreSQL store, a spool directory), as a real cluster's
workers get theirs from their own environment, and import this module to run its tasks.
"""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.runtime import flow_run

import forewarn
from forewarn import CircuitBreaker, RetryPolicy
from forewarn.store.telemetry import TelemetryStore

TESTS = Path(__file__).resolve().parent
NO_WAIT = RetryPolicy(attempts=3, wait_initial=0, wait_max=0, wait_jitter=0)

# Shared through the store: every Dask worker process builds its own object on import, one state for all.
# cache_seconds=0: each call reads the shared state, so which worker runs which call does not matter.
DOWNSTREAM = CircuitBreaker("scale-out-downstream", failure_threshold=2, reset_timeout=3600, cache_seconds=0)


def _task_run_id() -> str:
    context = TaskRunContext.get()
    assert context is not None
    return str(context.task_run.id)


@forewarn.task(retry=NO_WAIT, retry_on=ConnectionError, cache_policy=NO_CACHE)
def flaky(marker_dir: str, i: int) -> tuple[str, int]:
    """Fails its first try (a marker file remembers it across processes), then succeeds."""
    marker = Path(marker_dir) / f"flaky-{i}"
    if not marker.exists():
        marker.touch()
        raise ConnectionError(f"flaky {i}: first try fails")
    return _task_run_id(), os.getpid()


def _queued(exc: BaseException, *args: Any, **kwargs: Any) -> tuple[str, int]:
    return _task_run_id(), -os.getpid()


@forewarn.task(retry=RetryPolicy(attempts=1), fallback=_queued, circuit_breaker=DOWNSTREAM, cache_policy=NO_CACHE)
def call_downstream(i: int) -> tuple[str, int]:
    """A dependency that is down: every call fails, and its breaker opens for every process."""
    raise ConnectionError(f"downstream down (call {i})")


@forewarn.task(retry=NO_WAIT, cache_policy=NO_CACHE)
def dies_first(marker_dir: str) -> tuple[str, int]:
    """Kills its own Dask worker process on the first try: Dask re-runs it on a worker that lives."""
    marker = Path(marker_dir) / "dies-first"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)  # the worker process dies mid-attempt, as on an OOM kill
    return _task_run_id(), os.getpid()


@forewarn.task(retry=NO_WAIT, retry_on=ConnectionError, cache_policy=NO_CACHE)
def fails_then_dies(marker_dir: str) -> tuple[str, int]:
    """Fails its first try (recorded), kills its worker on the second, succeeds when Dask re-runs it."""
    tries = Path(marker_dir) / "tries"
    n = int(tries.read_text()) + 1 if tries.exists() else 1
    tries.write_text(str(n))
    if n == 1:
        raise ConnectionError("first try fails")
    if n == 2:
        os._exit(1)
    return _task_run_id(), os.getpid()


def _refund(result: Any, *args: Any, **kwargs: Any) -> None: ...


@forewarn.task(compensate=_refund, cache_policy=NO_CACHE)
def charge(amount: int) -> int:
    """A saga step: its undo hook ships with it by name too."""
    return amount


@pytest.fixture(scope="module")
def cluster_env(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A PostgreSQL store and a spool directory for the whole module, in the environment the workers inherit."""
    import sqlalchemy as sa

    name = f"forewarn_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    base = tmp_path_factory.mktemp("scale-out")
    env = {
        "FOREWARN_DB_URL": url,
        "FOREWARN_SPOOL_DIR": str(base / "spool"),
        "FOREWARN_MODEL_DIR": str(base / "models"),
        "FOREWARN_CACHE_DIR": str(base / "cache"),
        # the workers import this module (and conftest's helpers) by name
        "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p),
    }
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            yield env
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def dask_address(cluster_env: dict[str, str], prefect_harness: None) -> Iterator[str]:
    """One local cluster for the module: two worker processes with one thread each."""
    pytest.importorskip("prefect_dask", reason="the dask extra (pip install 'forewarn[dask]') is not installed")
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def env(cluster_env: dict[str, str], dask_address: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's process uses the module's store too (the autouse fixture gave it a SQLite one)."""
    from forewarn.settings import get_settings

    for key, value in cluster_env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return cluster_env


def _runner(address: str) -> Any:
    from prefect_dask import DaskTaskRunner  # the module's cluster fixture already skipped without it

    return DaskTaskRunner(address=address)


def _attempts(url: str, flow_run_id: str, settle_seconds: float = 2.0, most_seconds: float = 60.0) -> Any:
    """The run's attempt rows once the Dask workers' spools have drained them.

    A Dask worker process outlives the flow run, and its spool drainer lingers up to 0.5 s before it
    writes: read until the rows stop changing for ``settle_seconds`` (the workers' processes are real).
    """
    import time

    deadline, last, since = time.monotonic() + most_seconds, -1, time.monotonic()
    while True:
        with TelemetryStore(url, create=False) as store:
            rows = store.attempts(flow_run_id=flow_run_id)
        if len(rows) != last:
            last, since = len(rows), time.monotonic()
        elif time.monotonic() - since >= settle_seconds or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


class TestShipping:
    def test_a_module_level_task_pickles_by_reference(self) -> None:
        """What a Dask worker unpickles is this module's task function, not a copy of its runner and breaker."""
        import cloudpickle

        shipped = cloudpickle.loads(cloudpickle.dumps(call_downstream))
        assert shipped.fn is call_downstream.fn
        assert shipped.with_options is call_downstream.with_options
        assert len(cloudpickle.dumps(call_downstream.fn)) < 200  # a name, not a closure

    def test_a_saga_step_ships_with_its_undo_hook_by_reference(self) -> None:
        """The rollback hook forewarn adds for ``compensate`` is named under the task, so it pickles by name."""
        import cloudpickle

        shipped = cloudpickle.loads(cloudpickle.dumps(charge))
        assert shipped.fn is charge.fn
        assert shipped.on_rollback_hooks == charge.on_rollback_hooks

    def test_a_task_made_inside_a_function_cannot_be_shipped(self) -> None:
        """It has no importable name, and its closure holds a breaker: pickling fails rather than copying state."""
        import cloudpickle

        @forewarn.task(circuit_breaker=CircuitBreaker("local", scope="process"))
        def local() -> None: ...

        with pytest.raises((TypeError, pickle.PicklingError)):
            cloudpickle.dumps(local)


@pytest.mark.slow
@pytest.mark.postgres
class TestDaskTaskRunner:
    def test_attempts_from_both_worker_processes_land_once_with_a_shared_breaker(
        self, env: dict[str, str], dask_address: str, tmp_path: Path
    ) -> None:
        """Retries, a fallback and an open breaker on two Dask workers: exact rows, one run, one breaker state."""
        marker_dir = str(tmp_path)

        @forewarn.flow(name="scale-out-dask", task_runner=_runner(dask_address))
        def fan_out() -> dict[str, Any]:
            flow_run_id = str(flow_run.id)
            retried = [f.result() for f in [flaky.submit(marker_dir, i) for i in range(6)]]
            opening = [f.result() for f in [call_downstream.submit(i) for i in range(2)]]
            refused = [f.result() for f in [call_downstream.submit(i) for i in range(2, 8)]]
            return {"run": flow_run_id, "retried": retried, "opening": opening, "refused": refused}

        out = fan_out()
        attempts = _attempts(env["FOREWARN_DB_URL"], out["run"])

        pids = {pid for _, pid in out["retried"]} | {-pid for _, pid in out["opening"] + out["refused"]}
        assert len(pids) == 2, f"both worker processes ran tasks: {pids}"
        assert os.getpid() not in pids

        rows = {(r.task_run_id, r.attempt): (r.task_name, r.outcome) for r in attempts.itertuples()}
        assert len(rows) == len(attempts), "one row per (task_run_id, attempt)"
        expected = {}
        for task_run_id, _ in out["retried"]:
            expected[(task_run_id, 1)] = ("flaky", "failure")
            expected[(task_run_id, 2)] = ("flaky", "success")
        for task_run_id, _ in out["opening"]:  # the calls that opened the breaker really called
            expected[(task_run_id, 1)] = ("call_downstream", "failure")
            expected[(task_run_id, 2)] = ("call_downstream", "fallback")
        for task_run_id, _ in out["refused"]:  # refused at once in whichever process: no call made
            expected[(task_run_id, 1)] = ("call_downstream", "failure")
            expected[(task_run_id, 2)] = ("call_downstream", "fallback")
        assert rows == expected
        refused_ids = {t for t, _ in out["refused"]}
        refused_rows = attempts[attempts["task_run_id"].isin(refused_ids) & (attempts["attempt"] == 1)]
        assert set(refused_rows["exception_type"]) == {"CircuitOpenError"}

        with TelemetryStore(env["FOREWARN_DB_URL"], create=False) as store:
            runs = store.runs()
            breaker = store.breaker_state(DOWNSTREAM.name)
        mine = runs[runs["flow_run_id"].astype(str) == out["run"]]
        assert list(mine["state"]) == ["COMPLETED"]
        assert breaker.state == "open"

    def test_a_worker_killed_mid_attempt_leaves_one_row_per_recorded_attempt(
        self, env: dict[str, str], dask_address: str, tmp_path: Path
    ) -> None:
        """Dask re-runs a task whose worker died; the re-run's rows land once, the killed attempt has none."""
        marker_dir = str(tmp_path)

        @forewarn.flow(name="scale-out-dask-kill", task_runner=_runner(dask_address))
        def survive() -> dict[str, Any]:
            flow_run_id = str(flow_run.id)
            return {"run": flow_run_id, "result": dies_first.submit(marker_dir).result()}

        out = survive()
        task_run_id, pid = out["result"]
        killed_pid = int((tmp_path / "dies-first").read_text())
        assert pid != killed_pid, "the re-run ran in a live worker process"

        attempts = _attempts(env["FOREWARN_DB_URL"], out["run"])
        rows = [(r.task_run_id, r.attempt, r.outcome) for r in attempts.itertuples()]
        assert rows == [(task_run_id, 1, "success")]

    def test_attempts_recorded_before_a_worker_died_survive_the_re_run(
        self, env: dict[str, str], dask_address: str, tmp_path: Path
    ) -> None:
        """Three tries (failed, killed, succeeded in the re-run): the failed one and the success both stay."""

        @forewarn.flow(name="scale-out-dask-rerun", task_runner=_runner(dask_address))
        def survive() -> dict[str, Any]:
            return {"run": str(flow_run.id), "result": fails_then_dies.submit(str(tmp_path)).result()}

        out = survive()
        assert (tmp_path / "tries").read_text() == "3"
        outcomes = sorted(_attempts(env["FOREWARN_DB_URL"], out["run"])["outcome"])
        assert outcomes == ["failure", "success"]
