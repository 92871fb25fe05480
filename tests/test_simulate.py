"""Specification of forewarn.history.simulate: the simulated history, its failure mechanisms, the import parser."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forewarn.errors import ConfigurationError, ImportValidationError
from forewarn.history.simulate import (
    ATTEMPT_COLUMNS,
    FAILURE_CAUSES,
    RUN_COLUMNS,
    history_to_attempts_frame,
    history_to_runs_frame,
    parameters_hash,
    simulate_history,
    simulated_attempts,
    write_simulated_history,
)
from forewarn.records import AttemptOutcome, RunState

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
FAILED = ["FAILED", "CRASHED", "TIMEDOUT"]
FEATURES = ["feature_input_rows", "feature_source_system", "feature_triggered_by"]
MAINTENANCE_FLOWS = ["ingest-orders", "refresh-inventory", "build-dashboards", "backup-warehouse"]
LOAD_FLOWS = ["ingest-orders", "sync-payments", "score-fraud", "build-dashboards", "reconcile-ledger"]


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    """About five months of simulated history with the cause of each failure, parsed into a runs frame."""
    raw = simulate_history(60_000, seed=7, include_cause=True)
    runs = history_to_runs_frame(raw.drop(columns="failure_cause"))
    return runs.assign(cause=raw["failure_cause"].to_numpy(), failed=runs["state"].isin(FAILED))


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """A simulated history in the import format, as simulate_history returns it."""
    return simulate_history(8_000, seed=2)


@pytest.fixture(scope="module")
def pair() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A simulated history with failure causes, and its simulated task attempts."""
    raw = simulate_history(4_000, seed=3, include_cause=True)
    return raw, simulated_attempts(raw, seed=3)


def failure_rate(runs: pd.DataFrame) -> float:
    return float(runs["state"].isin(FAILED).mean())


class TestDeterminism:
    """The same seed and arguments always give the same history."""

    def test_same_seed_same_frame(self) -> None:
        """Two calls with one seed are equal; another seed differs."""
        a, b = simulate_history(3_000, seed=4), simulate_history(3_000, seed=4)
        pd.testing.assert_frame_equal(a, b)
        assert not a.equals(simulate_history(3_000, seed=5))

    def test_attempts_are_deterministic(self) -> None:
        """Simulated attempts depend only on the history and their seed."""
        h = simulate_history(1_000, seed=1, include_cause=True)
        pd.testing.assert_frame_equal(simulated_attempts(h, seed=2), simulated_attempts(h, seed=2))


