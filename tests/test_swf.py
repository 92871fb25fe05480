"""SWF job logs as run history: the field mapping, what never becomes a feature, bad logs, and import-swf."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.errors import ImportValidationError
from forewarn.history.swf import read_swf, swf_to_runs
from forewarn.store import TelemetryStore

runner = CliRunner()

HEADER = "; Version: 2.2\n; UnixStartTime: 1000000000\n;\n"
#         job submit wait run alloc cpu mem rprocs rtime rmem status user group exe queue part prev think
JOBS = (
    "1   0     10   100  4     90  500 4      3600  -1   1      7    2     3   1     1    -1   -1\n"
    "2   60    0    20   8     15  900 8      7200  2048 0      7    2     3   1     1    -1   -1\n"
    "3   120   -1   -1   -1    -1  -1  2      600   -1   5      9    2     -1  2     1    -1   -1\n"
    "4   180   5    30   1     -1  -1  1      60    -1   -1     9    2     5   2     1    -1   -1\n"
)


def swf(tmp_path: Path, body: str = JOBS, *, header: str = HEADER, name: str = "log.swf", gz: bool = False) -> Path:
    path = tmp_path / name
    data = (header + body).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


class TestMapping:
    @pytest.mark.parametrize("gz", [False, True])
    def test_jobs_become_runs_with_the_documented_columns(self, tmp_path: Path, gz: bool) -> None:
        """Job number, flow, submit time as scheduled start, start and end from wait and run, the state."""
        runs = swf_to_runs(swf(tmp_path, gz=gz, name="log.swf.gz" if gz else "log.swf")).runs
        assert runs["run_id"].tolist() == ["1", "2", "3"]
        assert runs["flow_name"].tolist() == ["exe-3", "exe-3", "user-9"]
        assert runs["scheduled_start"].tolist() == [
            "2001-09-09T01:46:40.000Z",
            "2001-09-09T01:47:40.000Z",
            "2001-09-09T01:48:40.000Z",
        ]
        assert runs["start_time"].tolist() == ["2001-09-09T01:46:50.000Z", "2001-09-09T01:47:40.000Z", ""]
        assert runs["end_time"].tolist() == ["2001-09-09T01:48:30.000Z", "2001-09-09T01:48:00.000Z", ""]
        assert runs["state"].tolist() == ["COMPLETED", "FAILED", "CANCELLED"]

    def test_unknown_status_is_left_out_and_counted(self, tmp_path: Path) -> None:
        """A job with status -1 has no outcome to learn from: left out, and the count says so."""
        converted = swf_to_runs(swf(tmp_path))
        assert "4" not in converted.runs["run_id"].tolist()
        assert converted.left_out == 1

    def test_only_pre_run_fields_are_features(self, tmp_path: Path) -> None:
        """Requested resources, user, group, queue, partition: yes; wait, run, CPU, memory used: never."""
        runs = swf_to_runs(swf(tmp_path)).runs
        features = sorted(c for c in runs.columns if c.startswith("feature_"))
        assert features == [
            "feature_group",
            "feature_partition",
            "feature_queue",
            "feature_requested_memory_kb",
            "feature_requested_procs",
            "feature_requested_seconds",
            "feature_user",
        ]
        assert runs["feature_requested_memory_kb"].tolist() == ["", "2048", ""]
        assert runs["feature_user"].tolist() == ["u7", "u7", "u9"]

    def test_outcomes_do_not_change_the_features(self, tmp_path: Path) -> None:
        """Rewriting every outcome field of a job leaves its feature cells exactly as they were."""
        changed = JOBS.replace("1   0     10   100  4     90  500", "1   0     99   7    9     1   3")
        before = swf_to_runs(swf(tmp_path)).runs.filter(like="feature_")
        after = swf_to_runs(swf(tmp_path, changed, name="changed.swf")).runs.filter(like="feature_")
        assert before.equals(after)

    def test_a_log_without_executables_names_flows_by_user(self, tmp_path: Path) -> None:
        """As in the KTH log: the user is the flow, so it is not a feature as well."""
        body = "1 0 0 10 1 -1 -1 1 60 -1 1 12 4 -1 -1 -1 -1 -1\n2 5 0 10 1 -1 -1 1 60 -1 0 13 4 -1 -1 -1 -1 -1\n"
        runs = swf_to_runs(swf(tmp_path, body)).runs
        assert runs["flow_name"].tolist() == ["user-12", "user-13"]
        assert "feature_user" not in runs.columns
        assert "feature_queue" not in runs.columns  # -1 throughout: the log does not know it


class TestBadLogs:
    @pytest.mark.parametrize(
        ("body", "line", "reason"),
        [
            ("1 0 0 10 1 -1 -1 1 60 -1 1 12 4 -1 -1 -1 -1\n", 4, "has 17 fields; SWF has 18"),
            ("1 0 0 10 1 -1 -1 1 60 -1 1 12 4 -1 -1 -1 -1 x\n", 4, "something other than 18 numbers"),
            ("1 -5 0 10 1 -1 -1 1 60 -1 1 12 4 -1 -1 -1 -1 -1\n", 4, "submit time is negative"),
            (JOBS + "1 200 0 10 1 -1 -1 1 60 -1 1 12 4 -1 -1 -1 -1 -1\n", 4, "job number is on another line"),
        ],
    )
    def test_a_bad_job_line_is_named(self, tmp_path: Path, body: str, line: int, reason: str) -> None:
        with pytest.raises(ImportValidationError) as caught:
            swf_to_runs(swf(tmp_path, body))
        assert caught.value.problems[0][0] == line
        assert reason in caught.value.problems[0][1]

    def test_a_log_without_its_epoch_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ImportValidationError, match="UnixStartTime"):
            read_swf(swf(tmp_path, header="; Version: 2.2\n"))

    def test_binary_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "log.swf"
        path.write_bytes(b"; UnixStartTime: 0\n\xff\xfe")
        with pytest.raises(ImportValidationError, match="not SWF text"):
            swf_to_runs(path)


class TestImportSwf:
    def test_the_command_imports_the_runs_with_their_features(self, tmp_path: Path) -> None:
        """The store then holds each run with its pre-run attributes, ready for train and backtest."""
        url = f"sqlite:///{tmp_path / 'store.db'}"
        kept = tmp_path / "runs.csv"
        result = runner.invoke(app, ["import-swf", str(swf(tmp_path)), "--db", url, "--csv-out", str(kept)])
        assert result.exit_code == 0, result.output
        assert "1 job(s)" in result.output
        runs = TelemetryStore(url, create=False).runs().set_index("flow_run_id")
        assert sorted(runs.index) == ["1", "2", "3"]
        assert runs.loc["2", "state"] == "FAILED"
        assert runs.loc["2", "feature_requested_procs"] == 8
        assert kept.read_text().startswith("run_id,flow_name,scheduled_start,state")

    def test_the_message_names_the_log_and_skip_invalid_is_taken(self, tmp_path: Path, normalize: Any) -> None:
        """What was imported is said of the log the user named, not of the temporary CSV it was converted to."""
        url = f"sqlite:///{tmp_path / 'store.db'}"
        log = swf(tmp_path)
        rejects = tmp_path / "rejects.csv"
        result = runner.invoke(app, ["import-swf", str(log), "--db", url, "--skip-invalid", str(rejects)])
        assert result.exit_code == 0, result.output
        assert f"imported 3 of 3 runs from {log} into" in normalize(result.output)
        (header,) = rejects.read_text().splitlines()  # the header only: nothing was rejected
        assert header.endswith(",line,reason")

    def test_a_bad_log_exits_2_and_writes_nothing(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'store.db'}"
        result = runner.invoke(app, ["import-swf", str(swf(tmp_path, "1 2 3\n")), "--db", url])
        assert result.exit_code == 2
        assert "SWF has 18" in result.output
        assert not (tmp_path / "store.db").exists()
