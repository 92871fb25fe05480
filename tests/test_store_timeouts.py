"""A PostgreSQL that stalls must not stall flows, and a NUL byte must not lose a row.

The stalls are real: a loopback TCP server this test controls, either silent (accepts and never answers)
or a proxy in front of the test PostgreSQL that freezes mid-stream and resumes. Bounds are asserted
generously (many times the configured timeout), and "refused without connecting" is asserted by counting
the connections the server accepted, never by timing. The breaker's clock is injected.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pandas as pd
import pytest
import sqlalchemy as sa

from forewarn.errors import ConfigurationError, StoreUnreachableError
from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord, PredictionRecord, RunState
from forewarn.store import StoreTimeouts, TelemetryStore
from forewarn.store._deadline import SocketDeadline
from forewarn.store._engine import Database
from forewarn.store._execute import write_retrying

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
FAST = StoreTimeouts(connect=2, write=0.5, read=1.0, retry_interval=30)
BOUND = 10 * 2  # seconds: ten times the longest timeout involved (connect, whose minimum is 2 s)


class LoopbackServer:
    """A TCP server on 127.0.0.1 that forwards to ``upstream`` (host, port) while not stalled.

    Without ``upstream`` it is silent: it accepts and never answers. :meth:`stall` freezes every
    connection, open or new, mid-stream (bytes are held, not dropped); :meth:`resume` lets them flow.
    ``accepted`` counts the connections made to it.
    """

    def __init__(self, upstream: tuple[str, int] | None = None) -> None:
        self.upstream = upstream
        self.accepted = 0
        self._flowing = threading.Event()
        if upstream is not None:
            self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._sockets.append(client)
            if self.upstream is None:
                continue  # silent: hold the connection open, never answer
            server = socket.create_connection(self.upstream)
            self._sockets.append(server)
            for src, dst in ((client, server), (server, client)):
                thread = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._closed.is_set():
            self._flowing.wait()
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            self._flowing.wait()  # frozen mid-stream: what was read is held until resume
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_RDWR)
                return
            try:
                dst.sendall(data)
            except OSError:
                return


@pytest.fixture
def silent_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    yield server
    server.close()


@pytest.fixture
def proxy(pg_url: str) -> Iterator[tuple[LoopbackServer, str]]:
    """A proxy to a fresh PostgreSQL database, and that database's name."""
    target = sa.engine.make_url(pg_url)
    server = LoopbackServer((target.host or "127.0.0.1", target.port or 5432))
    yield server, target.database or ""
    server.close()


def attempt(task_run_id: str = "t1", message: str | None = None) -> AttemptRecord:
    outcome = AttemptOutcome.FAILURE if message else AttemptOutcome.SUCCESS
    return AttemptRecord("f1", task_run_id, "load", 1, T0, T0, outcome, "RuntimeError", message)


# --- the parts --------------------------------------------------------------------------------------------


def test_a_deadline_shuts_a_silent_socket_down_and_says_so() -> None:
    deadline = SocketDeadline()
    mine, peer = socket.socketpair()
    with mine, peer:
        with deadline.guard(mine.fileno(), 0.2):
            received = mine.recv(1)  # nobody writes: only the deadline can end this
        assert received == b""
        assert deadline.expired()
        with deadline.guard(peer.fileno(), 5.0):
            pass
        assert not deadline.expired()


@pytest.mark.parametrize("field", ["connect", "statement", "lock", "write", "read", "retry_interval"])
@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), True, "5"])
def test_timeouts_must_be_finite_positive_seconds(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"StoreTimeouts.{field}="):
        StoreTimeouts(**{field: value})  # type: ignore[arg-type]


def test_connecting_to_a_silent_server_fails_in_bound_then_is_refused_without_connecting(
    silent_server: LoopbackServer,
) -> None:
    now = [0.0]
    db = Database(silent_server.url("telemetry"), "url", timeouts=FAST, clock=lambda: now[0])
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnreachableError, match="does not answer"):
            write_retrying(db, lambda conn: None, "record_attempt", sleep=lambda _: None)
        assert time.monotonic() - started < BOUND
        tried = silent_server.accepted
        assert 1 <= tried <= 2  # not one per retry (libpq may try twice: with and without SSL)

        for _ in range(3):
            with pytest.raises(StoreUnreachableError, match="not trying again"):
                write_retrying(db, lambda conn: None, "record_attempt", sleep=lambda _: None)
        assert silent_server.accepted == tried  # refused without touching the network

        now[0] = FAST.retry_interval
        with pytest.raises(StoreUnreachableError, match="does not answer"):
            write_retrying(db, lambda conn: None, "record_attempt", sleep=lambda _: None)
        assert silent_server.accepted > tried  # one new check after the interval
    finally:
        db.close()


# --- a real PostgreSQL behind a proxy that freezes --------------------------------------------------------


@pytest.mark.postgres
def test_sessions_carry_the_server_and_socket_timeouts(pg_url: str) -> None:
    store = TelemetryStore(pg_url, timeouts=StoreTimeouts(statement=7, lock=3))
    with store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar_one() == "7s"
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar_one() == "3s"
        params = conn.connection.dbapi_connection.info.get_parameters()
    assert params["keepalives"] == "1"
    assert params["tcp_user_timeout"] == "10000"
    assert params["connect_timeout"] == "5"