class TestFormat:
    """The output is a history in the import CSV format."""

    def test_columns_and_ids(self, raw: pd.DataFrame) -> None:
        """Import columns in order, then the feature_* columns; one row per run with a unique UUID."""
        assert list(raw.columns) == [*RUN_COLUMNS, *FEATURES]
        assert len(raw) == 8_000
        assert raw["run_id"].is_unique
        assert raw["run_id"].map(lambda v: bool(UUID.match(v))).all()

    def test_times_are_iso_utc(self, raw: pd.DataFrame) -> None:
        """Times are ISO-8601 strings ending in Z; only running runs lack an end time."""
        for col in ("scheduled_start", "start_time"):
            assert raw[col].map(lambda v: bool(ISO.match(v))).all()
        ended = raw["end_time"].notna()
        assert raw.loc[ended, "end_time"].map(lambda v: bool(ISO.match(v))).all()
        assert set(raw.loc[~ended, "state"]) <= {"RUNNING"}

    def test_times_are_ordered(self, raw: pd.DataFrame) -> None:
        """Runs start at or after their schedule and end after they start, sorted by schedule."""
        runs = history_to_runs_frame(raw)
        assert (runs["start_time"] >= runs["scheduled_start"]).all()
        ended = runs["end_time"].notna()
        assert (runs.loc[ended, "end_time"] > runs.loc[ended, "start_time"]).all()
        assert runs["scheduled_start"].is_monotonic_increasing

    def test_values(self, raw: pd.DataFrame) -> None:
        """States are RunState names; parameters are JSON objects; features have their types."""
        assert set(raw["state"]) <= {s.value for s in RunState}
        assert raw["parameters"].map(lambda v: isinstance(json.loads(v), dict)).all()
        assert pd.api.types.is_integer_dtype(raw["feature_input_rows"])
        assert (raw["feature_input_rows"] > 0).all()
        assert set(raw["feature_triggered_by"]) == {"schedule", "manual", "backfill"}
        assert raw["deployment"].isna().any() and raw["deployment"].notna().mean() > 0.95
        assert raw["flow_version"].notna().all()

    def test_schedules(self, raw: pd.DataFrame) -> None:
        """Each flow keeps its cron grid: 15-minute flows at fixed minutes, nightly ones at a fixed time."""
        runs = history_to_runs_frame(raw)
        sched = runs.set_index("flow_name")["scheduled_start"]
        assert sched.loc["ingest-orders"].dt.minute.mod(15).nunique() == 1
        assert sched.loc["score-fraud"].dt.minute.nunique() == 1
        nightly = sched.loc["nightly-etl"]
        assert (nightly.dt.hour * 60 + nightly.dt.minute).nunique() == 1
        gaps = sched.loc["sync-payments"].diff().dropna()
        assert (gaps == pd.Timedelta(minutes=15)).all()

    def test_starts_are_jittered_and_sometimes_late(self, raw: pd.DataFrame) -> None:
        """Almost every run starts a few seconds late; a few percent start minutes late."""
        runs = history_to_runs_frame(raw)
        delay = (runs["start_time"] - runs["scheduled_start"]).dt.total_seconds()
        assert (delay > 0).mean() > 0.99
        assert 0.01 < (delay > 60).mean() < 0.1

    def test_durations_differ_by_flow(self, raw: pd.DataFrame) -> None:
        """Nightly ETL runs take far longer than 15-minute syncs."""
        runs = history_to_runs_frame(raw)
        ok = runs[runs["state"] == "COMPLETED"]
        median = (ok["end_time"] - ok["start_time"]).dt.total_seconds().groupby(ok["flow_name"]).median()
        assert median["nightly-etl"] > 10 * median["sync-payments"]

    def test_zero_runs(self) -> None:
        """Zero runs give an empty frame with the columns."""
        empty = simulate_history(0)
        assert empty.empty and list(empty.columns) == [*RUN_COLUMNS, *FEATURES]

    @pytest.mark.parametrize(
        ("kw", "name"),
        [({"n_runs": -1}, "n_runs"), ({"n_runs": 10, "n_flows": 0}, "n_flows"), ({"n_runs": 2.5}, "n_runs")],
    )
    def test_invalid_arguments(self, kw: dict, name: str) -> None:
        """Negative or fractional sizes are refused naming the argument."""
        with pytest.raises(ConfigurationError, match=name):
            simulate_history(**kw)

    @pytest.mark.parametrize("start", ["2027-05-01T00:00:00Z", datetime(2027, 5, 1), "2027-05-01T02:00:00+02:00"])
    def test_start(self, start: object) -> None:
        """The history begins at start (naive datetimes are UTC)."""
        first = pd.Timestamp(simulate_history(50, start=start)["scheduled_start"].min())
        assert pd.Timestamp("2027-05-01T00:00:00Z") <= first < pd.Timestamp("2027-05-01T00:15:00Z")

    def test_number_of_flows(self) -> None:
        """n_flows picks flows from the catalogue, cloning it with suffixes beyond twelve."""
        assert simulate_history(500, n_flows=3)["flow_name"].nunique() == 3
        names = set(simulate_history(3_000, n_flows=14)["flow_name"])
        assert {"ingest-orders-2", "sync-payments-2"} <= names


class TestFailureRate:
    """Failures are common enough to learn from and rare enough to be realistic."""

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_rate_band(self, seed: int) -> None:
        """Between 5 % and 12 % of runs fail."""
        assert 0.05 <= failure_rate(simulate_history(20_000, seed=seed)) <= 0.12

    def test_state_mix(self, history: pd.DataFrame) -> None:
        """Failures are mostly FAILED, some CRASHED and TIMEDOUT; a few runs are CANCELLED."""
        share = history["state"].value_counts(normalize=True)
        assert share["FAILED"] > share["TIMEDOUT"] > 0.003
        assert share["CRASHED"] > 0.002
        assert 0.002 < share["CANCELLED"] < 0.02

    def test_causes(self, history: pd.DataFrame) -> None:
        """Every failure has one of the documented causes, and only failures have one."""
        assert set(history.loc[history["failed"], "cause"]) == set(FAILURE_CAUSES)
        assert (history.loc[~history["failed"], "cause"] == "").all()


