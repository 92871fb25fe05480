"""Importing run and attempt histories: the formats, line-numbered validation, all-or-nothing, rejects, idempotence."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.errors import ConfigurationError, ImportValidationError
from forewarn.history.importer import ImportResult, check_runs, import_attempts, import_runs, read_history_csv
from forewarn.history.simulate import history_to_runs_frame, simulate_history, simulated_attempts
from forewarn.history.validation import ATTEMPT_STATES, RUN_STATES, task_run_key
from forewarn.store import TelemetryStore

RUNS_HEADER = "run_id,flow_name,scheduled_start,state,start_time,end_time,parameters"
ATTEMPTS_HEADER = "run_id,task_name,attempt,start_time,end_time,state,exception_type"
GOOD_RUN = "r1,etl,2026-01-01T00:00:00Z,COMPLETED,2026-01-01T00:00:02Z,2026-01-01T00:05:00Z,"
GOOD_ATTEMPT = "r1,load,1,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,COMPLETED,"
RUN_STATE_NAMES = "COMPLETED, SUCCESS, FAILED, CRASHED, TIMEDOUT, CANCELLED, RUNNING or SCHEDULED"
ATTEMPT_STATE_NAMES = "COMPLETED, SUCCESS, FAILED, FAILURE, TIMEDOUT, TIMEOUT, FALLBACK or FALLBACK_FAILURE"

runner = CliRunner()


def csv_file(tmp_path: Path, *lines: str, name: str = "history.csv") -> Path:
    """A CSV file made of ``lines`` (line 1 is the header)."""
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def store(sqlite_url: str) -> Any:
    with TelemetryStore(sqlite_url) as opened:
        yield opened


@pytest.fixture
def any_store(store_url: str) -> Any:
    """A store on SQLite and on PostgreSQL."""
    with TelemetryStore(store_url) as opened:
        yield opened


def problems(path: Path, store: TelemetryStore, importer: Any = import_runs) -> list[tuple[int, str]]:
    """The (line, reason) pairs of a rejected file, after checking nothing was written."""
    with pytest.raises(ImportValidationError) as info:
        importer(store, path)
    assert info.value.path == path
    assert store.runs().empty and store.attempts().empty
    return info.value.problems


class TestRunValidation:
    """Every invalid run row is reported with its line number (header = line 1) and a reason that teaches."""

    @pytest.mark.parametrize(
        ("row", "reason"),
        [
            (
                "r2,etl,tomorrow,FAILED,,,",
                "scheduled_start 'tomorrow' is not an ISO-8601 time; write it like 2026-01-01T00:00:00Z",
            ),
            (
                "r2,etl,2026-01-01T01:00:00,FAILED,,,",
                "scheduled_start '2026-01-01T01:00:00' has no UTC offset; write it like 2026-01-01T01:00:00Z "
                "(or pass assume_utc=True)",
            ),
            (
                "r2,etl,2026-01-01T01:00:00Z,FAILED,2026-01-01T01:00:01Z,13:00,",
                "end_time '13:00' is not an ISO-8601 time; write it like 2026-01-01T00:00:00Z",
            ),
            ("r2,etl,2026-01-01T01:00:00Z,SKIPPED,,,", f"state 'SKIPPED' is not a run state; use {RUN_STATE_NAMES}"),
            ("r2,etl,2026-01-01T01:00:00Z,,,,", f"state is empty; give the run's final state: {RUN_STATE_NAMES}"),
            (
                "r2,etl,2026-01-01T01:00:00Z,FAILED,,,{batch: 1}",
                "parameters is not valid JSON (Expecting property name enclosed in double quotes at character 1); "
                'write an object like {"batch_size": 500}',
            ),
            (
                'r2,etl,2026-01-01T01:00:00Z,FAILED,,,"[1, 2]"',
                'parameters must be a JSON object, not list; write it like {"batch_size": 500}',
            ),
            (
                "r2,etl,2026-01-01T01:00:00Z,FAILED,2026-01-01T01:10:00Z,2026-01-01T01:05:00Z,",
                "end_time 2026-01-01T01:05:00Z is before start_time 2026-01-01T01:10:00Z",
            ),
            (
                "r2,etl,2026-01-01T01:00:00Z,RUNNING,2026-01-01T01:00:00Z,2026-01-01T01:05:00Z,",
                "end_time is set but state is RUNNING; give the final state (COMPLETED, FAILED, ...) or leave "
                "end_time empty",
            ),
            (",etl,2026-01-01T01:00:00Z,FAILED,,,", "run_id is empty"),
            ("r2,,2026-01-01T01:00:00Z,FAILED,,,", "flow_name is empty"),
            (
                "r2,etl,,FAILED,,,",
                "scheduled_start is empty; every run needs the time it was scheduled for, e.g. 2026-01-01T00:00:00Z",
            ),
            (
                "x" * 256 + ",etl,2026-01-01T01:00:00Z,FAILED,,,",
                "run_id is 256 characters long; the store keeps ids of at most 255",
            ),
        ],
        ids=[
            "unparseable-time",
            "no-offset",
            "unparseable-end",
            "unknown-state",
            "empty-state",
            "bad-json",
            "json-not-object",
            "end-before-start",
            "running-with-end",
            "empty-run-id",
            "empty-flow-name",
            "empty-scheduled-start",
            "long-run-id",
        ],
    )
    def test_each_problem_names_its_line(self, tmp_path: Path, store: TelemetryStore, row: str, reason: str) -> None:
        """The bad row is line 3 (after the header and one good row); nothing is written."""
        path = csv_file(tmp_path, RUNS_HEADER, GOOD_RUN, row)
        assert problems(path, store) == [(3, reason)]

    def test_all_problems_of_all_lines_in_line_order(self, tmp_path: Path, store: TelemetryStore) -> None:
        """One row may have several problems; every line is reported, in order; blank lines keep the count."""
        path = csv_file(
            tmp_path,
            RUNS_HEADER,
            ",,2026-01-01T00:00:00Z,DONE,,,",
            "",
            GOOD_RUN,
            "r4,etl,soon,FAILED,,,",
        )
        assert problems(path, store) == [
            (2, "run_id is empty"),
            (2, "flow_name is empty"),
            (2, f"state 'DONE' is not a run state; use {RUN_STATE_NAMES}"),
            (5, "scheduled_start 'soon' is not an ISO-8601 time; write it like 2026-01-01T00:00:00Z"),
        ]

    def test_missing_required_column_rejects_the_file(self, tmp_path: Path, store: TelemetryStore) -> None:
        """The header names the missing column and lists the ones it found."""
        path = csv_file(tmp_path, "run_id,flow_name,state", "r1,etl,COMPLETED")
        assert problems(path, store) == [
            (
                1,
                "missing required column(s) scheduled_start; the header has run_id, flow_name, state and needs "
                "run_id, flow_name, scheduled_start, state",
            )
        ]

    def test_unknown_column_rejects_the_file(self, tmp_path: Path, store: TelemetryStore) -> None:
        """A column the format does not know is a header problem (a typo would otherwise lose data)."""
        path = csv_file(tmp_path, RUNS_HEADER + ",end_tme", GOOD_RUN + ",x")
        assert problems(path, store) == [
            (
                1,
                "unknown column(s) end_tme; the format has run_id, flow_name, scheduled_start, state, deployment, "
                "start_time, end_time, parameters, flow_version, tags: rename a pre-run attribute to feature_<name> "
                "(e.g. feature_end_tme) or drop the column",
            )
        ]

    def test_a_row_that_cannot_be_split_rejects_the_file(self, tmp_path: Path, store: TelemetryStore) -> None:
        """More cells than the header cannot be mapped to columns, so even --skip-invalid cannot keep the row."""
        path = csv_file(tmp_path, RUNS_HEADER, GOOD_RUN, GOOD_RUN + ",extra,cells")
        assert problems(path, store) == [
            (
                3,
                "the row has 9 cells but the header has 7 columns; quote cells that contain commas",
            )
        ]
        with pytest.raises(ImportValidationError):
            import_runs(store, path, skip_invalid=tmp_path / "rejects.csv")

    def test_empty_file(self, tmp_path: Path, store: TelemetryStore) -> None:
        """An empty file has no header."""
        path = tmp_path / "empty.csv"
        path.write_text("")
        assert problems(path, store) == [(1, "the file is empty; the first line must be the header")]

    def test_repeated_run_id_with_other_values_rejects_every_copy(self, tmp_path: Path, store: TelemetryStore) -> None:
        """The file does not say which of two different rows is right, so neither is imported."""
        path = csv_file(
            tmp_path,
            RUNS_HEADER,
            GOOD_RUN,
            "r2,etl,2026-01-01T01:00:00Z,FAILED,,,",
            "r2,etl,2026-01-01T01:00:00Z,COMPLETED,,,",
        )
        assert problems(path, store) == [
            (3, "run_id 'r2' is also on line(s) 4 with other values; keep only the right row"),
            (4, "run_id 'r2' is also on line(s) 3 with other values; keep only the right row"),
        ]

    def test_identical_repeats_are_one_run(self, tmp_path: Path, store: TelemetryStore) -> None:
        """The same row twice (even spelled differently: case, offset) is one run, not a conflict."""
        path = csv_file(
            tmp_path,
            RUNS_HEADER,
            GOOD_RUN,
            GOOD_RUN,
            "r1,etl,2026-01-01T01:00:00+01:00,completed,2026-01-01T00:00:02Z,2026-01-01T00:05:00Z,",
        )
        result = import_runs(store, path)
        assert (result.rows_read, result.imported, result.rejected) == (3, 3, 0)
        assert store.runs()["flow_run_id"].tolist() == ["r1"]

    @pytest.mark.parametrize(("given", "stored"), [(k.lower(), v.value) for k, v in RUN_STATES.items()])
    def test_states_are_case_insensitive(self, tmp_path: Path, store: TelemetryStore, given: str, stored: str) -> None:
        """SUCCESS is COMPLETED; failure states, CANCELLED, RUNNING and SCHEDULED are kept as they are."""
        path = csv_file(tmp_path, "run_id,flow_name,scheduled_start,state", f"r1,etl,2026-01-01T00:00:00Z,{given}")
        import_runs(store, path)
        assert store.runs()["state"].tolist() == [stored]

    def test_assume_utc_reads_times_without_offset_as_utc(self, tmp_path: Path, store: TelemetryStore) -> None:
        """assume_utc=True accepts exports that write UTC without saying so."""
        path = csv_file(tmp_path, "run_id,flow_name,scheduled_start,state", "r1,etl,2026-01-01 06:30,FAILED")
        import_runs(store, path, assume_utc=True)
        assert store.runs()["scheduled_start"].tolist() == [pd.Timestamp("2026-01-01 06:30", tz="UTC")]


class TestAttemptValidation:
    """Attempt rows are checked like run rows, with their own rules."""

    @pytest.mark.parametrize(
        ("row", "reason"),
        [
            (
                "r1,load,1.5,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,FAILED,",
                "attempt '1.5' is not a whole number >= 1",
            ),
            (
                "r1,load,first,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,FAILED,",
                "attempt 'first' is not a whole number >= 1",
            ),
            ("r1,load,0,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,FAILED,", "attempt '0' is not a whole number >= 1"),
            (
                "r1,load,,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,FAILED,",
                "attempt is empty; number the attempts of a task run 1, 2, ...",
            ),
            (
                "r1,load,2,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,CRASHED,",
                f"state 'CRASHED' is not an attempt state; use {ATTEMPT_STATE_NAMES}",
            ),
            (
                "r1,load,2,2026-01-01T00:00:09Z,2026-01-01T00:00:05Z,FAILED,",
                "end_time 2026-01-01T00:00:05Z is before start_time 2026-01-01T00:00:09Z",
            ),
            ("r1,load,2,,2026-01-01T00:00:05Z,FAILED,", "start_time is empty; write it like 2026-01-01T00:00:00Z"),
            (
                "r1,load,2,2026-01-01T00:00:00,2026-01-01T00:00:05Z,FAILED,",
                "start_time '2026-01-01T00:00:00' has no UTC offset; write it like 2026-01-01T00:00:00Z "
                "(or pass assume_utc=True)",
            ),
            ("r1,,2,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,FAILED,", "task_name is empty"),
            (
                "r1,load,1,2026-01-01T00:00:00Z,2026-01-01T00:00:06Z,COMPLETED,",
                "attempt 1 of task 'load' in run 'r1' is also on line(s) 2 with other values; keep only the right row",
            ),
        ],
        ids=[
            "fraction",
            "word",
            "zero",
            "empty-attempt",
            "unknown-state",
            "end-before-start",
            "empty-start",
            "no-offset",
            "empty-task",
            "conflicting-repeat",
        ],
    )
    def test_each_problem_names_its_line(self, tmp_path: Path, store: TelemetryStore, row: str, reason: str) -> None:
        """The bad row is line 3; nothing is written."""
        path = csv_file(tmp_path, ATTEMPTS_HEADER, GOOD_ATTEMPT, row)
        found = problems(path, store, import_attempts)
        assert found[-1] == (3, reason)
        assert len(found) == (2 if "also on line" in reason else 1)

    def test_missing_column(self, tmp_path: Path, store: TelemetryStore) -> None:
        """exception_type is optional; the other columns are required."""
        path = csv_file(tmp_path, "run_id,task_name,start_time,end_time,state", "r1,load,,,")
        assert problems(path, store, import_attempts) == [
            (
                1,
                "missing required column(s) attempt; the header has run_id, task_name, start_time, end_time, state "
                "and needs run_id, task_name, attempt, start_time, end_time, state",
            )
        ]


class TestAllOrNothing:
    """A rejected file, or a write that fails half-way, leaves the store exactly as it was."""

    def test_a_bad_row_leaves_the_store_unchanged(self, tmp_path: Path, any_store: TelemetryStore) -> None:
        """Runs imported before stay as they were; none of the new file's good rows are written."""
        import_runs(any_store, csv_file(tmp_path, RUNS_HEADER, GOOD_RUN, name="first.csv"))
        before = any_store.runs()
        changed = GOOD_RUN.replace("COMPLETED", "FAILED")
        bad = csv_file(tmp_path, RUNS_HEADER, changed, "r2,etl,2026-01-01T01:00:00Z,FAILED,,,", "r3,etl,x,FAILED,,,")
        with pytest.raises(ImportValidationError) as info:
            import_runs(any_store, bad)
        assert [line for line, _ in info.value.problems] == [4]
        pd.testing.assert_frame_equal(any_store.runs(), before)

    def test_a_failure_while_writing_writes_nothing(self, tmp_path: Path, any_store: TelemetryStore) -> None:
        """The valid rows go in one transaction: an error after the first chunk rolls the others back."""
        lines = [f"r{i},etl,2026-01-01T00:{i:02d}:00Z,COMPLETED,,," for i in range(10)]
        path = csv_file(tmp_path, RUNS_HEADER, *lines)

        def progress(done: int, total: int) -> None:
            if done >= 4:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            import_runs(any_store, path, chunk_rows=4, progress=progress)
        assert any_store.runs().empty


