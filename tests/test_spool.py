"""The local telemetry spool: never blocks, never loses, never writes twice (forewarn.store.spool, spool_drainer).

Process tests kill real processes with SIGKILL and share one spool directory between eight of them; the
outage test puts a loopback TCP proxy the test controls between forewarn and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from forewarn.errors import ConfigurationError, InvalidRecordError
from forewarn.orchestration.recorder import TelemetryRecorder
from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord, RunState
from forewarn.settings import load_settings
from forewarn.store import RunEnd, Spool, SpoolDrainer, TelemetryStore, spool_directory
from forewarn.store._spool_codec import ATTEMPT_FIELDS, decode_entry, encode_entry
from forewarn.store._spool_file import frame, scan
from tcp_proxy import Proxy  # tests/tcp_proxy.py, shared with bench/task_overhead.py

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def attempt(i: int, run: str = "run-1") -> AttemptRecord:
    start = T0 + timedelta(seconds=i)
    return AttemptRecord(run, f"{run}:task-{i}", "work", 1, start, start, AttemptOutcome.SUCCESS)


def drain_into(spool: Spool, store: TelemetryStore) -> list[tuple[str, object]]:
    """Drain ``spool`` through a real drainer pass into ``store``; the entries seen, in order."""
    seen: list[tuple[str, object]] = []
    drainer = SpoolDrainer(spool, lambda: store, linger=0)

    def write(entries: list[tuple[str, object]]) -> None:
        seen.extend(entries)
        drainer._write(entries)

    spool.drain(write)
    return seen


def exactly_once(store: TelemetryStore, n_attempts: int, runs: set[str]) -> None:
    attempts = store.attempts()
    assert len(attempts) == n_attempts
    assert not attempts.duplicated(["task_run_id", "attempt"]).any()
    assert set(store.runs()["flow_run_id"]) == runs


class TestSpoolFile:
    def test_entries_come_back_in_order_and_the_segment_is_emptied(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path / "s")
        spool.append("run_start", FlowRunRecord("run-1", "etl", T0))
        for i in range(5):
            spool.append("attempt", attempt(i))
        spool.append("run_end", RunEnd("run-1", RunState.COMPLETED, T0 + timedelta(minutes=1)))
        store = TelemetryStore("sqlite://")
        seen = drain_into(spool, store)
        assert [kind for kind, _ in seen] == ["run_start"] + ["attempt"] * 5 + ["run_end"]
        assert spool.pending == 0
        # emptied: the preallocated segment is all zeros again, so a replay finds nothing in it
        assert [set(p.read_bytes()) for p in (tmp_path / "s").glob("*.spool")] == [{0}]
        exactly_once(store, 5, {"run-1"})
        assert store.runs().loc[0, "state"] == "COMPLETED"

    def test_a_torn_and_a_damaged_record_are_skipped_and_logged(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A dead process's segment with a bad checksum inside and a torn tail: the intact records are replayed."""
        directory = tmp_path / "s"
        directory.mkdir(mode=0o700)
        good = [frame(encode_entry("attempt", attempt(i))) for i in range(3)]
        damaged = good[1].replace(b"task-1", b"task-X")  # same length, wrong checksum
        torn = frame(encode_entry("attempt", attempt(9)))[:-10]
        orphan = directory / "00000000000000000001-1-000001.spool"
        orphan.write_bytes(good[0] + damaged + good[2] + torn)
        store = TelemetryStore("sqlite://")
        with caplog.at_level(logging.WARNING, "forewarn.telemetry"):
            seen = drain_into(Spool(directory), store)
        assert [rec.task_run_id for _, rec in seen] == ["run-1:task-0", "run-1:task-2"]
        assert "damaged record at offset" in caplog.text and "torn last record" in caplog.text
        assert not orphan.exists()  # replayed, then deleted

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("outcome", "exploded", "attempt.outcome must be one of"),
            ("task_run_id", 7, "attempt.task_run_id must be text, not 7"),
            ("attempt", True, "attempt.attempt must be a whole number, not True"),
            ("attempt", "1", "attempt.attempt must be a whole number, not '1'"),
            ("start_time", "yesterday", "attempt.start_time must be an ISO 8601 time"),
            ("end_time", "2026-11-01T00:00:00", "attempt.end_time must carry a UTC offset"),
            ("retryable", "yes", "attempt.retryable must be true, false or null"),
            ("exception_message", ["x"], "attempt.exception_message must be text or null"),
        ],
    )
    @pytest.mark.parametrize("form", ["array", "object"])
    def test_an_entry_an_attacker_wrote_is_refused_by_name(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture, form: str, field: str, value: object, message: str
    ) -> None:
        """Every field of a spooled attempt is checked, in the array form and in forewarn 0.1's object form."""
        directory = tmp_path / "s"
        directory.mkdir(mode=0o700)
        good = attempt(2)
        if form == "array":
            bad = encode_entry("attempt", attempt(1))
            bad[1 + ATTEMPT_FIELDS.index(field)] = value  # type: ignore[index]
        else:
            bad = {"kind": "attempt", "record": {**_object_form(attempt(1)), field: value}}
        segment = directory / "00000000000000000001-1-000001.spool"
        segment.write_bytes(frame(bad) + frame(encode_entry("attempt", good)))
        with caplog.at_level(logging.WARNING, "forewarn.telemetry"):
            assert drain_into(Spool(directory), TelemetryStore("sqlite://")) == [("attempt", good)]
        assert message in caplog.text

    def test_a_crashed_segment_replays_what_it_held_and_nothing_drained_before(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Segments are preallocated and mapped: the zeroed rest is not damage, drained records are not replayed."""
        spool = Spool(tmp_path / "s")
        for i in range(5):
            spool.append("attempt", attempt(i))
        drain_into(spool, TelemetryStore("sqlite://"))
        for i in (5, 6):
            spool.append("attempt", attempt(i))
        segment = spool._segments[-1]
        segment.mapped.close()  # as if SIGKILLed: the lock goes (mmap holds a dup of the fd), the file stays
        os.close(segment.fd)
        with caplog.at_level(logging.WARNING, "forewarn.telemetry"):
            seen = drain_into(Spool(tmp_path / "s"), TelemetryStore("sqlite://"))
        assert [rec.task_run_id for _, rec in seen] == ["run-1:task-5", "run-1:task-6"]
        assert caplog.text == ""

    def test_a_full_segment_moves_appends_to_a_new_one_in_order(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path / "s", rotate_bytes=700)
        big = AttemptRecord("run-1", "big", "work", 1, T0, T0, AttemptOutcome.FAILURE, "E", "x" * 2000)
        for i in range(6):
            spool.append("attempt", attempt(i))
        spool.append("attempt", big)  # larger than a segment: gets one of its own size
        spool.append("attempt", attempt(6))
        assert len(list((tmp_path / "s").glob("*.spool"))) >= 3
        seen = drain_into(spool, TelemetryStore("sqlite://"))
        assert [rec.task_run_id for _, rec in seen] == [f"run-1:task-{i}" for i in range(6)] + ["big", "run-1:task-6"]
        assert spool.pending == 0
        spool.close()
        assert list((tmp_path / "s").glob("*.spool")) == []

    def test_an_attempt_round_trips_and_forewarn_0_1_object_form_still_reads(self) -> None:
        """An attempt is spooled as a compact array; a spool written before (objects with keys) decodes the same."""
        failed = AttemptRecord(
            None, "t", "w", 2, T0, T0 + timedelta(seconds=1), AttemptOutcome.FALLBACK_FAILURE,
            "KeyError", "bad \x00 é", True, True, "host-1",
        )  # fmt: skip
        waited = dataclasses.replace(attempt(2), wait_seconds=1.5)
        copy = dataclasses.replace(attempt(3), replica=2, provider="backup")
        live = dataclasses.replace(attempt(4), execution_id="0123456789abcdef")
        assert len(encode_entry("attempt", attempt(1))) == 13  # the optional trailing fields left out when default
        assert encode_entry("attempt", live)[13:] == [None, None, None, "0123456789abcdef"]
        for record in (attempt(1), failed, waited, copy, live, dataclasses.replace(copy, execution_id="e")):
            encoded = encode_entry("attempt", record)
            assert encoded[0] == "attempt" and 13 <= len(encoded) <= len(ATTEMPT_FIELDS) + 1
            assert decode_entry(json.loads(json.dumps(encoded))) == ("attempt", record)
            assert decode_entry({"kind": "attempt", "record": _object_form(record)}) == ("attempt", record)

    @pytest.mark.parametrize(
        ("extra", "field"),
        [
            (["1.5"], "wait_seconds"),
            ([None, True], "replica"),
            ([None, None, 7], "provider"),
            ([None, None, None, None], "execution_id"),
            ([None, None, None, 7], "execution_id"),
        ],
    )
    def test_a_trailing_field_of_the_wrong_type_is_refused_by_name(self, extra: list[object], field: str) -> None:
        """The optional fields after the twelve are checked too, and named."""
        encoded = encode_entry("attempt", attempt(1))
        with pytest.raises(InvalidRecordError, match=f"attempt.{field}"):
            decode_entry([*encoded, *extra])
        with pytest.raises(InvalidRecordError, match="12 to 16 fields"):
            decode_entry([*encoded, None, None, None, "e", None])

    def test_attempts_spooled_before_execution_ids_still_replay_as_no_execution(self, tmp_path: Path) -> None:
        """A segment written by forewarn before schema 7 (attempts of 12 to 15 fields, no execution id) is
        replayed into a version-7 store: its attempts land with execution_id '', the old identity."""
        old_form = [
            ["attempt", "f1", "t1", "load", 1, T0.isoformat(), T0.isoformat(), "failure", "ConnectionError", "m",
             True, False, "h"],
            ["attempt", "f1", "t1", "load", 2, T0.isoformat(), T0.isoformat(), "success", None, None, None, False,
             "h", 0.25, 2, "backup"],
        ]  # fmt: skip
        decoded = [decode_entry(entry) for entry in old_form]
        assert [rec.execution_id for _, rec in decoded] == ["", ""]
        assert decoded[1][1].provider == "backup" and decoded[1][1].wait_seconds == 0.25
        directory = tmp_path / "s"
        directory.mkdir(mode=0o700)
        orphan = directory / "00000000000000000001-1-000001.spool"  # a dead process's segment
        orphan.write_bytes(b"".join(frame(entry) for entry in old_form))
        store = TelemetryStore("sqlite://")
        drain_into(Spool(directory), store)
        assert not orphan.exists()
        got = store.attempts()[["attempt", "outcome", "execution_id", "replica"]]
        assert got.astype(object).where(got.notna(), None).values.tolist() == [
            [1, "failure", "", None],
            [2, "success", "", 2],
        ]

    def test_many_records_decode_in_one_call_and_a_bad_one_alone_is_skipped(self, tmp_path: Path) -> None:
        """Records are decoded together; one whose JSON is bad (but checksum right) is damage, the rest arrive."""
        fd = os.open(tmp_path / "seg", os.O_RDWR | os.O_CREAT, 0o600)
        bad_json = b"{not json"
        bad = b"FW1 %x %08x %s\n" % (len(bad_json), zlib.crc32(bad_json), bad_json)
        two = b"1, 2"  # one record that would count as two elements of the joined array
        split = b"FW1 %x %08x %s\n" % (len(two), zlib.crc32(two), two)
        data = frame({"a": 1}) + bad + frame([2]) + split + frame("x")
        os.pwrite(fd, data, 0)
        found = scan(fd, 0, len(data))
        os.close(fd)
        assert found.records == [{"a": 1}, [2], "x"]
        assert len(found.damaged) == 2 and found.end == len(data)

    @pytest.mark.parametrize("mode", [0o770, 0o702])
    def test_a_directory_others_can_write_is_refused(self, tmp_path: Path, mode: int) -> None:
        directory = tmp_path / "s"
        directory.mkdir()
        directory.chmod(mode)
        with pytest.raises(ConfigurationError, match=r"FOREWARN_SPOOL_DIR=.*not writable by group or others"):
            Spool(directory)

    def test_a_link_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "real").mkdir(mode=0o700)
        (tmp_path / "link").symlink_to(tmp_path / "real")
        with pytest.raises(ConfigurationError, match="not a link"):
            Spool(tmp_path / "link")


class TestFullSpool:
    def test_a_full_spool_drops_new_records_counts_and_logs_once(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Beyond max_bytes each append returns False at once, is counted, and only the first is logged."""
        one = len(frame(encode_entry("attempt", attempt(0))))
        spool = Spool(tmp_path / "s", max_bytes=one * 10)
        with caplog.at_level(logging.WARNING, "forewarn.telemetry"):
            accepted = [spool.append("attempt", attempt(i)) for i in range(25)]
        assert accepted == [True] * 10 + [False] * 15
        assert spool.dropped == 15 and spool.pending == 10
        assert caplog.text.count("is full") == 1
        store = TelemetryStore("sqlite://")
        drain_into(spool, store)
        assert spool.append("attempt", attempt(99))  # room again once the store holds the backlog
        assert len(store.attempts()) == 10

    def test_an_entry_the_store_refuses_does_not_block_the_rest(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The end of a run whose start was dropped is refused; it is dropped and later entries still arrive."""
        spool = Spool(tmp_path / "s")
        spool.append("run_end", RunEnd("never-started", RunState.FAILED, T0))
        spool.append("attempt", attempt(1))
        store = TelemetryStore("sqlite://")
        drainer = SpoolDrainer(spool, lambda: store, linger=0)
        with caplog.at_level(logging.WARNING, "forewarn.telemetry"):
            spool.drain(drainer._write)
        assert drainer.poisoned == 1 and "never-started" in caplog.text
        assert len(store.attempts()) == 1


class TestRecorder:
    def test_records_wait_while_the_store_is_down_then_arrive_exactly_once(self, tmp_path: Path) -> None:
        """A flow that starts while the database is down still gets its run row, and no attempt twice."""
        store = TelemetryStore(f"sqlite:///{tmp_path / 't.db'}")
        down = threading.Event()
        down.set()

        def open_store() -> TelemetryStore:
            if down.is_set():
                raise ConnectionRefusedError("the database is down")
            return store

        recorder = TelemetryRecorder(store.url, spool_dir=tmp_path / "spool")
        recorder._drainer = SpoolDrainer(
            Spool(tmp_path / "spool"), open_store, on_error=lambda exc: recorder._note_error("x", exc), linger=0
        )
        started = time.perf_counter()
        assert recorder.flow_run_started(FlowRunRecord("run-1", "etl", T0))
        for i in range(50):
            assert recorder.attempt(attempt(i))
        assert recorder.flow_run_ended("run-1", RunState.COMPLETED, T0 + timedelta(minutes=1))
        assert time.perf_counter() - started < 1.0  # 52 records, none waited for the database
        assert not recorder.flush(0.2) and recorder.pending == 52 and recorder.errors >= 1
        down.clear()
        assert recorder.flush(10)
        exactly_once(store, 50, {"run-1"})
        assert store.runs().loc[0, "state"] == "COMPLETED"

    def test_reads_in_the_same_process_see_what_was_spooled(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 't.db'}"
        recorder = TelemetryRecorder(url, spool_dir=tmp_path / "spool")
        recorder.attempt(attempt(1))
        assert len(TelemetryStore(url).attempts()) == 1

    def test_spool_settings_are_checked(self) -> None:
        assert load_settings(spool_dir="").spool_dir is None
        with pytest.raises(ConfigurationError, match=r"FOREWARN_SPOOL_DIR.*absolute"):
            load_settings(spool_dir="relative/spool")
        with pytest.raises(ConfigurationError, match="FOREWARN_SPOOL_MAX_MB"):
            load_settings(spool_max_mb=float("inf"))


def _object_form(record: AttemptRecord) -> dict[str, object]:
    """An attempt as forewarn 0.1 spooled it: an object with every field by name."""
    values = dataclasses.asdict(record)
    values.update(start_time=record.start_time.isoformat(), end_time=record.end_time.isoformat())
    values["outcome"] = record.outcome.value
    return values


# -- real processes ------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from datetime import datetime, timedelta, timezone
    from forewarn.orchestration.recorder import TelemetryRecorder
    from forewarn.records import AttemptOutcome, AttemptRecord, FlowRunRecord, RunState
    from forewarn.store import Spool, TelemetryStore, spool_directory

    url, spool_dir, run, n, how = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    def attempt(i):
        start = t0 + timedelta(seconds=i)
        return AttemptRecord(run, f"{run}:task-{i}", "work", 1, start, start, AttemptOutcome.SUCCESS)
    if how == "spool-then-kill":      # spooled, never drained: the next process must replay it
        spool = Spool(spool_directory(spool_dir, url))
        spool.append("run_start", FlowRunRecord(run, "etl", t0))
        for i in range(n):
            spool.append("attempt", attempt(i))
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "drain-slowly":         # spooled, then drained in small transactions until killed
        spool = Spool(spool_directory(spool_dir, url))
        spool.append("run_start", FlowRunRecord(run, "etl", t0))
        for i in range(n):
            spool.append("attempt", attempt(i))
        store = TelemetryStore(url)
        def write(entries):
            for k in range(0, len(entries), 20):
                kinds = {kind for kind, _ in entries[k:k + 20]}
                recs = [rec for _, rec in entries[k:k + 20]]
                store.record_attempts(recs) if kinds == {"attempt"} else [
                    store.record_flow_run_start(r) if kind == "run_start" else store.record_attempt(r)
                    for kind, r in entries[k:k + 20]]
                print("WROTE", flush=True)
                time.sleep(0.01)
        spool.drain(write)
        print("DRAINED", flush=True)
        time.sleep(60)
    if how == "record":               # the recorder: replays what it finds, records its own, flushes at exit
        recorder = TelemetryRecorder(url, spool_dir=spool_dir, exit_seconds=30)
        recorder.flow_run_started(FlowRunRecord(run, "etl", t0))
        for i in range(n):
            recorder.attempt(attempt(i))
        recorder.flow_run_ended(run, RunState.COMPLETED, t0 + timedelta(hours=1))
        print("FLUSHED" if recorder.flush(60) else "NOT FLUSHED", flush=True)
    """
)


def child(url: str, spool_dir: Path, run: str, n: int, how: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(spool_dir), run, str(n), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
class TestProcesses:
    def test_a_crashed_process_is_replayed_by_the_next(self, sqlite_url: str, tmp_path: Path) -> None:
        crashed = child(sqlite_url, tmp_path / "spool", "dead", 200, "spool-then-kill")
        crashed.communicate(timeout=60)
        assert crashed.returncode == -signal.SIGKILL
        assert TelemetryRecorder(sqlite_url, spool_dir=tmp_path / "spool").flush(30)
        exactly_once(TelemetryStore(sqlite_url), 200, {"dead"})
        assert not list(spool_directory(tmp_path / "spool", sqlite_url).glob(f"*-{crashed.pid}-*"))

    def test_a_process_that_dies_later_is_replayed_by_a_live_ones_next_pass(
        self, sqlite_url: str, tmp_path: Path
    ) -> None:
        """A Dask worker outlives another: its drainer, past its first pass, takes the dead one's segment as
        soon as it records again, without waiting for a new process to open the spool."""
        recorder = TelemetryRecorder(sqlite_url, spool_dir=tmp_path / "spool")
        assert recorder.attempt(attempt(0, "live"))
        assert recorder.flush(30)  # the first pass, and its look for orphans, are done
        crashed = child(sqlite_url, tmp_path / "spool", "dead", 50, "spool-then-kill")
        crashed.communicate(timeout=60)
        assert crashed.returncode == -signal.SIGKILL
        assert recorder.attempt(attempt(1, "live"))
        assert recorder.flush(30)
        deadline = time.monotonic() + 10
        while len(TelemetryStore(sqlite_url).attempts()) < 52 and time.monotonic() < deadline:
            time.sleep(0.05)  # replayed in the pass that wrote attempt 1, or the next
        exactly_once(TelemetryStore(sqlite_url), 52, {"dead"})  # "live" recorded attempts only
        assert not list(spool_directory(tmp_path / "spool", sqlite_url).glob(f"*-{crashed.pid}-*"))

    def test_sigkill_during_a_drain_loses_nothing_and_writes_nothing_twice(
        self, sqlite_url: str, tmp_path: Path
    ) -> None:
        TelemetryStore(sqlite_url).close()
        draining = child(sqlite_url, tmp_path / "spool", "half", 400, "drain-slowly")
        assert draining.stdout is not None
        for _ in range(5):  # a few transactions are in the store, most are not
            assert draining.stdout.readline().strip() == "WROTE"
        draining.send_signal(signal.SIGKILL)
        draining.wait(10)
        assert 0 < len(TelemetryStore(sqlite_url).attempts()) < 400
        assert TelemetryRecorder(sqlite_url, spool_dir=tmp_path / "spool").flush(30)
        exactly_once(TelemetryStore(sqlite_url), 400, {"half"})

    def test_eight_processes_share_one_spool_directory(self, sqlite_url: str, tmp_path: Path) -> None:
        """Eight crash with a full spool; eight more start at once, race to replay them and record their own."""
        TelemetryStore(sqlite_url).close()
        crashed = [child(sqlite_url, tmp_path / "spool", f"dead-{i}", 100, "spool-then-kill") for i in range(8)]
        for process in crashed:
            process.communicate(timeout=120)
        live = [child(sqlite_url, tmp_path / "spool", f"live-{i}", 100, "record") for i in range(8)]
        outputs = [process.communicate(timeout=240) for process in live]
        for process, (stdout, stderr) in zip(live, outputs, strict=True):
            assert process.returncode == 0, stderr[-2000:]
            assert "FLUSHED" in stdout, stderr[-2000:]
        runs = {f"dead-{i}" for i in range(8)} | {f"live-{i}" for i in range(8)}
        store = TelemetryStore(sqlite_url)
        exactly_once(store, 1600, runs)
        assert set(store.runs(state="COMPLETED")["flow_run_id"]) == {f"live-{i}" for i in range(8)}
        assert not list(spool_directory(tmp_path / "spool", sqlite_url).glob("*.spool"))


# -- PostgreSQL behind a proxy the test controls ----------------------------------------------------------


@pytest.fixture
def proxy(pg_url: str) -> Iterator[tuple[Proxy, str]]:
    import sqlalchemy as sa

    url = sa.engine.make_url(pg_url)
    server = Proxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        yield server, url.set(host="127.0.0.1", port=server.port).render_as_string(hide_password=False)
    finally:
        server.close()


@pytest.mark.slow
@pytest.mark.postgres
class TestPostgresOutage:
    def test_refused_and_stalled_database_mid_flow_every_record_arrives_once(
        self, proxy: tuple[Proxy, str], pg_url: str, tmp_path: Path
    ) -> None:
        server, via_proxy = proxy
        TelemetryStore(pg_url).close()  # the schema exists; the outage starts before the flow
        recorder = TelemetryRecorder(via_proxy, spool_dir=tmp_path / "spool")
        slowest = 0.0

        def record(i: int) -> None:
            nonlocal slowest
            started = time.perf_counter()
            assert recorder.attempt(attempt(i))
            slowest = max(slowest, time.perf_counter() - started)

        server.refuse()  # the flow starts while the database is down
        recorder.flow_run_started(FlowRunRecord("outage", "etl", T0))
        for i in range(0, 30):
            record(i)
        server.resume()
        for i in range(30, 60):
            record(i)
        time.sleep(0.3)  # let the drainer reconnect and take pooled connections, then freeze them
        server.stall()
        for i in range(60, 90):
            record(i)
        server.refuse()
        for i in range(90, 120):
            record(i)
        recorder.flow_run_ended("outage", RunState.FAILED, T0 + timedelta(minutes=5))
        server.resume()
        assert recorder.flush(60), f"{recorder.pending} records still spooled"
        assert slowest < 0.05  # no record waited for the database
        store = TelemetryStore(pg_url)
        exactly_once(store, 120, {"outage"})
        assert store.runs().loc[0, "state"] == "FAILED"