class TestMechanisms:
    """Each documented failure mechanism is visible in the history."""

    def test_outages_cluster_across_flows(self, history: pd.DataFrame) -> None:
        """Outage failures come with failures of other flows around them; random failures mostly do not."""
        f = history[history["failed"]].sort_values("start_time")
        t = np.asarray(f["start_time"].dt.as_unit("ns").array.asi8)
        flows = f["flow_name"].to_numpy()
        half_hour = 30 * 60 * 10**9
        lo, hi = np.searchsorted(t, t - half_hour), np.searchsorted(t, t + half_hour, side="right")
        others = np.asarray([len(set(flows[a:b]) - {flows[i]}) for i, (a, b) in enumerate(zip(lo, hi, strict=True))])
        crowded = pd.Series(others >= 2, index=f.index).groupby(f["cause"]).mean()
        assert crowded["dependency_outage"] > 0.6
        assert crowded["random"] < 0.35

    def test_maintenance_window(self, history: pd.DataFrame) -> None:
        """Maintenance-sensitive flows fail most runs that start Sunday 02:00-04:00 UTC."""
        start = history["start_time"]
        window = (start.dt.day_of_week == 6) & (start.dt.hour >= 2) & (start.dt.hour < 4)
        sensitive = history["flow_name"].isin(MAINTENANCE_FLOWS)
        assert history.loc[sensitive & window, "failed"].mean() > 0.6
        assert history.loc[sensitive & ~window, "failed"].mean() < 0.12
        assert history.loc[~sensitive & window, "failed"].mean() < 0.2

    def test_oversize_inputs_fail(self, history: pd.DataFrame) -> None:
        """Runs with inputs far above their flow's median fail with high probability."""
        rows = history["feature_input_rows"]
        ratio = rows / rows.groupby(history["flow_name"]).transform("median")
        assert history.loc[ratio > 2.5, "failed"].mean() > 0.75
        assert history.loc[ratio < 2.0, "failed"].mean() < 0.1

    def test_bad_deploys(self, history: pd.DataFrame) -> None:
        """Some flow versions fail most of their runs; most versions rarely fail."""
        by_version = history.groupby(["flow_name", "flow_version"])["failed"].agg(["size", "mean"])
        by_version = by_version[by_version["size"] >= 5]
        assert 0.03 < (by_version["mean"] > 0.5).mean() < 0.4
        assert (by_version["mean"] < 0.2).mean() > 0.6
        assert history.loc[history["cause"] == "bad_deploy", "flow_version"].nunique() > 5

    def test_load_peaks(self, history: pd.DataFrame) -> None:
        """Load-sensitive flows fail more in business hours and most at month-end."""
        s = history["scheduled_start"]
        business = (s.dt.day_of_week < 5) & (s.dt.hour >= 9) & (s.dt.hour < 18)
        month_end = (s.dt.days_in_month - s.dt.day) < 2
        sensitive = history["flow_name"].isin(LOAD_FLOWS)
        rate = history.groupby([sensitive, business, month_end])["failed"].mean()
        assert rate[(True, True, False)] > rate[(True, False, False)] + 0.02
        assert rate[(True, False, True)] > rate[(True, False, False)] + 0.05


class TestCsv:
    """write_simulated_history writes a file the parser reads back."""

    def test_round_trip(self, tmp_path: Path) -> None:
        """The CSV parses into a runs frame with the same runs."""
        path = write_simulated_history(tmp_path / "sub" / "h.csv", 2_000, seed=9)
        assert path.exists()
        runs = history_to_runs_frame(pd.read_csv(path), source=path)
        direct = history_to_runs_frame(simulate_history(2_000, seed=9))
        pd.testing.assert_frame_equal(runs.drop(columns=FEATURES), direct.drop(columns=FEATURES))
        assert runs["feature_input_rows"].tolist() == direct["feature_input_rows"].tolist()


def raw_row(**overrides: object) -> dict:
    row = {
        "run_id": "r1",
        "flow_name": "etl",
        "deployment": "etl/prod",
        "flow_version": "1.2.0",
        "scheduled_start": "2026-01-01T00:00:00Z",
        "start_time": "2026-01-01T00:00:05Z",
        "end_time": "2026-01-01T00:10:00Z",
        "state": "COMPLETED",
        "parameters": '{"b": 2, "a": 1}',
    }
    row.update(overrides)
    return row