class TestSkipInvalid:
    """With skip_invalid, the valid rows are imported and the others written to a rejects file."""

    def test_rejects_file_holds_the_rows_as_read_with_line_and_reason(
        self, tmp_path: Path, store: TelemetryStore
    ) -> None:
        """Cells are written back as they were read, then the line and every reason of that line."""
        path = csv_file(
            tmp_path,
            RUNS_HEADER + ",feature_rows",
            GOOD_RUN + ",10",
            ',,2026-01-01T01:00:00Z,DONE,,,"{""a"": 1}",20',
            "",
            "r3,etl,2026-01-01T02:00:00,FAILED,,,,x",
            "r4,etl,2026-01-01T03:00:00Z,success,,,,30",
        )
        rejects = tmp_path / "rejects.csv"
        result = import_runs(store, path, skip_invalid=rejects)
        assert result == ImportResult(path, 4, 2, 2, rejects, result.seconds)
        assert rejects.read_text().splitlines() == [
            RUNS_HEADER + ",feature_rows,line,reason",
            ',,2026-01-01T01:00:00Z,DONE,,,"{""a"": 1}",20,3,"run_id is empty | flow_name is empty | state \'DONE\' '
            f'is not a run state; use {RUN_STATE_NAMES}"',
            "r3,etl,2026-01-01T02:00:00,FAILED,,,,x,5,scheduled_start '2026-01-01T02:00:00' has no UTC offset; "
            "write it like 2026-01-01T02:00:00Z (or pass assume_utc=True)",
        ]
        runs = store.runs()
        assert runs["flow_run_id"].tolist() == ["r1", "r4"]
        assert runs["feature_rows"].tolist() == [10, 30]  # the rejected row's "x" does not make the column text
        assert str(runs["feature_rows"].dtype) == "int64"

    def test_rejects_file_is_written_even_when_nothing_was_rejected(
        self, tmp_path: Path, store: TelemetryStore
    ) -> None:
        """A header-only rejects file means every row was imported (no stale file from an earlier run)."""
        rejects = tmp_path / "rejects.csv"
        rejects.write_text("stale\n")
        result = import_runs(store, csv_file(tmp_path, RUNS_HEADER, GOOD_RUN), skip_invalid=rejects)
        assert (result.imported, result.rejected) == (1, 0)
        assert rejects.read_text() == RUNS_HEADER + ",line,reason\n"

    def test_header_problems_are_never_skipped(self, tmp_path: Path, store: TelemetryStore) -> None:
        """Without the required columns no row can be read, so the file is rejected whole."""
        path = csv_file(tmp_path, "run_id,flow_name,state", "r1,etl,COMPLETED")
        with pytest.raises(ImportValidationError, match="missing required column"):
            import_runs(store, path, skip_invalid=tmp_path / "rejects.csv")
        assert not (tmp_path / "rejects.csv").exists()

    def test_the_rejects_file_cannot_be_the_imported_file(self, tmp_path: Path, store: TelemetryStore) -> None:
        """Writing the rejects over the history would destroy it."""
        path = csv_file(tmp_path, RUNS_HEADER, GOOD_RUN)
        with pytest.raises(
            ConfigurationError, match=r"a file other than the one imported .*, e\.g\. history\.rejects\.csv"
        ):
            import_runs(store, path, skip_invalid=path)
        assert store.runs().empty

    def test_an_unwritable_rejects_file_writes_nothing(self, tmp_path: Path, store: TelemetryStore) -> None:
        """The rejects file is written before the store, so a bad path imports nothing."""
        path = csv_file(tmp_path, RUNS_HEADER, GOOD_RUN)
        with pytest.raises(ConfigurationError, match=r"skip_invalid=.* is invalid: expected a file path that can be"):
            import_runs(store, path, skip_invalid=tmp_path / "missing" / "rejects.csv")
        assert store.runs().empty

    def test_attempt_rejects(self, tmp_path: Path, store: TelemetryStore) -> None:
        """Attempts get a rejects file of the same shape."""
        path = csv_file(
            tmp_path, ATTEMPTS_HEADER, GOOD_ATTEMPT, "r1,load,x,2026-01-01T00:00:06Z,2026-01-01T00:00:07Z,FAILED,E"
        )
        rejects = tmp_path / "rejects.csv"
        assert import_attempts(store, path, skip_invalid=rejects).rejected == 1
        assert rejects.read_text().splitlines()[1:] == [
            "r1,load,x,2026-01-01T00:00:06Z,2026-01-01T00:00:07Z,FAILED,E,3,attempt 'x' is not a whole number >= 1"
        ]
        assert store.attempts()["attempt"].tolist() == [1]


