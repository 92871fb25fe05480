"""CLI tables stay readable at 80 columns: no word broken in a reason or a flow name that fits; a run id column."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from forewarn.cli import print_folds, print_forecast, print_metrics
from forewarn.learning.summary import metrics_rows

RUN_ID = "0b4c2c1e-8d8f-4b1e-9a0e-5c6d7e8f9a0b"
REASONS = (
    "version_failure_rate_smoothed = 0.667 (usual 0.1) raises risk by 0.12; "
    "flow_recent_failures = 3 (usual 0) raises risk by 0.3"
)


def forecast_row(flow: str, run_id: str = RUN_ID, reasons: str = REASONS) -> dict[str, object]:
    return {
        "flow": flow,
        "deployment": "",
        "scheduled start (UTC)": "2026-03-02 09:00",
        "in (hours)": 1.0,
        "risk": 0.812,
        "threshold": 0.3,
        "reasons": reasons,
        "flow run": run_id,
    }


def words(text: str) -> set[str]:
    return set(text.replace("│", " ").split())


class TestForecastTable:
    def test_at_80_columns_no_word_is_broken(
        self, terminal_columns: Callable[[int], None], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Every line fits; every word of the reasons and the flow name is whole; the run id is cut, and said so."""
        terminal_columns(80)
        print_forecast([forecast_row("warehouse-nightly"), forecast_row("etl", reasons="")], "2 of 5 at risk")
        out = capsys.readouterr().out
        assert max(len(line) for line in out.splitlines()) <= 80
        assert set(REASONS.replace(";", "").split()) <= words(out.replace(";", ""))
        assert "warehouse-nightly" in words(out)
        assert f"{RUN_ID[:8]}…" in words(out) and RUN_ID not in out
        assert "flow run ids cut to their first 8 characters to fit" in " ".join(out.split())

    @pytest.mark.parametrize("columns", [120, 200])
    def test_wide_terminals_show_the_whole_run_id(
        self, terminal_columns: Callable[[int], None], capsys: pytest.CaptureFixture[str], columns: int
    ) -> None:
        terminal_columns(columns)
        print_forecast([forecast_row("warehouse-nightly")], "1 of 1 at risk")
        out = capsys.readouterr().out
        assert RUN_ID in words(out) and "cut to their first" not in out
        assert max(len(line) for line in out.splitlines()) <= columns

    def test_reasons_are_one_a_line(
        self, terminal_columns: Callable[[int], None], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each reason starts its own line in the reasons column, so two never run together."""
        terminal_columns(200)
        print_forecast([forecast_row("etl")], "1 of 1 at risk")
        lines = capsys.readouterr().out.splitlines()
        first = next(i for i, line in enumerate(lines) if "version_failure_rate_smoothed" in line)
        second = next(i for i, line in enumerate(lines) if "flow_recent_failures" in line)
        assert second > first and "flow_recent_failures" not in lines[first]

    def test_rich_markup_in_a_flow_name_is_printed_as_it_is(
        self, terminal_columns: Callable[[int], None], capsys: pytest.CaptureFixture[str]
    ) -> None:
        terminal_columns(120)
        print_forecast([forecast_row("[bold]etl[/bold]", reasons="")], "1 of 1 at risk")
        assert "[bold]etl[/bold]" in capsys.readouterr().out


class TestBacktestTables:
    FOLD = {
        "fold": 4,
        "n_test_runs": 46334,
        "threshold": 0.2061,
        "operating_point": {
            "precision": 0.4231,
            "alert_share": 0.5213,
            "WR": 0.8456,
            "best_WR": 0.6571,
            "WR_to_best": 1.2869,
            "on_target": True,
        },
    }

    def test_the_fold_table_fits_80_columns_with_every_figure_whole(
        self, terminal_columns: Callable[[int], None], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`forewarn backtest` in a pipe or a small terminal: no cell of the per-fold table is cut."""
        terminal_columns(80)
        print_folds([self.FOLD], {"rule": "precision", "target_precision": 0.5})
        out = capsys.readouterr().out
        assert max(len(line) for line in out.splitlines()) <= 80
        assert "…" not in out
        assert {"46334", "0.206", "42.3%", "52.1%", "84.6%", "65.7%", "128.7%", "yes"} <= words(out)

    def test_the_metrics_table_fits_80_columns(
        self, terminal_columns: Callable[[int], None], capsys: pytest.CaptureFixture[str]
    ) -> None:
        terminal_columns(80)
        print_metrics(metrics_rows({}), "walk-forward backtest")
        out = capsys.readouterr().out
        assert max(len(line) for line in out.splitlines()) <= 80
        assert "…" not in out
