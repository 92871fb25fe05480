"""Warn once per scheduled run: the rule that decides which forecast scores notify."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from forewarn.records import PredictionRecord
from forewarn.scoring.notify import forecast_notifications, last_notified, notifies, risk_band
from forewarn.store import TelemetryStore


class TestRule:
    @pytest.mark.parametrize(
        ("risk", "previous", "expected"),
        [
            (0.29, None, False),  # below the threshold: never
            (0.30, None, True),  # first time at risk
            (0.39, (0.30, 0.3), False),  # rose by less than 0.1, same band
            (0.40, (0.30, 0.3), True),  # rose by 0.1
            (0.50, (0.45, 0.3), True),  # crossed 0.5: a higher band
            (0.60, (0.70, 0.3), False),  # fell
        ],
    )
    def test_notifies(self, risk: float, previous: tuple[float, float] | None, expected: bool) -> None:
        assert notifies(risk, 0.3, previous, rise=0.1) is expected

    def test_bands_above_a_high_threshold(self) -> None:
        """A threshold of 0.8: the 0.5 and 0.75 bands lie below it and do not count."""
        assert [risk_band(r, 0.8) for r in (0.79, 0.8, 0.89, 0.9)] == [0, 1, 1, 2]

    def test_replay_keeps_the_last_notifying_score(self) -> None:
        scores = [(0.35, 0.3), (0.4, 0.3), (0.44, 0.3), (0.2, 0.3), (0.46, 0.3)]
        assert last_notified(scores, rise=0.1) == (0.46, 0.3)  # 0.35 notified; 0.46 >= 0.35 + 0.1
        assert last_notified(scores, rise=0.2) == (0.35, 0.3)


class TestAgainstTheStore:
    def test_only_earlier_forecast_scores_count(self, sqlite_url: str) -> None:
        """A hook score of the run does not silence the forecast; an earlier forecast score does."""
        store = TelemetryStore(sqlite_url)
        now = datetime(2026, 11, 1, tzinfo=timezone.utc)
        table = pd.DataFrame({"flow_run_id": ["a", "b"], "risk": [0.6, 0.6], "threshold": [0.3, 0.3]})
        for run, source in (("a", "hook"), ("b", "forecast")):
            store.record_prediction(
                PredictionRecord(run, "etl", now - timedelta(hours=1), 0.6, 0.3, "m1", source=source)
            )
        assert forecast_notifications(store, table, rise=0.1).tolist() == [True, False]