class TestIdempotence:
    """Importing the same history twice gives the same rows; a corrected file updates them."""

    def test_importing_twice_changes_nothing(self, tmp_path: Path, any_store: TelemetryStore) -> None:
        """Runs are upserted on run_id and attempts on (run_id:task_name, attempt)."""
        runs = csv_file(tmp_path, RUNS_HEADER + ",feature_rows", GOOD_RUN + ",5", name="runs.csv")
        attempts = csv_file(tmp_path, ATTEMPTS_HEADER, GOOD_ATTEMPT, name="attempts.csv")
        import_runs(any_store, runs)
        import_attempts(any_store, attempts)
        first_runs, first_attempts = any_store.runs(), any_store.attempts()
        import_runs(any_store, runs)
        import_attempts(any_store, attempts)
        pd.testing.assert_frame_equal(any_store.runs(), first_runs)
        pd.testing.assert_frame_equal(any_store.attempts(), first_attempts)
        assert first_runs["source"].tolist() == ["import"]

    def test_a_corrected_file_overwrites(self, tmp_path: Path, store: TelemetryStore) -> None:
        """The last import of a run_id wins, features included."""
        import_runs(store, csv_file(tmp_path, RUNS_HEADER + ",feature_rows", GOOD_RUN + ",5"))
        fixed = GOOD_RUN.replace("COMPLETED", "CRASHED")
        import_runs(store, csv_file(tmp_path, RUNS_HEADER + ",feature_src", fixed + ",sap"))
        runs = store.runs()
        assert runs["state"].tolist() == ["CRASHED"]
        assert runs["features"].tolist() == [{"src": "sap"}]


