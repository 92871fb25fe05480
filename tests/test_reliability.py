"""Telemetry survives what production does to it: SIGKILL mid-flow, and four processes at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from forewarn.orchestration.recorder import TelemetryRecorder
from forewarn.settings import get_settings
from forewarn.store import TelemetryStore

WORKER = Path(__file__).with_name("flow_worker.py")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def worker_env(store_url: str) -> dict[str, str]:
    """The child's environment: this session's Prefect API and the store under test."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREWARN_")}
    env.update(
        FOREWARN_DB_URL=store_url,
        FOREWARN_SPOOL_DIR=os.environ["FOREWARN_SPOOL_DIR"],
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


def done_lines(text: str) -> dict[str, int]:
    """task_run_id -> attempts, for every complete DONE line."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "DONE":
            out[parts[1]] = int(parts[2])
    return out


class TestSigkill:
    def test_attempts_finished_before_sigkill_are_in_the_store(self, sqlite_url: str, tmp_path: Path) -> None:
        """Every attempt whose task returned before SIGKILL is stored, and the store opens cleanly after."""
        out_path = tmp_path / "worker.out"
        with out_path.open("w") as out:
            child = subprocess.Popen(
                [sys.executable, str(WORKER), "0", "11", "--forever"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=worker_env(sqlite_url),
            )
            deadline = time.monotonic() + 90
            while len(done_lines(out_path.read_text())) < 40:
                assert child.poll() is None, out_path.read_text()[-2000:]
                assert time.monotonic() < deadline, "worker made no progress"
                time.sleep(0.05)
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finished = done_lines(out_path.read_text())

        # what the killed worker had spooled but not yet drained reaches the store with the next process
        assert TelemetryRecorder(sqlite_url, spool_dir=get_settings().spool_dir).flush(30)
        store = TelemetryStore(sqlite_url)
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
        attempts = store.attempts()
        stored = attempts.groupby("task_run_id")["attempt"].max().to_dict()
        missing = {t: n for t, n in finished.items() if stored.get(t) != n}
        assert not missing, f"attempts lost by SIGKILL: {missing}"
        runs = store.runs()
        assert list(runs["state"]) == ["RUNNING"]  # no hook ran: the row says what is known
        assert runs["end_time"].isna().all()


class TestFourProcesses:
    def test_no_attempt_lost_and_no_lock_error(self, store_url: str) -> None:
        """Four processes running flows at once against one store lose no row and see no lock error."""
        children = [
            subprocess.Popen(
                [sys.executable, str(WORKER), "60", str(seed)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=worker_env(store_url),
            )
            for seed in range(4)
        ]
        outputs = [child.communicate(timeout=300) for child in children]
        expected: dict[str, int] = {}
        for child, (stdout, stderr) in zip(children, outputs, strict=True):
            assert child.returncode == 0, stderr[-3000:]
            assert "locked" not in stderr.lower() and "could not record" not in stderr
            assert "ERRORS 0" in stdout
            expected.update(done_lines(stdout))
        assert len(expected) == 240

        attempts = TelemetryStore(store_url).attempts()
        assert len(attempts) == sum(expected.values())
        assert attempts.groupby("task_run_id")["attempt"].max().to_dict() == expected
        assert sum(expected.values()) > 240  # the seeded faults really caused retries
