"""Flow-run tags: ``flow_runs.tags`` on new and upgraded stores, written by every path that records runs.

The migration step is found by its name, not its number, so these tests hold when the lead renumbers it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import prefect
import pytest
import sqlalchemy as sa

import forewarn
from forewarn.errors import ImportValidationError, InvalidRecordError
from forewarn.history.importer import import_runs
from forewarn.orchestration.prefect_history import import_prefect_history
from forewarn.records import FlowRunRecord, RunState
from forewarn.settings import get_settings
from forewarn.store import Spool, TelemetryStore, migrations, schema
from forewarn.timeutil import utc_now
from test_spool import drain_into
from test_store import T0, assert_upgrade_matches_a_new_store, make_v1_store

CURRENT = schema.SCHEMA_VERSION
TAGS_VERSION = next(version for version, step in migrations.MIGRATIONS if step.__name__.endswith("_flow_run_tags"))
"""The schema version whose step adds ``flow_runs.tags``."""


def make_store_before_tags(url: str) -> None:
    """A store one version before tags: forewarn 0.1's schema upgraded by the real steps up to that version."""
    make_v1_store(url)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        steps = [(v, step) for v, step in migrations.MIGRATIONS if v < TAGS_VERSION]
        migrations.ensure_schema(conn, url=url, target=TAGS_VERSION - 1, migrations=steps)
    engine.dispose()


def stored_tags(url: str) -> dict[str, str | None]:
    """``flow_runs.tags`` as the database holds it, by run id."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        got = {r[0]: r[1] for r in conn.execute(sa.text("select flow_run_id, tags from flow_runs"))}
    engine.dispose()
    return got


def tags_by_run(store: TelemetryStore) -> dict[str, list[str]]:
    runs = store.runs()
    return dict(zip(runs["flow_run_id"], runs["tags"], strict=True))


def finished(flow_run_id: str, **changes: Any) -> FlowRunRecord:
    return FlowRunRecord(flow_run_id, "etl", T0, RunState.COMPLETED, end_time=T0, **changes)


class TestUpgrade:
    def test_store_before_tags_gains_the_column_and_keeps_its_rows(self, store_url: str) -> None:
        """An older store opens at the current version; its old run has no tags, a new run keeps its own."""
        make_store_before_tags(store_url)
        engine = sa.create_engine(store_url)
        assert "tags" not in [c["name"] for c in sa.inspect(engine).get_columns("flow_runs")]
        engine.dispose()
        with TelemetryStore(store_url) as store:
            assert store.schema_version == CURRENT
            store.record_flow_run_start(finished("new", tags=("nightly", "etl", "nightly")))
            assert tags_by_run(store) == {"old": [], "new": ["etl", "nightly"]}
            assert store.runs().set_index("flow_run_id").loc["old", "parameters"] == {"day": 1}
        assert stored_tags(store_url) == {"old": None, "new": '["etl", "nightly"]'}

    def test_upgraded_store_matches_a_new_one(self, store_url: str) -> None:
        """Columns, types, comments and indexes of an upgraded store equal a freshly created one's."""
        assert_upgrade_matches_a_new_store(store_url, make_store_before_tags)


class TestStoreTags:
    def test_tags_are_stored_sorted_without_repeats_and_read_back_as_lists(self, sqlite_url: str) -> None:
        """record_flow_runs keeps the set of tags as sorted JSON; a run without tags stores null, reads []."""
        with TelemetryStore(sqlite_url) as store:
            store.record_flow_runs([finished("a", tags=("b", "a", "b")), finished("b")], source="import")
            assert tags_by_run(store) == {"a": ["a", "b"], "b": []}
        assert stored_tags(sqlite_url) == {"a": '["a", "b"]', "b": None}

    @pytest.mark.parametrize(
        ("tags", "message"),
        [
            ("etl", r'FlowRunRecord.tags must be a collection of strings, not one string: use \["etl"\]'),
            (("etl", 3), "FlowRunRecord.tags must hold strings only, not int 3"),
        ],
    )
    def test_bad_tags_are_refused_and_nothing_is_written(self, sqlite_url: str, tags: Any, message: str) -> None:
        with TelemetryStore(sqlite_url) as store:
            with pytest.raises(InvalidRecordError, match=message):
                store.record_flow_runs([finished("good"), finished("bad", tags=tags)])
            assert store.runs().empty

    def test_a_runs_frame_may_carry_tags(self, sqlite_url: str) -> None:
        """record_runs_frame takes a tags column of lists (or None); without the column runs have none."""
        frame = pd.DataFrame(
            {"flow_run_id": ["a", "b"], "flow_name": "etl", "state": "COMPLETED", "tags": [["x", "a"], None]}
        )
        with TelemetryStore(sqlite_url) as store:
            store.record_runs_frame(frame)
            store.record_runs_frame(frame[["flow_run_id", "flow_name", "state"]].assign(flow_run_id=["c", "d"]))
            assert tags_by_run(store) == {"a": ["a", "x"], "b": [], "c": [], "d": []}

    def test_a_frame_cell_that_is_not_a_list_names_its_position(self, sqlite_url: str) -> None:
        frame = pd.DataFrame({"flow_run_id": ["a", "b"], "flow_name": "etl", "state": "COMPLETED", "tags": [[], "x"]})
        with TelemetryStore(sqlite_url) as store:
            with pytest.raises(InvalidRecordError, match=r"runs\['tags'\] at position 1 must be a collection"):
                store.record_runs_frame(frame)
            assert store.runs().empty

    def test_tags_another_program_wrote_read_as_a_list_of_strings(self, sqlite_url: str) -> None:
        """The column is text anyone may write: a non-list keeps no tags, and only its strings are tags."""
        with TelemetryStore(sqlite_url) as store:
            store.record_flow_runs([finished("a"), finished("b")])
        engine = sa.create_engine(sqlite_url)
        with engine.begin() as conn:
            conn.execute(sa.text("""update flow_runs set tags = '{"etl": 1}' where flow_run_id = 'a'"""))
            conn.execute(sa.text("""update flow_runs set tags = '["etl", 2, null]' where flow_run_id = 'b'"""))
        engine.dispose()
        with TelemetryStore(sqlite_url) as store:
            assert tags_by_run(store) == {"a": [], "b": ["etl"]}