class TestFeaturesRoundTrip:
    """feature_<name> columns come back from runs() as feature_<name> columns, numbers as numbers."""

    def test_dtypes(self, tmp_path: Path, any_store: TelemetryStore) -> None:
        """Whole numbers in every row: int64; with a gap or a fraction: float64; anything else: text."""
        path = csv_file(
            tmp_path,
            "run_id,flow_name,scheduled_start,state,feature_rows,feature_ratio,feature_source,feature_batch",
            "r1,etl,2026-01-01T00:00:00Z,COMPLETED,1200,0.5,sap,7",
            "r2,etl,2026-01-01T01:00:00Z,FAILED,90000,,,7b",
            "r3,etl,2026-01-01T02:00:00Z,COMPLETED,15, 2 ,sftp,8",
        )
        import_runs(any_store, path)
        runs = any_store.runs()
        assert list(runs.columns[-4:]) == ["feature_batch", "feature_ratio", "feature_rows", "feature_source"]
        assert str(runs["feature_rows"].dtype) == "int64" and runs["feature_rows"].tolist() == [1200, 90000, 15]
        assert str(runs["feature_ratio"].dtype) == "float64"
        assert runs["feature_ratio"].tolist()[::2] == [0.5, 2.0] and pd.isna(runs["feature_ratio"][1])
        assert runs["feature_source"].tolist() == ["sap", None, "sftp"]
        assert runs["feature_batch"].tolist() == ["7", "7b", "8"]  # one text cell makes the column text
        assert runs["features"].tolist()[1] == {"rows": 90000, "batch": "7b"}

    def test_simulated_history_parses_like_the_simulator_reads_it(self, tmp_path: Path) -> None:
        """On a simulated history, check_runs gives the same runs frame as simulate.history_to_runs_frame."""
        history = simulate_history(1_500, seed=5)
        path = tmp_path / "sim.csv"
        history.to_csv(path, index=False)
        mine = check_runs(read_history_csv(path)).frame
        theirs = history_to_runs_frame(pd.read_csv(path))
        pd.testing.assert_frame_equal(mine, theirs, check_dtype=False)
        assert str(mine["feature_input_rows"].dtype) == "int64"