@pytest.mark.postgres
def test_a_store_frozen_mid_stream_costs_one_deadline_per_interval_and_recovers(
    proxy: tuple[LoopbackServer, str],
) -> None:
    server, database = proxy
    now = [0.0]
    with TelemetryStore(server.url(database), timeouts=FAST, clock=lambda: now[0]) as store:
        store.record_attempt(attempt("before"))
        server.stall()

        started = time.monotonic()
        with pytest.raises(StoreUnreachableError, match=r"got no answer within 0\.5s"):
            store.record_attempt(attempt("frozen"))
        assert time.monotonic() - started < 10 * FAST.write + BOUND

        connections = server.accepted
        for name in ("refused-1", "refused-2"):
            with pytest.raises(StoreUnreachableError, match="not trying again"):
                store.record_attempt(attempt(name))
        with pytest.raises(StoreUnreachableError, match="not trying again"):
            store.record_flow_run_start(FlowRunRecord("f1", "etl", start_time=T0))
        with pytest.raises(StoreUnreachableError, match="not trying again"):
            store.attempts()
        assert server.accepted == connections  # every refusal was made without connecting

        now[0] += FAST.retry_interval  # one check: a new connection that stalls in its handshake
        with pytest.raises(StoreUnreachableError, match="does not answer"):
            store.record_attempt(attempt("still-frozen"))
        assert server.accepted == connections + 1

        server.resume()
        with pytest.raises(StoreUnreachableError, match="not trying again"):
            store.record_attempt(attempt("too-early"))
        now[0] += FAST.retry_interval
        store.record_attempt(attempt("after"))
        store.record_attempt(attempt("after-2"))
        assert set(store.attempts()["task_run_id"]) >= {"before", "after", "after-2"}


@pytest.mark.postgres
def test_a_read_frozen_mid_stream_is_cut_off_by_the_read_deadline(proxy: tuple[LoopbackServer, str]) -> None:
    server, database = proxy
    with TelemetryStore(server.url(database), timeouts=FAST) as store:
        server.stall()
        started = time.monotonic()
        with pytest.raises(StoreUnreachableError, match=r"runs got no answer within 1s"):
            store.runs()
        assert time.monotonic() - started < BOUND


@pytest.mark.postgres
def test_a_dropped_connection_is_replaced_without_opening_the_breaker(pg_url: str, pg_server: str) -> None:
    now = [0.0]
    database = sa.engine.make_url(pg_url).database
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    kill = sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db")
    with TelemetryStore(pg_url, timeouts=FAST, clock=lambda: now[0]) as store:
        store.record_attempt(attempt("before"))
        for call in (lambda: store.record_attempt(attempt("after")), store.runs):
            with admin.connect() as conn:
                assert conn.execute(kill, {"db": database}).all()  # the store's pooled connection is gone
            call()  # tried again on a new connection, with no wait
        assert set(store.attempts()["task_run_id"]) == {"before", "after"}
    admin.dispose()


# --- NUL bytes ---------------------------------------------------------------------------------------------


def test_a_nul_byte_keeps_the_row_on_every_database(store_url: str) -> None:
    nul = "\x00"
    with TelemetryStore(store_url) as store:
        run = FlowRunRecord(
            f"run{nul}1",
            f"etl{nul}",
            T0,
            RunState.RUNNING,
            parameters={f"key{nul}": f"value{nul}"},
            features={"source": f"sap{nul}"},
        )
        store.record_flow_run_start(run)
        store.record_flow_run_end(f"run{nul}1", RunState.FAILED, T0)
        store.record_attempt(AttemptRecord(f"run{nul}1", "t1", "load", 1, T0, T0, "failure", "E", f"boom{nul}here"))
        store.record_attempts([AttemptRecord(None, "t2", f"load{nul}", 1, T0, T0, "failure", "E", nul)])
        frame = pd.DataFrame(
            {"task_run_id": ["t3"], "task_name": ["load"], "attempt": [1], "start_time": [T0], "end_time": [T0]}
            | {"outcome": ["failure"], "exception_message": [f"frame{nul}"]}
        )
        store.record_attempts_frame(frame)
        store.record_prediction(
            PredictionRecord(f"run{nul}1", f"etl{nul}", T0, 0.9, 0.5, f"m{nul}", reasons=[f"why{nul}"], source="hook")
        )

        runs = store.runs()
        attempts = store.attempts().set_index("task_run_id")
        predictions = store.predictions()

    replaced = "\ufffd"
    assert runs.loc[0, "flow_run_id"] == f"run{replaced}1"
    assert runs.loc[0, "state"] == "FAILED"  # the end found the run it started
    assert runs.loc[0, "parameters"] == {f"key{nul}": f"value{nul}"}  # JSON keeps NUL exactly, as \u0000
    assert runs.loc[0, "feature_source"] == f"sap{nul}"
    assert attempts.loc["t1", "exception_message"] == f"boom{replaced}here"
    assert attempts.loc["t2", "task_name"] == f"load{replaced}"
    assert attempts.loc["t3", "exception_message"] == f"frame{replaced}"
    assert predictions.loc[0, "model_version"] == f"m{replaced}"
    assert list(predictions.loc[0, "reasons"]) == [f"why{nul}"]