class TestHistoryToRunsFrame:
    """The import format becomes the runs frame under the importer's rules; anything doubtful is refused by line."""

    def test_conversion(self) -> None:
        """Columns are renamed, times parsed to UTC nanoseconds, parameters decoded and hashed."""
        raw = pd.DataFrame(
            [
                raw_row(state="failed", start_time="2026-01-01T02:00:05+02:00", feature_rows=12, feature_src="sap"),
                raw_row(run_id="r2", deployment="", parameters="", feature_rows=3, feature_src=" "),
            ]
        )
        runs = history_to_runs_frame(raw)
        expected = (
            "flow_run_id flow_name deployment parameters parameters_hash flow_version scheduled_start start_time "
            "end_time state tags feature_rows feature_src"
        )
        assert list(runs.columns) == expected.split()
        for col in ("scheduled_start", "start_time", "end_time"):
            assert str(runs[col].dtype) == "datetime64[ns, UTC]"
        assert runs.loc[0, "start_time"] == pd.Timestamp("2026-01-01T00:00:05Z")
        assert runs["state"].tolist() == ["FAILED", "COMPLETED"]
        assert runs.loc[0, "parameters"] == {"a": 1, "b": 2}
        assert runs.loc[0, "parameters_hash"] == parameters_hash({"a": 1, "b": 2})
        assert re.fullmatch(r"[0-9a-f]{16}", runs.loc[0, "parameters_hash"])
        assert runs.loc[1, "parameters"] is None and runs.loc[1, "parameters_hash"] is None
        assert runs["deployment"].tolist() == ["etl/prod", None]
        assert runs["feature_rows"].tolist() == [12, 3]
        assert runs["feature_src"].tolist() == ["sap", None]
        assert runs["flow_version"].tolist() == ["1.2.0", "1.2.0"]
        assert runs["tags"].tolist() == [None, None]  # no tags column: runs without tags

    def test_parameters_hash_is_canonical(self) -> None:
        """Key order and spacing do not change the hash; values do."""
        assert parameters_hash({"a": 1, "b": [1, 2]}) == parameters_hash({"b": [1, 2], "a": 1})
        assert parameters_hash({"a": 1}) != parameters_hash({"a": 2})
        assert parameters_hash(None) is None

    def test_optional_columns(self) -> None:
        """Only run_id, flow_name, scheduled_start and state are required, as in a run-history CSV."""
        optional = ["deployment", "flow_version", "start_time", "end_time", "parameters"]
        raw = pd.DataFrame([raw_row()]).drop(columns=optional)
        runs = history_to_runs_frame(raw)
        assert runs.loc[0, "start_time"] is pd.NaT and runs.loc[0, "end_time"] is pd.NaT
        assert runs.loc[0, "deployment"] is None and runs.loc[0, "flow_version"] is None
        assert runs.loc[0, "parameters"] is None and runs.loc[0, "parameters_hash"] is None

    def test_importer_rules(self) -> None:
        """The importer's documented rules (docs/import.md) hold: SUCCESS is COMPLETED, a finished run may
        lack its start or end time (it is then never used as history), identical repeats are one run."""
        raw = pd.DataFrame(
            [
                raw_row(state="success"),
                raw_row(run_id="no-start", start_time=""),
                raw_row(run_id="no-end", state="FAILED", end_time=""),
                raw_row(state="COMPLETED", scheduled_start="2026-01-01T01:00:00+01:00"),  # the first row again
            ]
        )
        runs = history_to_runs_frame(raw)
        assert runs["flow_run_id"].tolist() == ["r1", "no-start", "no-end"]
        assert runs["state"].tolist() == ["COMPLETED", "COMPLETED", "FAILED"]
        assert runs["start_time"].isna().tolist() == [False, True, False]
        assert runs["end_time"].isna().tolist() == [False, False, True]

    def test_states_without_times(self) -> None:
        """CANCELLED runs may lack a start; SCHEDULED runs have only a schedule; RUNNING runs no end."""
        raw = pd.DataFrame(
            [
                raw_row(run_id="c", state="CANCELLED", start_time="", end_time="2026-01-01T00:01:00Z"),
                raw_row(run_id="s", state="SCHEDULED", start_time="", end_time=""),
                raw_row(run_id="r", state="running", end_time=""),
            ]
        )
        runs = history_to_runs_frame(raw)
        assert runs["state"].tolist() == ["CANCELLED", "SCHEDULED", "RUNNING"]
        assert runs["end_time"].isna().tolist() == [False, True, True]

    def test_datetime_columns_are_accepted(self) -> None:
        """A frame whose times are already timezone-aware datetimes passes through."""
        raw = pd.DataFrame([raw_row()])
        for col in ("scheduled_start", "start_time", "end_time"):
            raw[col] = pd.to_datetime(raw[col], utc=True).dt.tz_convert("Europe/Berlin")
        runs = history_to_runs_frame(raw)
        assert runs.loc[0, "end_time"] == pd.Timestamp("2026-01-01T00:10:00Z")

    def test_naive_datetime_columns_need_assume_utc(self) -> None:
        """Datetimes without a timezone reject the frame (line 1, the column) unless assume_utc=True."""
        raw = pd.DataFrame([raw_row()]).assign(end_time=pd.Timestamp("2026-01-01T00:10:00"))
        with pytest.raises(ImportValidationError) as info:
            history_to_runs_frame(raw)
        assert info.value.problems == [
            (
                1,
                "column 'end_time' holds times without a UTC offset; pass assume_utc=True or write them as "
                "2026-01-01T00:00:00Z",
            )
        ]
        assert history_to_runs_frame(raw, assume_utc=True).loc[0, "end_time"] == pd.Timestamp("2026-01-01T00:10Z")

    @pytest.mark.parametrize(
        ("change", "line", "reason"),
        [
            ({"start_time": "yesterday"}, 2, "is not an ISO-8601 time"),
            ({"end_time": "2026-01-01T00:10:00"}, 2, "has no UTC offset"),
            ({"state": "DONE"}, 2, "state 'DONE' is not a run state"),
            ({"state": ""}, 2, "state is empty"),
            ({"parameters": "{bad json"}, 2, "not valid JSON"),
            ({"parameters": "[1, 2]"}, 2, "must be a JSON object"),
            (
                {"end_time": "2025-12-31T00:00:00Z"},
                2,
                "end_time 2025-12-31T00:00:00Z is before start_time 2026-01-01T00:00:05Z",
            ),
            ({"state": "RUNNING"}, 2, "end_time is set but state is RUNNING"),
            ({"state": "SCHEDULED", "start_time": ""}, 2, "end_time is set but state is SCHEDULED"),
            ({"run_id": " "}, 2, "run_id is empty"),
            ({"run_id": "x" * 256}, 2, "run_id is 256 characters long"),
            ({"flow_name": ""}, 2, "flow_name is empty"),
            (
                {"scheduled_start": "", "start_time": "", "state": "SCHEDULED", "end_time": ""},
                2,
                "scheduled_start is empty",
            ),
        ],
    )
    def test_invalid_rows(self, change: dict, line: int, reason: str) -> None:
        """Each kind of bad cell is reported with its CSV line and a hint."""
        raw = pd.DataFrame([raw_row(run_id="ok"), raw_row(**change)])
        with pytest.raises(ImportValidationError) as info:
            history_to_runs_frame(raw, source="h.csv")
        assert any(ln == line + 1 and reason in why for ln, why in info.value.problems), info.value.problems
        assert "h.csv" in str(info.value)

    def test_naive_times_with_assume_utc(self) -> None:
        """assume_utc=True reads offset-less times as UTC."""
        raw = pd.DataFrame([raw_row(end_time="2026-01-01T00:10:00")])
        runs = history_to_runs_frame(raw, assume_utc=True)
        assert runs.loc[0, "end_time"] == pd.Timestamp("2026-01-01T00:10Z")

    def test_header_problems(self) -> None:
        """Missing and unknown columns are reported on line 1 with the fix."""
        with pytest.raises(ImportValidationError, match=r"missing required column\(s\) state;"):
            history_to_runs_frame(pd.DataFrame([raw_row()]).drop(columns="state"))
        with pytest.raises(ImportValidationError, match=r"missing required column\(s\) scheduled_start;"):
            history_to_runs_frame(pd.DataFrame([raw_row()]).drop(columns="scheduled_start"))
        with pytest.raises(ImportValidationError, match="feature_region") as info:
            history_to_runs_frame(pd.DataFrame([raw_row(region="eu")]))
        assert info.value.problems[0][0] == 1

    def test_duplicates_and_all_problems_at_once(self) -> None:
        """A run_id repeated with other values rejects every copy, naming the others; every problem of the
        file is listed together, by line."""
        raw = pd.DataFrame(
            [
                raw_row(),
                raw_row(end_time="2026-01-01T00:20:00Z"),
                raw_row(run_id="x", state="nope", parameters="[]"),
            ]
        )
        with pytest.raises(ValueError) as info:  # ImportValidationError is a ValueError
            history_to_runs_frame(raw)
        problems = info.value.problems
        assert (2, "run_id 'r1' is also on line(s) 3 with other values; keep only the right row") in problems
        assert (3, "run_id 'r1' is also on line(s) 2 with other values; keep only the right row") in problems
        assert [ln for ln, _ in problems] == [2, 3, 4, 4]


