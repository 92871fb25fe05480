"""A real ``prefect server start`` on a free loopback port, with its own PREFECT_HOME, for end-to-end tests.

Everything it starts (the server, workers) is stopped by :meth:`PrefectServer.close`, killing the whole process
group so no uvicorn child outlives the test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PREFECT = [sys.executable, "-m", "prefect"]

# What Prefect's own client retries: the server answers 503 when its SQLite database was busy (the request's
# transaction rolled back, so sending it again is safe), and a worker writing beside the test makes that common.
RETRYABLE_STATUS = frozenset({408, 429, 502, 503})


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrefectServer:
    """A Prefect API server in a subprocess; ``env`` is what every Prefect command against it needs."""

    def __init__(self, home: Path, *, startup_seconds: float = 180.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FOREWARN_"))},
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            # a worker polls every 15 s by default; the test waits for runs, so poll often
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        }
        self._processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []
        self.spawn(["server", "start", "--host", "127.0.0.1", "--port", str(self.port)], name="server")
        self._wait_healthy(startup_seconds)

    def spawn(self, args: Sequence[str], *, name: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``prefect <args>`` in the background (its own process group), output to ``<home>/<name>.log``."""
        log = self.home / f"{name}.log"
        self._logs.append(log)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [*PREFECT, *args],
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._processes.append(proc)
        return proc

    def run(self, args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
            timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run ``prefect <args>`` to completion against this server; raise with its output if it fails."""
        done = subprocess.run(
            [*PREFECT, *args], env={**self.env, **(env or {})}, cwd=cwd, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def api(self, path: str, body: dict[str, Any] | None = None, *, attempts: int = 8) -> Any:
        """``GET`` (no body) or ``POST`` (JSON body) ``<api url><path>``; the decoded JSON answer.

        Retried like Prefect's client on a status it calls retryable, with a growing pause; any other error,
        or the last retryable one, is raised with the server's logs.
        """
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body or {}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST" if body is not None else "GET",
        )
        for attempt in range(1, attempts + 1):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                if error.code not in RETRYABLE_STATUS or attempt == attempts:
                    raise AssertionError(f"{request.method} {path} answered {error.code}:\n{self.logs()}") from error
            time.sleep(0.25 * 2**attempt)  # a real server's busy database, not time in the code under test
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def logs(self) -> str:
        """The output of every process this server started, for a failing test's message."""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-6000:]}" for p in self._logs if p.exists())

    def _wait_healthy(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._processes[0].poll() is not None:
                raise RuntimeError(f"prefect server exited {self._processes[0].returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)  # waiting for a real server to come up, not for time in the code under test
        self.close()
        raise RuntimeError(f"prefect server did not answer within {seconds:g} s:\n{self.logs()}")

    def close(self) -> None:
        """Stop every process started here (SIGTERM to the group, then SIGKILL after 15 s)."""
        for proc in reversed(self._processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self._processes):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(15)