class TestSpooledTags:
    def test_a_run_start_with_tags_travels_through_the_spool(self, tmp_path: Path) -> None:
        """Spooled and drained into a store, a run keeps its tags."""
        spool = Spool(tmp_path / "s")
        rec = FlowRunRecord("r1", "etl", T0, tags=("nightly", "etl"))
        spool.append("run_start", rec)
        store = TelemetryStore("sqlite://")
        assert drain_into(spool, store) == [("run_start", rec)]
        assert tags_by_run(store) == {"r1": ["etl", "nightly"]}
        spool.close()

    def test_an_entry_without_tags_has_no_tags_field(self) -> None:
        """A run without tags is spooled as before version 6 (an older forewarn sharing the spool reads it),
        and such an entry, written by that older forewarn, decodes as a run without tags."""
        from forewarn.store._spool_codec import decode_entry, encode_entry

        entry = encode_entry("run_start", FlowRunRecord("r1", "etl", T0))
        assert "tags" not in entry["record"]
        old = json.loads(json.dumps(entry))  # as read back from a file
        assert decode_entry(old) == ("run_start", FlowRunRecord("r1", "etl", T0, tags=()))
        tagged = encode_entry("run_start", FlowRunRecord("r1", "etl", T0, tags=("b", "a")))
        assert tagged["record"]["tags"] == ["b", "a"]

    @pytest.mark.parametrize("tags", ["etl", ["etl", 1], {"etl": 1}])
    def test_a_spooled_run_with_bad_tags_is_refused(self, tags: Any) -> None:
        from forewarn.store._spool_codec import decode_entry, encode_entry

        entry = encode_entry("run_start", FlowRunRecord("r1", "etl", T0))
        entry["record"]["tags"] = tags
        with pytest.raises(InvalidRecordError, match=r"a spooled run_start\.tags must be a list of strings"):
            decode_entry(entry)


RUNS_CSV = "run_id,flow_name,scheduled_start,state,tags\n"
EXAMPLE = 'write it like ["etl", "nightly"]'


def import_csv(folder: Path, rows: str, *, imported: int) -> TelemetryStore:
    """A new in-memory store holding the run-history CSV made of the header and ``rows``."""
    path = folder / "runs.csv"
    path.write_text(RUNS_CSV + rows)
    store = TelemetryStore("sqlite://")
    assert import_runs(store, path).imported == imported
    return store


class TestCsvTags:
    def test_a_tags_column_is_imported(self, tmp_path: Path) -> None:
        """A JSON list per row, stored sorted without repeats; an empty cell is a run without tags."""
        rows = (
            'r1,etl,2026-01-01T00:00:00Z,COMPLETED,"[""nightly"", ""etl"", ""etl""]"\n'
            "r2,etl,2026-01-02T00:00:00Z,FAILED,\n"
            "r3,etl,2026-01-03T00:00:00Z,FAILED,[]\n"
        )
        store = import_csv(tmp_path, rows, imported=3)
        assert tags_by_run(store) == {"r1": ["etl", "nightly"], "r2": [], "r3": []}

    def test_an_identical_repeat_with_tags_is_one_run(self, tmp_path: Path) -> None:
        """The same tags in another order are the same run, not a clash."""
        row = 'r1,etl,2026-01-01T00:00:00Z,COMPLETED,"[""b"", ""a""]"\n'
        store = import_csv(tmp_path, row + row.replace('""b"", ""a""', '""a"", ""b""'), imported=2)
        assert tags_by_run(store) == {"r1": ["a", "b"]}

    def test_bad_tags_reject_the_file_naming_the_line(self, tmp_path: Path) -> None:
        path = tmp_path / "runs.csv"
        path.write_text(
            RUNS_CSV + "r1,etl,2026-01-01T00:00:00Z,COMPLETED,etl\n"
            'r2,etl,2026-01-02T00:00:00Z,COMPLETED,"[""etl"", 3]"\n'
            'r3,etl,2026-01-03T00:00:00Z,COMPLETED,"{""etl"": 1}"\n'
        )
        store = TelemetryStore("sqlite://")
        with pytest.raises(ImportValidationError) as caught:
            import_runs(store, path)
        assert caught.value.problems == [
            (2, 'tags is not valid JSON (Expecting value at character 0); write a list like ["etl", "nightly"]'),
            (3, "tags must be a JSON list of strings, not a list holding other values; " + EXAMPLE),
            (4, 'tags must be a JSON list of strings, not dict; write it like ["etl", "nightly"]'),
        ]
        assert store.runs().empty