def attempt_row(**overrides: object) -> dict:
    row = {
        "run_id": "r1",
        "task_name": "load",
        "attempt": 1,
        "start_time": "2026-01-01T00:00:00Z",
        "end_time": "2026-01-01T00:00:09Z",
        "state": "COMPLETED",
        "exception_type": "",
    }
    row.update(overrides)
    return row


class TestAttempts:
    """Simulated task attempts and their parser."""

    def test_format(self, pair: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Attempts use the import columns, belong to ended runs and lie inside them."""
        raw, att = pair
        assert list(att.columns) == list(ATTEMPT_COLUMNS)
        assert set(att["state"]) <= {o.value for o in AttemptOutcome}
        runs = history_to_runs_frame(raw.drop(columns="failure_cause")).set_index("flow_run_id")
        parsed = history_to_attempts_frame(att)
        assert parsed["flow_run_id"].isin(runs.index[runs["end_time"].notna()]).all()
        run_start = parsed["flow_run_id"].map(runs["start_time"])
        run_end = parsed["flow_run_id"].map(runs["end_time"])
        assert (parsed["start_time"] >= run_start).all() and (parsed["end_time"] <= run_end).all()
        assert (parsed["end_time"] >= parsed["start_time"]).all()

    def test_attempt_numbers(self, pair: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Attempts of one task run are numbered 1, 2, 3, ... in time order."""
        _, att = pair
        numbers = att.groupby(["run_id", "task_name"])["attempt"].agg(list)
        assert numbers.map(lambda a: a == list(range(1, len(a) + 1))).all()

    def test_outcomes_follow_the_run(self, pair: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Completed runs end every task in success or fallback; failed runs show failed attempts."""
        raw, att = pair
        state = att["run_id"].map(raw.set_index("run_id")["state"])
        last = att.groupby(["run_id", "task_name"]).tail(1)
        ok_last = last[state[last.index] == "COMPLETED"]["state"]
        assert set(ok_last) <= {"success", "fallback"}
        failed_runs = att[state.isin(["FAILED", "TIMEDOUT"])]
        saw_failure = failed_runs["state"].isin(["failure", "timeout"]).groupby(failed_runs["run_id"]).any()
        assert saw_failure.all()
        assert (att.loc[att["state"] == "success", "exception_type"].isna()).all()
        assert att.loc[att["state"] == "failure", "exception_type"].notna().all()
        retried = att[(state == "COMPLETED") & (att["state"] != "success")]
        assert len(retried) > 0  # transient errors that recovered

    def test_parser(self) -> None:
        """The attempts parser renames, lower-cases the outcome and refuses bad rows by line."""
        row = attempt_row(attempt=2, state="FALLBACK_FAILURE")
        out = history_to_attempts_frame(pd.DataFrame([row]))
        assert list(out.columns) == [
            "flow_run_id",
            "task_name",
            "attempt",
            "start_time",
            "end_time",
            "outcome",
            "exception_type",
        ]
        assert out.loc[0, "outcome"] == "fallback_failure" and out.loc[0, "exception_type"] is None
        bad = pd.DataFrame([row, {**row, "attempt": 0, "state": "oops", "end_time": ""}])
        with pytest.raises(ImportValidationError) as info:
            history_to_attempts_frame(bad)
        reasons = [why for ln, why in info.value.problems if ln == 3]
        assert any("attempt" in r for r in reasons) and any("oops" in r for r in reasons)
        assert any("end_time is empty" in r for r in reasons)

    def test_parser_follows_the_importer_rules(self) -> None:
        """Attempt states as a task-attempt CSV takes them; a repeat with other values rejects every copy."""
        row = attempt_row(attempt="1", state="Completed")
        out = history_to_attempts_frame(pd.DataFrame([row, row]))  # an identical repeat is one attempt
        assert out["outcome"].tolist() == ["success"] and out["attempt"].tolist() == [1]
        with pytest.raises(ImportValidationError) as info:
            history_to_attempts_frame(pd.DataFrame([row, {**row, "state": "FAILED"}]))
        assert [ln for ln, _ in info.value.problems] == [2, 3]
        assert "attempt 1 of task 'load' in run 'r1' is also on line(s) 3" in info.value.problems[0][1]

    def test_no_ended_runs(self) -> None:
        """A history without ended runs has no attempts."""
        raw = simulate_history(10, seed=0).assign(end_time=None, state="RUNNING")
        assert simulated_attempts(raw).empty