class TestSimulatedImport:
    """A simulated history and its attempts import whole, on both backends."""

    def test_runs_and_attempts(self, tmp_path: Path, any_store: TelemetryStore) -> None:
        """Every row is imported; attempts join their runs' flow_name; outcomes and fallbacks map."""
        history = simulate_history(800, seed=2, include_cause=True)
        attempts = simulated_attempts(history, seed=2)
        history.drop(columns="failure_cause").to_csv(tmp_path / "runs.csv", index=False)
        attempts.to_csv(tmp_path / "attempts.csv", index=False)
        seen: list[tuple[int, int]] = []
        result = import_runs(any_store, tmp_path / "runs.csv", progress=lambda d, t: seen.append((d, t)))
        assert (result.rows_read, result.imported, result.rejected) == (800, 800, 0)
        assert seen[0] == (0, 800) and seen[-1] == (800, 800)
        assert import_attempts(any_store, tmp_path / "attempts.csv").imported == len(attempts)
        stored = any_store.attempts()
        assert len(stored) == len(attempts) and stored["flow_name"].notna().all()
        keys = [task_run_key(r, t) for r, t in zip(stored["flow_run_id"], stored["task_name"], strict=True)]
        assert stored["task_run_id"].tolist() == keys
        assert stored["used_fallback"].tolist() == stored["outcome"].isin(["fallback", "fallback_failure"]).tolist()
        assert sorted(any_store.runs()["state"].unique()) == sorted(history["state"].unique())


class TestAttemptStates:
    @pytest.mark.parametrize(("given", "outcome"), [(k.title(), v.value) for k, v in ATTEMPT_STATES.items()])
    def test_state_to_outcome(self, tmp_path: Path, store: TelemetryStore, given: str, outcome: str) -> None:
        """Prefect-style states and forewarn's outcome names both map to an outcome, in any case."""
        row = f"r1,load,1,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,{given},"
        import_attempts(store, csv_file(tmp_path, ATTEMPTS_HEADER, row))
        frame = store.attempts()
        assert frame["outcome"].tolist() == [outcome]
        assert frame["used_fallback"].tolist() == [outcome.startswith("fallback")]
        assert frame["task_run_id"].tolist() == ["2:r1:load"]