@forewarn.flow(name="tags-live")
def live_flow() -> str:
    return "recorded live"


@prefect.flow(name="tags-prefect")
def prefect_flow(n: int) -> int:
    return n


@pytest.mark.usefixtures("prefect_harness")
class TestPrefectTags:
    def test_a_live_flow_records_its_runs_tags(self) -> None:
        """forewarn.flow stores the tags Prefect gave the run (here a prefect.tags block around the call)."""
        from forewarn.orchestration.recorder import default_recorder

        with prefect.tags("nightly", "etl"):
            tagged = live_flow(return_state=True)
        plain = live_flow(return_state=True)
        recorder = default_recorder()
        assert recorder is not None
        recorder.flush()
        tagged_id, plain_id = (str(s.state_details.flow_run_id) for s in (tagged, plain))
        with TelemetryStore(get_settings().db_url) as store:
            assert tags_by_run(store) == {tagged_id: ["etl", "nightly"], plain_id: []}

    def test_import_prefect_keeps_each_runs_tags(self) -> None:
        """import-prefect stores the tags of each run it reads from the real Prefect API."""
        since = utc_now()
        with prefect.tags("team-a", "hourly"):
            tagged = prefect_flow(1, return_state=True)
        plain = prefect_flow(2, return_state=True)
        store = TelemetryStore(get_settings().db_url)
        result = import_prefect_history(store, since=since, now=utc_now())
        assert result.runs_imported == 2
        tagged_id, plain_id = (str(s.state_details.flow_run_id) for s in (tagged, plain))
        assert tags_by_run(store) == {tagged_id: ["hourly", "team-a"], plain_id: []}
        store.close()


def tagged_outcomes(url: str) -> None:
    """Three scored runs: a (nightly) failed and was warned, b (no tags) a false alarm, c (nightly) fine."""
    from forewarn.records import PredictionRecord

    with TelemetryStore(url) as store:
        for run_id, tags, state, risk in [
            ("a", ("nightly", "etl"), RunState.FAILED, 0.8),
            ("b", (), RunState.COMPLETED, 0.6),
            ("c", ("nightly",), RunState.COMPLETED, 0.2),
        ]:
            store.record_flow_run_start(FlowRunRecord(run_id, "etl", T0, scheduled_start=T0, tags=tags))
            store.record_prediction(PredictionRecord(run_id, "etl", T0, risk, 0.5, "m1", scheduled_start=T0))
            store.record_flow_run_end(run_id, state, T0 + timedelta(minutes=5))


class TestMonitorByTag:
    def test_monitor_judges_only_the_tagged_runs_and_their_predictions(self, sqlite_url: str, tmp_path: Path) -> None:
        from forewarn.scoring.monitor import monitor_store

        tagged_outcomes(sqlite_url)
        now = T0 + timedelta(days=1)
        with TelemetryStore(sqlite_url) as store:
            everything = monitor_store(store, model_dir=tmp_path / "none", now=now).overall
            nightly = monitor_store(store, model_dir=tmp_path / "none", now=now, tags=["nightly", "other"]).overall
        assert (everything["scored"], everything["warnings"], everything["false_alarms"]) == (3, 2, 1)
        assert {k: nightly[k] for k in ("scored", "failures", "warnings", "true_warnings", "false_alarms")} == {
            "scored": 2, "failures": 1, "warnings": 1, "true_warnings": 1, "false_alarms": 0,
        }  # fmt: skip

    def test_the_monitor_command_takes_tags(self, sqlite_url: str, tmp_path: Path) -> None:
        from typer.testing import CliRunner

        from forewarn.cli import app

        tagged_outcomes(sqlite_url)
        out = tmp_path / "figures.json"
        args = ["monitor", "--db", sqlite_url, "--model-dir", str(tmp_path / "none"), "--json", str(out)]
        until = ["--until", (T0 + timedelta(days=1)).isoformat()]
        result = CliRunner().invoke(app, [*args, *until, "--tag", "etl", "--tag", "weekly"])
        assert result.exit_code == 0, result.output
        assert json.loads(out.read_text())["overall"]["scored"] == 1
