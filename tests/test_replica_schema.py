"""Schema version 5: task_attempts.replica and task_attempts.provider, on new and upgraded stores."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from forewarn.records import AttemptOutcome, AttemptRecord
from forewarn.store import TelemetryStore, migrations, schema
from test_store import T0, assert_upgrade_matches_a_new_store, make_v1_store


def make_v2_store(url: str) -> None:
    """A version-2 store: forewarn 0.1's schema upgraded by the real version-2 step only."""
    make_v1_store(url)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        migrations.ensure_schema(conn, url=url, target=2, migrations=migrations.MIGRATIONS[:1])
    engine.dispose()


def columns(url: str, table: str) -> list[str]:
    engine = sa.create_engine(url)
    names = [c["name"] for c in sa.inspect(engine).get_columns(table)]
    engine.dispose()
    return names


class TestUpgradeToCurrent:
    def test_v2_store_gains_both_columns_and_keeps_its_rows(self, store_url: str) -> None:
        """A v2 store opens at the current version; its old attempt reads back with null replica and provider."""
        make_v2_store(store_url)
        assert "replica" not in columns(store_url, "task_attempts")
        with TelemetryStore(store_url) as store:
            assert store.schema_version == schema.SCHEMA_VERSION
            old = store.attempts()
            assert old[["task_run_id", "outcome"]].values.tolist() == [["old-t", "failure"]]
            assert old["replica"].isna().all() and old["provider"].isna().all()
            store.record_attempt(
                AttemptRecord("old", "new-t", "charge", 1, T0, T0, AttemptOutcome.SUCCESS, replica=2, provider="backup")
            )
            new = store.attempts().set_index("task_run_id")
            assert (int(new.loc["new-t", "replica"]), new.loc["new-t", "provider"]) == (2, "backup")

    def test_upgraded_store_matches_a_new_one(self, store_url: str) -> None:
        """Columns, types, comments and indexes of a v2 store migrated to v3 equal a fresh v3 store's."""
        assert_upgrade_matches_a_new_store(store_url, make_v2_store)


class TestBulkReplicas:
    def test_a_frame_may_carry_replica_and_provider(self, sqlite_url: str) -> None:
        """record_attempts_frame keeps replica and provider; without the columns they are null."""
        import pandas as pd

        frame = pd.DataFrame(
            {
                "task_run_id": ["a", "b"],
                "task_name": ["charge", "charge"],
                "attempt": [1, 1],
                "start_time": [T0, T0],
                "end_time": [T0, T0],
                "outcome": ["success", "abandoned"],
                "replica": [1, None],
                "provider": ["primary", None],
            }
        )
        with TelemetryStore(sqlite_url) as store:
            store.record_attempts_frame(frame)
            got: dict[str, Any] = store.attempts().set_index("task_run_id")[["replica", "provider"]].to_dict("index")
        assert got["a"] == {"replica": 1, "provider": "primary"}
        assert pd.isna(got["b"]["replica"]) and got["b"]["provider"] is None


class TestSpool:
    def test_replica_and_provider_survive_the_spool(self) -> None:
        """An attempt with replica and provider is spooled and decoded unchanged; an old entry without them
        decodes with both None."""
        from forewarn.store._spool_codec import decode_entry, encode_entry

        rec = AttemptRecord("f", "t", "quote", 2, T0, T0, AttemptOutcome.ABANDONED, replica=2, provider="eu")
        entry = encode_entry("attempt", rec)
        assert decode_entry(entry) == ("attempt", rec)
        assert entry[-2:] == [2, "eu"]
        _, old = decode_entry(entry[:-3])  # an entry of a forewarn without these fields: twelve only
        assert old == dataclasses.replace(rec, replica=None, provider=None)
        assert isinstance(old, AttemptRecord) and (old.replica, old.provider) == (None, None)