class TestCli:
    """forewarn simulate, import-runs and import-attempts."""

    def test_simulate_then_import(self, tmp_path: Path, sqlite_url: str) -> None:
        """The simulated files import whole, each with a one-line summary."""
        runs, attempts = tmp_path / "h.csv", tmp_path / "a.csv"
        out = runner.invoke(app, ["simulate", "--runs", "300", "--out", str(runs), "--attempts-out", str(attempts)])
        assert out.exit_code == 0, out.output
        assert "wrote 300 simulated runs from " in out.output and f" UTC to {runs}" in out.output
        assert f"next: forewarn import-runs {runs} && forewarn import-attempts {attempts}" in out.output
        done = runner.invoke(app, ["import-runs", str(runs), "--db", sqlite_url])
        assert done.exit_code == 0, done.output
        assert f"imported 300 of 300 runs from {runs} into {sqlite_url} in " in done.output
        done = runner.invoke(app, ["import-attempts", str(attempts), "--db", sqlite_url])
        assert done.exit_code == 0, done.output
        n_attempts = len(pd.read_csv(attempts))
        assert f"imported {n_attempts:,} of {n_attempts:,} attempts" in done.output
        with TelemetryStore(sqlite_url) as store:
            assert len(store.runs()) == 300 and len(store.attempts()) == n_attempts

    def test_simulate_is_reproducible(self, tmp_path: Path) -> None:
        """The same seed and start write the same file."""
        for name in ("one.csv", "two.csv"):
            args = ["simulate", "--runs", "50", "--seed", "4", "--start", "2026-03-05", "--out", str(tmp_path / name)]
            assert runner.invoke(app, args).exit_code == 0
        assert (tmp_path / "one.csv").read_text() == (tmp_path / "two.csv").read_text()
        assert pd.read_csv(tmp_path / "one.csv")["scheduled_start"].min() >= "2026-03-05"

    def test_simulated_history_ends_within_the_last_week(self, tmp_path: Path) -> None:
        """Without --start the history ends now, inside live scoring's 30-day lookback."""
        out = tmp_path / "h.csv"
        assert runner.invoke(app, ["simulate", "--runs", "2000", "--out", str(out)]).exit_code == 0
        last = pd.to_datetime(pd.read_csv(out)["scheduled_start"], utc=True).max()
        assert pd.Timedelta(0) <= pd.Timestamp.now(tz="UTC") - last < pd.Timedelta(days=7)

    def test_a_start_with_an_offset_is_said_in_utc(self, tmp_path: Path, normalize: Any) -> None:
        """--start 00:00+02:00 is 22:00 UTC the day before: the message says the time the file holds."""
        out = tmp_path / "h.csv"
        args = ["simulate", "--runs", "20", "--start", "2026-03-01T00:00:00+02:00", "--out", str(out)]
        done = runner.invoke(app, args)
        assert done.exit_code == 0, done.output
        assert "from 2026-02-28 22:00 UTC" in normalize(done.output)
        assert pd.read_csv(out)["scheduled_start"].min() >= "2026-02-28T22:00"

    def test_a_bad_start_is_named(self, tmp_path: Path) -> None:
        done = runner.invoke(app, ["simulate", "--runs", "5", "--start", "soon", "--out", str(tmp_path / "h.csv")])
        assert done.exit_code == 2 and "soon" in done.output

    def test_invalid_file_exits_2_with_line_numbers_and_writes_nothing(self, tmp_path: Path, sqlite_url: str) -> None:
        """The first problems are printed with their lines; the flag names are the CLI's."""
        path = csv_file(tmp_path, RUNS_HEADER, GOOD_RUN, "r2,etl,2026-01-01 01:00,FAILED,,,", "r3,etl,[x],FAILED,,,")
        done = runner.invoke(app, ["import-runs", str(path), "--db", sqlite_url])
        assert done.exit_code == 2
        assert "2 invalid row(s), nothing was imported" in done.output
        assert (
            "line 3: scheduled_start '2026-01-01 01:00' has no UTC offset; write it like 2026-01-01 01:00Z "
            "(or pass --assume-utc)" in done.output
        )
        assert "line 4: scheduled_start '[x]' is not an ISO-8601 time" in done.output  # brackets are not markup
        assert "pass --skip-invalid REJECTS.csv" in done.output
        with TelemetryStore(sqlite_url) as store:
            assert store.runs().empty

    def test_skip_invalid_and_assume_utc(self, tmp_path: Path, sqlite_url: str) -> None:
        """--skip-invalid imports the rest and says where the rejects went; --assume-utc accepts naive times."""
        path = csv_file(tmp_path, RUNS_HEADER, GOOD_RUN, "r2,etl,2026-01-01 01:00,FAILED,,,", "r3,etl,never,FAILED,,,")
        rejects = tmp_path / "rejects.csv"
        args = ["import-runs", str(path), "--db", sqlite_url, "--skip-invalid", str(rejects), "--assume-utc"]
        done = runner.invoke(app, args)
        assert done.exit_code == 0, done.output
        assert f"imported 2 of 3 runs from {path}" in done.output
        assert f"; 1 rejected, written to {rejects}" in done.output
        assert len(pd.read_csv(rejects)) == 1

    def test_missing_file_is_a_usage_error(
        self, tmp_path: Path, sqlite_url: str, normalize: Callable[[str], str]
    ) -> None:
        """typer checks the path before anything is opened."""
        done = runner.invoke(app, ["import-attempts", str(tmp_path / "nope.csv"), "--db", sqlite_url])
        assert done.exit_code == 2
        assert "does not exist" in normalize(done.output)  # typer's error box wraps around a long path


MEMORY_PROBE = """
import resource, sys
from forewarn.errors import ImportValidationError
from forewarn.history.importer import import_runs
from forewarn.store import TelemetryStore

store = TelemetryStore("sqlite://")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    result = import_runs(store, sys.argv[1])
    outcome = f"imported {result.imported}"
except ImportValidationError as exc:
    outcome = repr(exc.problems)
grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(f"{grown_mb:.1f}")
print(outcome)
"""


def peak_growth(path: Path) -> tuple[float, str]:
    """Import ``path`` in a fresh process: how many MB its peak RSS grew by, and what the import said."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True, text=True, check=True, timeout=300
    )
    grown, outcome = done.stdout.strip().split("\n", 1)
    return float(grown), outcome


def write_big_cell(path: Path, size: int, *, quoted: bool) -> None:
    """A run file whose second row's ``parameters`` cell is ``size`` characters (in lines of 1,000 when quoted)."""
    with path.open("w") as out:
        out.write(RUNS_HEADER + "\n" + GOOD_RUN + "\n" + GOOD_RUN.replace("r1", "r2", 1))
        piece = ("x" * 999 + "\n") if quoted else "x" * 1000
        out.write('"' if quoted else "")
        for _ in range(size // 1000):
            out.write(piece)
        out.write('"\n' if quoted else "\n")


class TestBoundedMemory:
    """Memory follows the file's size: a hostile cell is refused with its line, never read whole."""

    @pytest.mark.parametrize(
        ("quoted", "reason"),
        [
            (False, "a line is longer than 4,000,000 bytes; history lines are far shorter"),
            (True, "a cell is longer than 1,000,000 characters; history cells are far shorter"),
        ],
    )
    def test_a_50_mb_cell_is_refused_with_its_line(self, tmp_path: Path, quoted: bool, reason: str) -> None:
        """One line of 50 MB, or a quoted 50 MB cell over many lines: refused at line 3, the peak RSS bounded."""
        path = tmp_path / "big.csv"
        write_big_cell(path, 50_000_000, quoted=quoted)
        grown, outcome = peak_growth(path)
        assert outcome == repr([(3, reason)])
        assert grown < 40, f"peak RSS grew by {grown:.0f} MB reading a 50 MB file"

    def test_one_23_kb_cell_among_many_rows(self, tmp_path: Path) -> None:
        """20,000 rows and one 23 KB parameters cell: imported, in far less than rows x longest cell (1.8 GB)."""
        big = '"{""blob"": ""' + "y" * 23_000 + '""}"'
        rows = [f"r{i},etl,2026-01-01T00:00:00Z,COMPLETED,,," for i in range(20_000)]
        rows[7] += big
        path = csv_file(tmp_path, RUNS_HEADER, *rows)
        grown, outcome = peak_growth(path)
        assert outcome == "imported 20000"
        assert grown < 300, f"peak RSS grew by {grown:.0f} MB for a {path.stat().st_size / 1e6:.1f} MB file"


class TestOutOfRange:
    """Values the store cannot hold are rejected with their line and column, never wrapped or crashed on."""

    @pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z"])
    def test_times_outside_the_store_range(self, tmp_path: Path, store: TelemetryStore, when: str) -> None:
        """Years 1 and 9999 are reported, with or without --skip-invalid, and the other rows import."""
        path = csv_file(tmp_path, RUNS_HEADER, GOOD_RUN, f"r2,etl,{when},FAILED,,,")
        reason = f"scheduled_start '{when}' is outside the times the store keeps, 1678-01-01 to 2261-12-31"
        assert problems(path, store) == [(3, reason)]
        result = import_runs(store, path, skip_invalid=tmp_path / "rejects.csv")
        assert (result.imported, result.rejected) == (1, 1)
        assert store.runs()["flow_run_id"].tolist() == ["r1"]

    @pytest.mark.parametrize(
        ("attempt", "reason"),
        [
            ("99999999999999999999", "attempt '99999999999999999999' is larger than 2,147,483,647, the largest"),
            ("2147483648", "attempt '2147483648' is larger than 2,147,483,647, the largest"),
            ("1e3", "attempt '1e3' is not a whole number >= 1"),
            ("9" * 5000, "is not a whole number >= 1"),
        ],
    )
    def test_attempt_numbers_the_store_cannot_hold(
        self, tmp_path: Path, store: TelemetryStore, attempt: str, reason: str
    ) -> None:
        """Attempt numbers are read as text, never through a float that wraps to -2**63."""
        row = f"r1,load,{attempt},2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,FAILED,"
        (found,) = problems(csv_file(tmp_path, ATTEMPTS_HEADER, row), store, import_attempts)
        assert found[0] == 2 and reason in found[1]

    def test_the_largest_attempt_is_stored_exactly(self, tmp_path: Path, any_store: TelemetryStore) -> None:
        """2**31 - 1 fits the attempt column on SQLite and PostgreSQL."""
        row = "r1,load,2147483647.0,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,FAILED,"
        import_attempts(any_store, csv_file(tmp_path, ATTEMPTS_HEADER, row))
        assert any_store.attempts()["attempt"].tolist() == [2**31 - 1]

    @pytest.mark.parametrize("cell", ["99999999999999999999", "inf", "-1e400"])
    def test_feature_numbers_out_of_range(self, tmp_path: Path, store: TelemetryStore, cell: str) -> None:
        """A feature number JSON or int64 cannot hold is a problem of its line and column."""
        path = csv_file(
            tmp_path, RUNS_HEADER + ",feature_rows", GOOD_RUN + ",12", GOOD_RUN.replace("r1", "r2", 1) + f",{cell}"
        )
        reason = f"feature_rows {cell!r} is out of range; numbers must be finite and below 2**63 in size"
        assert problems(path, store) == [(3, reason)]
        import_runs(store, path, skip_invalid=tmp_path / "rejects.csv")
        assert store.runs()["feature_rows"].tolist() == [12]


class TestRowShape:
    """A row must fit the header."""

    def test_an_extra_cell_in_every_row_is_an_error_naming_the_line(
        self, tmp_path: Path, store: TelemetryStore
    ) -> None:
        """pandas took the first column as an index when every row had one cell more; now line 2 is named."""
        path = csv_file(tmp_path, "run_id,flow_name,scheduled_start,state", "x,r1,etl,2026-01-01T00:00:00Z,COMPLETED")
        assert problems(path, store) == [
            (2, "the row has 5 cells but the header has 4 columns; quote cells that contain commas")
        ]

    def test_an_unclosed_quote_names_its_line(self, tmp_path: Path, store: TelemetryStore) -> None:
        path = csv_file(tmp_path, RUNS_HEADER, GOOD_RUN, 'r2,etl,2026-01-01T00:00:00Z,FAILED,,,"{')
        ((line, reason),) = problems(path, store)
        assert line == 3 and reason.startswith("cannot split the file into columns here")

    def test_not_utf8_names_its_line(self, tmp_path: Path, store: TelemetryStore) -> None:
        path = tmp_path / "latin1.csv"
        path.write_bytes(
            (RUNS_HEADER + "\n" + GOOD_RUN + "\nr2,\xe9tl,2026-01-01T00:00:00Z,FAILED,,,\n").encode("latin-1")
        )
        ((line, reason),) = problems(path, store)
        assert line == 3 and reason.startswith("the file is not UTF-8 text")

    def test_a_column_named_twice_is_an_error(self, tmp_path: Path, store: TelemetryStore) -> None:
        """One of two ``state`` columns would silently hide the other."""
        path = csv_file(
            tmp_path, "run_id,flow_name,scheduled_start,state,state", "r1,etl,2026-01-01T00:00:00Z,FAILED,OK"
        )
        assert problems(path, store) == [(1, "column(s) state appear more than once; keep one of each")]

    def test_byte_order_mark_crlf_and_unusual_line_breaks_in_cells(self, tmp_path: Path, store: TelemetryStore) -> None:
        """Windows line ends and a BOM are fine; a U+2028 or form feed inside a cell stays in the cell."""
        path = tmp_path / "windows.csv"
        rows = [RUNS_HEADER + ",flow_version", GOOD_RUN + ",v1\u2028v2\x0cv3", GOOD_RUN.replace("r1", "r2", 1) + ",v4"]
        path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")
        assert import_runs(store, path).imported == 2
        assert store.runs()["flow_version"].tolist() == ["v1\u2028v2\x0cv3", "v4"]


class TestAttemptIdentity:
    """Attempt keys cannot collide, and importing again still gives one row per attempt."""

    def test_colons_in_ids_do_not_collide(self, tmp_path: Path, any_store: TelemetryStore) -> None:
        """``g2:x`` + ``t`` and ``g2`` + ``x:t`` were one key; they are two task runs now, on every re-import."""
        path = csv_file(
            tmp_path,
            ATTEMPTS_HEADER,
            "g2:x,t,1,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,FAILED,",
            "g2,x:t,1,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,COMPLETED,",
        )
        for _ in range(2):
            assert import_attempts(any_store, path).imported == 2
        stored = any_store.attempts().sort_values("flow_run_id")
        assert stored[["flow_run_id", "task_name", "task_run_id", "outcome"]].to_dict("list") == {
            "flow_run_id": ["g2", "g2:x"],
            "task_name": ["x:t", "t"],
            "task_run_id": ["2:g2:x:t", "4:g2:x:t"],
            "outcome": ["success", "failure"],
        }

    def test_the_key_counts_the_length_prefix(self, tmp_path: Path, store: TelemetryStore) -> None:
        """The id limit applies to the key as stored."""
        row = f"{'r' * 250},load,1,2026-01-01T00:00:00Z,2026-01-01T00:00:05Z,FAILED,"
        ((line, reason),) = problems(csv_file(tmp_path, ATTEMPTS_HEADER, row), store, import_attempts)
        assert line == 2 and "is 259 characters long; the store keeps ids of at most 255" in reason


class TestRejectsFileSafety:
    """--skip-invalid never writes over the imported file and never leaves a half-written rejects file."""

    @pytest.mark.parametrize("link", ["hard", "symbolic"])
    def test_a_link_to_the_imported_file_is_refused(self, tmp_path: Path, store: TelemetryStore, link: str) -> None:
        path = csv_file(tmp_path, RUNS_HEADER, GOOD_RUN, "r2,etl,tomorrow,FAILED,,,")
        before = path.read_bytes()
        alias = tmp_path / "elsewhere" / "rejects.csv"
        alias.parent.mkdir()
        if link == "hard":
            alias.hardlink_to(path)
        else:
            alias.symlink_to(path)
        with pytest.raises(ConfigurationError, match=r"a file other than the one imported \(this is .* or a link"):
            import_runs(store, path, skip_invalid=alias)
        assert path.read_bytes() == before and store.runs().empty

    def test_the_cli_refuses_a_hard_link_with_exit_2(self, tmp_path: Path, sqlite_url: str) -> None:
        path = csv_file(tmp_path, RUNS_HEADER, GOOD_RUN)
        (tmp_path / "alias.csv").hardlink_to(path)
        result = runner.invoke(
            app, ["import-runs", str(path), "--db", sqlite_url, "--skip-invalid", str(tmp_path / "alias.csv")]
        )
        assert result.exit_code == 2
        assert "a file other than the one imported" in result.output
        assert path.read_text().splitlines() == [RUNS_HEADER, GOOD_RUN]

    def test_rejects_replace_an_old_file_whole_and_leave_no_temporary(
        self, tmp_path: Path, store: TelemetryStore
    ) -> None:
        path = csv_file(tmp_path, RUNS_HEADER, GOOD_RUN, "r2,etl,tomorrow,FAILED,,,")
        rejects = tmp_path / "rejects.csv"
        rejects.write_text("stale\n" * 1000)
        import_runs(store, path, skip_invalid=rejects)
        assert [line.split(",")[0] for line in rejects.read_text().splitlines()] == ["run_id", "r2"]
        assert [p.name for p in tmp_path.iterdir() if "rejects" in p.name] == ["rejects.csv"]
